"""The transactional outbox against a real replica set and a real RabbitMQ node (the kit's own, which these
tests stop and restart), with relays in processes of their own so they can be killed like crashed replicas.

What every test checks at the end, through an independent subscriber (a plain durable kombu queue bound to
`<service>.events`): every event written arrives; with no crash, none arrives twice; an aggregate's events
first arrive in the order they were written."""
import time
import types

import pytest
from pymongo import MongoClient

import kit.outbox
from kit.outbox import LEASE_SECONDS, Outbox, OutboxRelay
from tests.helpers import CommandsSeen, eventually
from tests.kit.support import RelayProcess, Subscriber, accrued, fresh_store, outbox_status, unique, until

pytestmark = pytest.mark.slow


@pytest.fixture
def store(kit_servers):
    return fresh_store(kit_servers.mongo_uri)


@pytest.fixture
def subscriber(kit_servers, store):
    return Subscriber(kit_servers.amqp_uri, f"{store.service_name}.events")


@pytest.fixture
def relays(kit_servers, store):
    """relays(delay=0.0) -> a new relay process over the test's outbox; all killed at the end."""
    started = []

    def start(delay=0.0):
        relay = RelayProcess(store, kit_servers.mongo_uri, kit_servers.amqp_uri, delay=delay)
        started.append(relay)
        return relay
    yield start
    for relay in started:
        relay.kill()


def write_round_robin(store, orders, positions):
    """Interleave the aggregates' events, as concurrent traffic would; returns the event ids in write order."""
    return [store.record(order, n)["id"] for n in positions for order in orders]


def assert_in_write_order(subscriber, orders, positions):
    arrival = subscriber.first_arrival_order()
    for order in orders:
        assert arrival[order] == list(positions), f"{order} arrived as {arrival[order]}"


def test_an_aborted_transaction_leaves_neither_its_state_change_nor_its_event(store):
    emitted = []

    def pay_then_fail(session):
        store.aggregates.insert_one({"_id": "ord_aborted", "status": "paid"}, session=session)
        emitted.append(store.emit(session, "commission.accrued", accrued("ord_aborted", 1), subject="ord_aborted"))
        raise RuntimeError("the provider refused the payment")

    with pytest.raises(RuntimeError):
        store.transaction(pay_then_fail)
    assert emitted, "the event was emitted inside the transaction"
    assert store.outbox.events.find_one({"_id": emitted[0]["id"]}) is None
    assert store.aggregates.find_one({"_id": "ord_aborted"}) is None


def test_an_event_outside_its_contract_aborts_the_state_change_and_no_phone_number_gets_out(store):
    def leak(session):
        store.aggregates.insert_one({"_id": "ord_leak"}, session=session)
        store.emit(session, "commission.accrued", {**accrued("ord_leak", 1), "phone": "13812345678"},
                   subject="ord_leak")

    with pytest.raises(ValueError, match="phone"):
        store.transaction(leak)
    assert store.outbox.events.count_documents({}) == 0 and store.aggregates.count_documents({}) == 0


def test_one_aggregates_events_keep_their_write_order_when_the_clock_steps_back(store, monkeypatch):
    # The wall clock is not monotonic: NTP may step it back between two writes to the same order.
    readings = iter([5_000_000, 4_000_000, 4_000_000, 4_500_000])
    monkeypatch.setattr(kit.outbox, "time", types.SimpleNamespace(time_ns=lambda: next(readings),
                                                                  monotonic=time.monotonic))
    ids = [store.record("ord_clock", n)["id"] for n in range(4)]
    relay_order = [d["_id"] for d in store.outbox.events.find({"subject": "ord_clock"}).sort("seq", 1)]
    assert relay_order == ids


