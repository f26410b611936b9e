"""Events applied together (BaseStore.apply_once_together, `@on_event(..., together=True)`): the events a service
receives while others are being applied share one transaction, one insert of their markers and one commit. Each
is still applied once, each caller hears its own outcome, and a repeat or a failing handler in a batch sends the
others through alone, with nothing of the batch written. The first event from idle waits a little for company
(EVENTS_LINGER)."""
import time

import eventlet
import pytest
from prometheus_client import REGISTRY

from kit.context import current_request_id, request_id_of
from kit.mongo import DUPLICATE, EVENTS_LINGER
from tests.kit.support import fresh_store, unique


@pytest.fixture
def store(kit_servers):
    return fresh_store(kit_servers.mongo_uri)


def handler(store, event_id, fail=False, seen=None):
    """A handler writing one application through its session (and failing after it, when told to)."""
    def apply(session):
        store.aggregates.insert_one({"event_id": event_id}, session=session)
        if seen is not None:
            seen[event_id] = current_request_id()
        if fail:
            raise RuntimeError(f"cannot apply {event_id}")
        return event_id
    return apply


def arrive_together(store, events):
    """[(key, fn, request_id)] submitted at once while another event is being applied; {key: result or error}."""
    batcher = store.events_batcher()
    outcomes = {}

    def deliver(key, fn, request_id):
        with request_id_of(request_id):
            try:
                outcomes[key] = store.apply_once_together(key, fn)
            except Exception as exc:  # noqa: BLE001 - the caller's own outcome, checked by the test
                outcomes[key] = exc
    batcher._alone += 1  # an event in flight: what arrives now waits for the next batch
    pool = eventlet.GreenPool(len(events))
    for event in events:
        pool.spawn_n(deliver, *event)
    pool.waitall()
    batcher._alone -= 1
    return outcomes, batcher


def sample(name, labels):
    return REGISTRY.get_sample_value(name, labels) or 0


def applications(store, event_ids):
    return sorted(d["event_id"] for d in store.aggregates.find({"event_id": {"$in": list(event_ids)}}))


def test_events_arriving_together_are_applied_once_each_in_one_transaction(store):
    # given twelve events arriving while another is being applied
    ids = [unique("evt_") for _ in range(12)]
    seen = {}
    labels = {"batcher": f"{store.service_name}.events"}
    # when they are delivered at once
    outcomes, batcher = arrive_together(store, [(f"probe:{i}", handler(store, i, seen=seen), f"req-{i}") for i in ids])
    # then they were written in one batch, each applied once, each caller got its own result, and each handler
    # ran with its own event's request id (its log lines)
    assert (batcher.batches, batcher.batched) == (1, 12)
    assert outcomes == {f"probe:{i}": i for i in ids}
    assert applications(store, ids) == sorted(ids)
    assert seen == {i: f"req-{i}" for i in ids}
    assert store.processed.count_documents({"_id": {"$in": [f"probe:{i}" for i in ids]}}) == 12
    # and operators see it: one batch of 12 (quanzi_batch_size), none of them alone
    assert (sample("quanzi_batch_size_count", labels), sample("quanzi_batch_size_sum", labels)) == (1, 12)
    assert sample("quanzi_batch_alone_total", labels) == 0
    # and a redelivery of any of them later (nothing else in flight: a batch of its own, after the linger,
    # which its marker fails; then alone) changes nothing
    assert store.apply_once_together(f"probe:{ids[0]}", handler(store, ids[0])) is DUPLICATE
    assert applications(store, ids[:1]) == ids[:1]
    assert (sample("quanzi_batch_size_count", labels), sample("quanzi_batch_size_sum", labels)) == (2, 13)


def test_events_arriving_one_by_one_from_idle_wait_for_company_and_share_a_transaction(store):
    # given a consumer with nothing in flight, and five events arriving a few milliseconds apart (a modest steady
    # rate, where natural batching alone would write the first one by itself)
    ids = [unique("evt_") for _ in range(5)]
    labels = {"batcher": f"{store.service_name}.events"}
    outcomes = {}

    def deliver(event_id):
        outcomes[event_id] = store.apply_once_together(f"probe:{event_id}", handler(store, event_id))
    pool = eventlet.GreenPool(len(ids))
    started = time.monotonic()
    # when they arrive, 4 ms apart: all within the first one's linger
    for event_id in ids:
        pool.spawn_n(deliver, event_id)
        eventlet.sleep(0.004)
    pool.waitall()
    # then the first waited for the others: one transaction wrote all five, none went alone, each applied once
    batcher = store.events_batcher()
    assert (batcher.batches, batcher.batched) == (1, 5)
    assert sample("quanzi_batch_alone_total", labels) == 0
    assert outcomes == {i: i for i in ids}
    assert applications(store, ids) == sorted(ids)
    # and the wait was the linger, not more
    assert EVENTS_LINGER <= time.monotonic() - started < EVENTS_LINGER + 1.0


def test_a_repeat_and_a_failing_handler_in_a_batch_leave_the_others_applied_once(store):
    # given one event applied before, and a batch holding its redelivery, a handler that fails and three more
    done, failing = unique("evt_"), unique("evt_")
    store.apply_once(f"probe:{done}", handler(store, done))
    others = [unique("evt_") for _ in range(3)]
    events = [(f"probe:{done}", handler(store, done), None), (f"probe:{failing}", handler(store, failing, True), None),
              *[(f"probe:{i}", handler(store, i), None) for i in others]]
    # when they arrive together
    outcomes, _ = arrive_together(store, events)
    # then the redelivery answers DUPLICATE, the failure reaches its own caller only (nothing of it written), and
    # the others are applied once each
    assert outcomes[f"probe:{done}"] is DUPLICATE
    assert isinstance(outcomes[f"probe:{failing}"], RuntimeError)
    assert [outcomes[f"probe:{i}"] for i in others] == others
    assert applications(store, [done, failing, *others]) == sorted([done, *others])
    assert store.processed.find_one({"_id": f"probe:{failing}"}) is None
