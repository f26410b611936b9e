"""Reliable consumers (`kit.events.on_event`) and the dead-letter tool (`python -m kit.dlq`), through a
throwaway service built on the kit (tests/kit/probe_service.py) run the way real services run (`nameko run`
in its own process) against the kit's private broker and replica set.

Each test publishes `commission.accrued` envelopes for its own order id to `kitsrc.events`, as the source
service's relay would, and watches: what the handler applied (Mongo), the follow-up events it emitted (an
independent subscriber on `commission.events`), the dead-letter queue, and the service's /metrics."""
import json
import os
import subprocess
import sys
import time

import kombu
import pymongo
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from contracts import make_envelope
from kit import dlq
from tests.helpers import Listener
from tests.kit.support import PROBE, PROBE_WITHOUT_WORKER, accrued, running_probe, unique, until
from tools.stack import REPO, ServiceDied, ServiceProcess, free_port

pytestmark = pytest.mark.slow

QUEUE = "evt-kitsrc-commission.accrued--commission.on_accrued"
DELAYS = "0.2,0.4,0.8"  # three retries, then the dead-letter queue


@pytest.fixture(scope="module", params=[PROBE, PROBE_WITHOUT_WORKER], ids=["worker", "without_worker"])
def probe(kit_servers, request):
    proc = running_probe(kit_servers, request.param, "kitprobe.log", EVENT_RETRY_DELAYS=DELAYS)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def db(kit_servers):
    client = pymongo.MongoClient(kit_servers.mongo_uri)
    yield client["quanzi_commission"]
    client.close()


@pytest.fixture
def follow_ups(kit_servers):
    listener = Listener(kit_servers.amqp_uri, "commission.events", ["commission.settled"])
    yield listener
    listener.close()


def new_event():
    order_id = unique("ord_")
    return order_id, make_envelope("commission.accrued", accrued(order_id, 100), subject=order_id)