def test_a_batch_of_events_of_several_aggregates_comes_after_each_ones_last_event_when_the_clock_steps_back(
        store, monkeypatch):
    # Given two orders with an event each, written at clock readings 9,000,000 and 2,000,000
    readings = iter([9_000_000, 2_000_000, 1_000_000, 1_000_000, 1_000_000])
    monkeypatch.setattr(kit.outbox, "time", types.SimpleNamespace(time_ns=lambda: next(readings),
                                                                  monotonic=time.monotonic))
    first = {order: store.record(order, 0)["id"] for order in ("ord_batch_a", "ord_batch_b")}
    # when one batch (one look-up of the aggregates' last events) writes two more of a and one of b while the
    # clock reads earlier than all of them
    written = store.transaction(lambda session: store.emit_many(session, [
        ("commission.accrued", accrued("ord_batch_a", 1), "ord_batch_a"),
        ("commission.accrued", accrued("ord_batch_b", 1), "ord_batch_b"),
        ("commission.accrued", accrued("ord_batch_a", 2), "ord_batch_a")]))
    # then each aggregate's events are relayed in the order they were written
    for order, later in (("ord_batch_a", [written[0], written[2]]), ("ord_batch_b", [written[1]])):
        relay_order = [d["_id"] for d in store.outbox.events.find({"subject": order}).sort("seq", 1)]
        assert relay_order == [first[order]] + [event["id"] for event in later]


def test_events_written_while_the_broker_is_down_stay_pending_then_arrive_exactly_once(
        kit_servers, store, subscriber, relays):
    relay = relays()
    first = store.record(unique("ord_"), 0)["id"]
    subscriber.wait_for_ids([first], timeout=10)  # given a relay that delivers

    orders = [unique("ord_") for _ in range(4)]
    kit_servers.rabbit.stop()
    try:
        # when the broker is down, orders keep being written
        written = write_round_robin(store, orders, range(1, 11))
        time.sleep(1.5)  # several relay passes, every one failing to connect
        # then nothing is published, nothing is lost, and the relay is still there
        assert relay.proc.poll() is None
        assert not set(relay.published) & set(written)
        assert outbox_status(store) == {"sent": 1, "pending": len(written)}
    finally:
        kit_servers.rabbit.start()

    # when the broker is back, every event arrives, once, each order's events in their written order
    subscriber.wait_for_ids(written, timeout=30)
    until(lambda: outbox_status(store) == {"sent": len(written) + 1}, timeout=5)
    subscriber.drain()  # anything published twice would be here by now
    assert subscriber.duplicates() == set()
    assert len(subscriber.received) == len(written) + 1
    assert_in_write_order(subscriber, orders, range(1, 11))


def test_a_relay_killed_mid_batch_loses_nothing_and_repeats_only_events_it_had_published(
        store, subscriber, relays):
    orders = [unique("ord_") for _ in range(5)]
    written = write_round_robin(store, orders, range(12))

    # given a slow relay killed half-way through its batch
    slow = relays(delay=0.05)
    slow.wait_published(20)
    slow.kill()
    confirmed = set(slow.published)
    pending = {d["_id"] for d in store.outbox.events.find({"status": "pending"}, {"_id": 1})}
    assert set(written) - confirmed <= pending  # what it never published is still waiting

    # when a relay runs again
    relays()
    subscriber.wait_for_ids(written, timeout=20)
    until(lambda: outbox_status(store) == {"sent": len(written)}, timeout=5)
    subscriber.drain()

    # then nothing is missing, and the only repeats are events the killed relay had got confirmed
    # (same ids, so a consumer's dedupe drops them)
    assert subscriber.ids() == set(written)
    print(f"killed after {len(confirmed)} confirms; {len(subscriber.duplicates())} published again")
    assert subscriber.duplicates() <= confirmed
    assert_in_write_order(subscriber, orders, range(12))


def lease_owners(store):
    owners = {}
    for lease in store.outbox.leases.find():
        owners.setdefault(lease["owner"], set()).add(lease["_id"])
    return owners


