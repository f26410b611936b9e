"""Helpers for the kit's reliability tests: an independent subscriber, relay processes, a fresh store."""
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict

import kombu

from kit.config import load_settings
from kit.mongo import BaseStore, connect
from tests.helpers import eventually
from tools.stack import REPO, ServiceProcess, ServiceSpec, free_port

PROBE = ServiceSpec("kitprobe", ".", "tests.kit.probe_service:ProbeService")
# the same handler run without a nameko worker (kit.workerless), as the consumers' events applied together are
PROBE_WITHOUT_WORKER = ServiceSpec("kitprobe", ".", "tests.kit.probe_service:WorkerlessProbe")


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def until(predicate, timeout=10):
    """Wait until `predicate()` returns something truthy, and return it (`eventually` waits for no raise)."""
    def check():
        value = predicate()
        assert value, f"still {value!r}"
        return value
    return eventually(check, timeout)


def accrued(order_id, n):
    """`commission.accrued` data whose amount carries the event's position in its aggregate."""
    return {"order_id": order_id, "beneficiary_id": "usr_kit", "level": 1, "amount_fen": n}


def running_probe(kit_servers, spec, log_name, **env):
    """`spec` run as a real service is (`nameko run`) on the kit's broker and replica set, healthy."""
    env = {"AMQP_URI": kit_servers.amqp_uri, "MONGO_URI": kit_servers.mongo_uri, **env}
    proc = ServiceProcess(spec, env, free_port(), kit_servers.home / "logs" / log_name)
    proc.start()
    proc.wait_healthy(60)
    return proc


class ProbeStore(BaseStore):
    """A service store over a fresh database, as a service would subclass BaseStore."""

    @property
    def aggregates(self):
        return self.db["aggregates"]

    def record(self, order_id, n):
        """One state change and its event in one transaction; the aggregate's document serialises its writers."""
        def txn(session):
            self.aggregates.update_one({"_id": order_id}, {"$set": {"n": n}}, upsert=True, session=session)
            return self.emit(session, "commission.accrued", accrued(order_id, n), subject=order_id)
        return self.transaction(txn)


def fresh_store(mongo_uri, service=None):
    service = service or unique("kit")
    client = connect(mongo_uri)
    store = ProbeStore(client, client[f"kittest_{service}"], service, load_settings({}))
    store.ensure_indexes()
    return store


class Subscriber:
    """Another team's plain kombu queue (durable, survives a broker restart) bound to `<service>.events`.

    `drain()` collects what has arrived over a fresh connection each time, so it works across restarts."""

    def __init__(self, amqp_uri, exchange_name, routing_key="#"):
        self.amqp_uri = amqp_uri
        exchange = kombu.Exchange(exchange_name, type="topic", durable=True, delivery_mode=2)
        self.queue = kombu.Queue(unique("kit-subscriber-"), exchange, routing_key=routing_key, durable=True)
        self.received = []  # envelopes in arrival order, duplicates included
        with kombu.Connection(amqp_uri) as conn:
            self.queue(conn.default_channel).declare()

    def drain(self):
        with kombu.Connection(self.amqp_uri, connect_timeout=3) as conn:
            bound = self.queue(conn.default_channel)
            while (message := bound.get(no_ack=True)) is not None:
                self.received.append(message.decode())
        return self.received

    def wait_for_ids(self, ids, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.drain()
            except Exception:  # broker still booting
                pass
            missing = set(ids) - self.ids()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} of {len(set(ids))} events never arrived")
            time.sleep(0.1)

    def ids(self):
        return {e["id"] for e in self.received}

    def duplicates(self):
        seen, dup = set(), set()
        for envelope in self.received:
            (dup if envelope["id"] in seen else seen).add(envelope["id"])
        return dup

    def first_arrival_order(self):
        """Per aggregate, the positions carried by its events in the order each first arrived."""
        seen, order = set(), defaultdict(list)
        for envelope in self.received:
            if envelope["id"] not in seen:
                seen.add(envelope["id"])
                order[envelope["subject"]].append(envelope["data"]["amount_fen"])
        return order


class RelayProcess:
    """`python -m tests.kit.relay_proc`: an OutboxRelay in its own process; `published` lists the ids it got
    confirmed, in order."""

    def __init__(self, store, mongo_uri, amqp_uri, relay_id=None, delay=0.0):
        self.relay_id = relay_id or unique("relay-")
        self.published = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.kit.relay_proc", "--mongo", mongo_uri, "--db", store.db.name,
             "--service", store.service_name, "--amqp", amqp_uri, "--relay-id", self.relay_id,
             "--delay", str(delay), "--partitions", str(store.outbox.partitions)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._ready.wait(30), "relay process did not start"

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("published "):
                self.published.append(line.split()[1])
            elif line.startswith("ready"):
                self._ready.set()

    def wait_published(self, count, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.published) < count:
            assert self.proc.poll() is None, "relay process died"
            assert time.monotonic() < deadline, f"relay confirmed only {len(self.published)} of {count}"
            time.sleep(0.01)

    def kill(self):
        """SIGKILL: no clean-up, no lease released, unmarked publishes stay pending."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # no SIGTERM handler: this is a kill too, just a polite one
        self.proc.wait(10)


def outbox_status(store):
    counts = defaultdict(int)
    for doc in store.outbox.events.find({}, {"status": 1}):
        counts[doc["status"]] += 1
    return dict(counts)