def publish(amqp_uri, envelope, times=1):
    exchange = kombu.Exchange("kitsrc.events", type="topic", durable=True, delivery_mode=2)
    with kombu.Connection(amqp_uri, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer(serializer="json")
        for _ in range(times):
            producer.publish(envelope, exchange=exchange, routing_key=envelope["type"], declare=[exchange],
                             delivery_mode=2)


def metrics(proc):
    """{(sample name, frozenset of labels): value} scraped from the service's /metrics."""
    text = requests.get(proc.url + "/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def counters(proc):
    """The kit's counters for this service's handler and its follow-up events."""
    values = metrics(proc)

    def get(name, **labels):
        return values.get((name, frozenset({"service": "commission", **labels}.items())), 0)
    result = {outcome: get("quanzi_events_consumed_total", type="commission.accrued", outcome=outcome)
              for outcome in ("applied", "duplicate", "retried", "dead_lettered")}
    result["failures"] = get("quanzi_handler_failures_total", type="commission.accrued")
    result["published"] = get("quanzi_events_published_total", type="commission.settled")
    return result


def moved(proc, before):
    now = counters(proc)
    return {key: now[key] - before[key] for key in now}


def parked(amqp_uri):
    """Peek at the dead-letter queue (nothing acked, so everything stays): [(envelope, headers)]."""
    with kombu.Connection(amqp_uri) as conn:
        channel = conn.channel()
        queue = kombu.Queue(QUEUE + ".dlq", no_declare=True)(channel)
        found = []
        while (message := queue.get(no_ack=False)) is not None:
            found.append((message.decode(), message.headers))
        channel.close()  # unacked: back to the queue
    return found


def parked_copies(amqp_uri, event_id):
    return [headers for envelope, headers in parked(amqp_uri) if envelope["id"] == event_id]


def follow_ups_for(listener, order_id):
    return [body["id"] for body in listener.messages if body["data"]["order_id"] == order_id]


def dlq_tool(kit_servers, *args):
    env = {**os.environ, "AMQP_URI": kit_servers.amqp_uri}
    return subprocess.run([sys.executable, "-m", "kit.dlq", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_same_event_delivered_five_times_is_applied_once(kit_servers, probe, db, follow_ups):
    order_id, envelope = new_event()
    before = counters(probe)

    publish(kit_servers.amqp_uri, envelope, times=5)  # e.g. a relay that crashed four times before marking

    until(lambda: (moved(probe, before)["applied"], moved(probe, before)["duplicate"]) == (1, 4), timeout=15)
    [applied] = db.applied.find({"order_id": order_id})
    # run by a worker's service instance, or by kit.workerless's stand-in for the probe run without workers
    assert applied["by"] == ("WorkerlessProbeWithoutWorker" if probe.spec is PROBE_WITHOUT_WORKER else "ProbeService")
    follow_ups.wait_for(lambda body: body["data"]["order_id"] == order_id, timeout=5)
    time.sleep(0.5)  # a second follow-up would be here by now
    assert len(follow_ups_for(follow_ups, order_id)) == 1
    assert moved(probe, before)["failures"] == 0


def test_a_handler_failing_three_times_then_succeeding_is_applied_once(kit_servers, probe, db, follow_ups):
    order_id, envelope = new_event()
    db.plans.insert_one({"_id": order_id, "fail": 3})
    before = counters(probe)

    publish(kit_servers.amqp_uri, envelope)

    until(lambda: db.applied.count_documents({"order_id": order_id}) == 1, timeout=15)
    assert db.plans.find_one({"_id": order_id})["runs"] == 4  # three failures, then the success
    until(lambda: moved(probe, before)["published"] >= 1, timeout=5)
    assert {k: v for k, v in moved(probe, before).items() if k != "published"} == {
        "applied": 1, "duplicate": 0, "retried": 3, "dead_lettered": 0, "failures": 3}
    follow_ups.wait_for(lambda body: body["data"]["order_id"] == order_id, timeout=5)
    assert parked_copies(kit_servers.amqp_uri, envelope["id"]) == []


def test_a_handler_that_always_fails_is_parked_with_its_error_and_once_fixed_a_replay_applies_it_once(
        kit_servers, probe, db, follow_ups, monkeypatch, capsys):
    order_id, envelope = new_event()
    db.plans.insert_one({"_id": order_id, "fail": -1})
    before = counters(probe)

    publish(kit_servers.amqp_uri, envelope)

    # then it is parked, with the error, after the first delivery and three retries
    [headers] = until(lambda: parked_copies(kit_servers.amqp_uri, envelope["id"]), timeout=15)
    assert headers["x-quanzi-attempts"] == 4
    assert "RuntimeError: planned failure" in headers["x-quanzi-error"]
    time.sleep(1.6)  # longer than all retry delays together: a looping message would have run again
    assert db.plans.find_one({"_id": order_id})["runs"] == 4
    assert db.applied.count_documents({"order_id": order_id}) == 0
    assert moved(probe, before) == {"applied": 0, "duplicate": 0, "retried": 3, "dead_lettered": 1,
                                    "failures": 4, "published": 0}
    logged = [json.loads(line) for line in probe.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(entry["level"] == "ERROR" and f"parked in {QUEUE}.dlq after 4 attempts" in entry["message"]
               for entry in logged)

    # when an operator looks: type, id, attempts and error are shown, and the message stays parked
    shown = dlq_tool(kit_servers, "show", QUEUE)
    assert shown.returncode == 0, shown.stderr
    [line] = [ln for ln in shown.stdout.splitlines() if envelope["id"] in ln]
    assert "type=commission.accrued" in line and "attempts=4" in line and "planned failure" in line
    assert len(parked_copies(kit_servers.amqp_uri, envelope["id"])) == 1

    # when the handler is fixed and the queue replayed: applied once, nothing left parked
    db.plans.update_one({"_id": order_id}, {"$set": {"fail": 0}})
    replayed = dlq_tool(kit_servers, "replay", QUEUE)
    assert replayed.returncode == 0, replayed.stderr
    assert f"id={envelope['id']}" in replayed.stdout
    until(lambda: db.applied.count_documents({"order_id": order_id}) == 1, timeout=10)
    follow_ups.wait_for(lambda body: body["data"]["order_id"] == order_id, timeout=5)
    assert parked_copies(kit_servers.amqp_uri, envelope["id"]) == []

    # and a second replay (in-process this time; the queue may be named by its .dlq too) finds nothing to do
    monkeypatch.setenv("AMQP_URI", kit_servers.amqp_uri)
    assert dlq.main(["replay", QUEUE + ".dlq"]) == 0
    assert f"id={envelope['id']}" not in capsys.readouterr().out
    time.sleep(0.3)
    assert db.applied.count_documents({"order_id": order_id}) == 1
    assert len(follow_ups_for(follow_ups, order_id)) == 1


def test_the_dlq_tool_names_a_queue_that_does_not_exist(kit_servers, monkeypatch, capsys):
    monkeypatch.setenv("AMQP_URI", kit_servers.amqp_uri)
    assert dlq.main(["show", "evt-nobody-nothing--nowhere.none"]) == 1
    assert "no such queue" in capsys.readouterr().err
    # replaying into a consumer queue that does not exist would send the copies nowhere: refused
    assert dlq.main(["replay", "evt-nobody-nothing--nowhere.none"]) == 1


def test_a_crash_between_commit_and_ack_redelivers_the_event_and_it_is_applied_once(
        kit_servers, probe, db, follow_ups):
    order_id, envelope = new_event()
    db.plans.insert_one({"_id": "hang:" + envelope["id"]})

    publish(kit_servers.amqp_uri, envelope)
    until(lambda: db.applied.count_documents({"order_id": order_id}) == 1, timeout=10)
    probe.kill()  # committed, never acked

    db.plans.delete_one({"_id": "hang:" + envelope["id"]})
    probe.start()
    probe.wait_healthy(60)

    until(lambda: counters(probe)["duplicate"] == 1, timeout=15)  # the broker redelivered it
    assert db.applied.count_documents({"order_id": order_id}) == 1
    assert db.plans.find_one({"_id": order_id})["runs"] == 1
    follow_ups.wait_for(lambda body: body["data"]["order_id"] == order_id, timeout=15)
    time.sleep(0.5)
    assert len(set(follow_ups_for(follow_ups, order_id))) == 1  # a re-published copy keeps its id


def test_a_service_whose_retry_delays_changed_restarts_and_uses_the_new_ones(kit_servers, probe, db):
    try:
        probe.restart({"EVENT_RETRY_DELAYS": "0.3,0.3"})
        probe.wait_healthy(60)
        order_id, envelope = new_event()
        db.plans.insert_one({"_id": order_id, "fail": -1})

        publish(kit_servers.amqp_uri, envelope)

        [headers] = until(lambda: parked_copies(kit_servers.amqp_uri, envelope["id"]), timeout=15)
        assert headers["x-quanzi-attempts"] == 3 and db.plans.find_one({"_id": order_id})["runs"] == 3
    finally:
        probe.restart()
        probe.wait_healthy(60)


def test_a_service_with_a_bad_setting_refuses_to_start_and_says_why(kit_servers):
    env = {"AMQP_URI": kit_servers.amqp_uri, "MONGO_URI": kit_servers.mongo_uri, "COMMISSION_MAX_LEVELS": "3"}
    proc = ServiceProcess(PROBE, env, free_port(), kit_servers.home / "logs" / "kitprobe-bad.log")
    proc.start()
    try:
        with pytest.raises(ServiceDied) as died:
            proc.wait_healthy(60)
    finally:
        proc.stop()
    assert "COMMISSION_MAX_LEVELS='3' refused" in str(died.value) and "1 or 2 levels" in str(died.value)