def test_two_relays_share_partitions_keep_each_aggregate_in_order_and_one_takes_over_when_the_other_dies(
        store, subscriber, relays):
    first, second = relays(delay=0.005), relays(delay=0.005)

    # given two live relays: they split the partitions between them
    def split():
        owners = lease_owners(store)
        assert {len(owners.get(first.relay_id, ())), len(owners.get(second.relay_id, ()))} == {4}
        return owners
    owners = eventually(split, timeout=10)

    # when many orders' events are written: both publish, none twice, each order in its written order
    orders = [unique("ord_") for _ in range(16)]
    burst = write_round_robin(store, orders, range(6))
    subscriber.wait_for_ids(burst, timeout=15)
    subscriber.drain()
    assert set(first.published) & set(burst) and set(second.published) & set(burst)
    assert subscriber.duplicates() == set()
    assert_in_write_order(subscriber, orders, range(6))

    # when one relay dies, the other publishes its partitions' events within the lease time
    first.kill()
    killed_at = time.monotonic()
    after = write_round_robin(store, orders, range(6, 12))
    subscriber.wait_for_ids(after, timeout=LEASE_SECONDS + 10)
    took_over_in = time.monotonic() - killed_at
    assert took_over_in <= LEASE_SECONDS + 3, f"took {took_over_in:.1f}s"  # + polling, on a busy machine
    orphaned = {d["_id"] for d in store.outbox.events.find({"partition": {"$in": list(owners[first.relay_id])},
                                                            "_id": {"$in": after}})}
    assert orphaned and orphaned <= set(second.published)
    assert lease_owners(store) == {second.relay_id: set(range(8))}
    subscriber.drain()
    assert subscriber.duplicates() == set()
    assert_in_write_order(subscriber, orders, range(12))


def test_a_relay_slower_than_its_lease_hands_work_over_instead_of_publishing_it_twice(store, subscriber, relays):
    # e.g. a broker throttling publishers: one batch takes longer than the relay's leases last
    orders = [unique("ord_") for _ in range(8)]
    written = write_round_robin(store, orders, range(10))
    slow = relays(delay=0.15)  # 80 events in one batch: 12 s, longer than LEASE_SECONDS
    slow.wait_published(3)
    other = relays()

    subscriber.wait_for_ids(written, timeout=3 * LEASE_SECONDS)
    subscriber.drain()
    assert subscriber.duplicates() == set()  # nobody crashed: nothing twice
    assert set(other.published) & set(written)  # the other relay took its share
    assert_in_write_order(subscriber, orders, range(10))


def test_an_aggregates_first_event_skips_the_lookup_and_still_comes_before_its_later_events(store):
    # given an aggregate made in the transaction that writes its first event (first=True: no earlier event to find)
    order_id = unique("ord")
    store.transaction(lambda session: store.emit(session, "commission.accrued", accrued(order_id, 1),
                                                 subject=order_id, first=True))
    # when its later events are written the usual way
    for n in (2, 3):
        store.record(order_id, n)
    # then the outbox orders them as written
    events = list(store.outbox.events.find({"subject": order_id}).sort("seq", 1))
    assert [e["envelope"]["data"]["amount_fen"] for e in events] == [1, 2, 3]


def outbox_update_concern(event):
    """The write concern of an update a client sends to an outbox's events ("default": none, the server's)."""
    if event.command_name == "update" and event.command.get("update") == "outbox":
        return event.command.get("writeConcern", {}).get("w", "default")
    return None


def test_marking_events_sent_does_not_wait_for_the_journal_and_a_mark_lost_only_sends_them_again(
        kit_servers, store, subscriber):
    writes = CommandsSeen(outbox_update_concern)
    client = MongoClient(kit_servers.mongo_uri, tz_aware=True, event_listeners=[writes])
    relay = OutboxRelay(Outbox(client[store.db.name], store.service_name), kit_servers.amqp_uri)
    try:
        # given three events written with their state changes
        order = unique("ord_")
        written = [store.record(order, n)["id"] for n in range(3)]
        # when a relay publishes them
        assert relay.run_once() == 3
        subscriber.wait_for_ids(written, timeout=10)
        # then it marks them sent in one write acknowledged once applied, not journaled (kit.durability.APPLIED)
        assert writes.seen == [1]
        assert outbox_status(store) == {"sent": 3}
        # when that mark is lost (a mongod crash before its next journal sync, or a failover before it replicated)
        store.outbox.events.update_many({"_id": {"$in": written}},
                                        {"$set": {"status": "pending"}, "$unset": {"sent_at": ""}})
        # then the relay sends them again, in order, with the same ids, so each consumer's dedupe drops them
        assert relay.run_once() == 3
        until(lambda: len(subscriber.drain()) == 6, timeout=10)
        assert subscriber.duplicates() == set(written)
        assert [e["id"] for e in subscriber.received] == written * 2
        assert outbox_status(store) == {"sent": 3}
    finally:
        relay._drop_connection()
        client.close()
