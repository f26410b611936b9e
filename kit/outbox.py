"""Transactional outbox: events are written with the state change that causes them, then relayed.

Writing: `Outbox.add(session, type, data, subject)` inside the service's transaction.
Relaying: `OutboxRelay` publishes pending events to `<service>.events` (nameko's exchange, routing key = event
type) with publisher confirms, then marks them sent, chunk by chunk. A crash between publish and mark
re-publishes on restart (at-least-once); consumers dedupe on the envelope id.

Ordering and replicas: events are spread over `partitions` by subject (aggregate id). Each relay holds leases
on a fair share of partitions (renewed every loop, expiring after LEASE_SECONDS; a batch stops half-way
through the lease so a slow one never outlives it), and publishes a partition's events in `seq` order,
stopping at the first failure, so one aggregate's events leave in the order written.
Replicas share the work; a dead replica's partitions are taken over when its leases expire.

Publishing is pipelined (`ConfirmedChannel`): a chunk of events goes to the broker in one socket write and the
relay then waits for the broker's confirms of the whole chunk, instead of one round trip per event. Only the part
of a chunk confirmed from its start is marked sent, so a failure half-way never lets a later event of an
aggregate count as sent before an earlier one: the rest goes out again, in order, and consumers dedupe."""
import logging
import math
import os
import threading
import time
import uuid
import zlib
from contextlib import contextmanager
from datetime import timedelta

import amqp
from kombu import Connection
from kombu.serialization import dumps
from nameko.standalone.events import get_event_exchange
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError, PyMongoError

from contracts import EVENTS, make_envelope, spec_for
from kit.durability import APPLIED
from kit.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from kit.validation import utcnow

log = logging.getLogger(__name__)

LEASE_SECONDS = 10
PRODUCERS = {spec.source_service for spec in EVENTS.values()}
CLAIM_EVERY = 1.0  # seconds between lease renewals of a running relay
SENT_RETENTION = 3 * 24 * 3600
CHUNK = 16  # events per pipelined write; small enough that a slow broker still finishes a chunk within a lease
CONFIRM_TIMEOUT = 10.0


def partition_of(subject, partitions):
    return zlib.crc32((subject or "").encode()) % partitions


class Outbox:
    def __init__(self, db, service_name, partitions=8):
        self.service_name = service_name
        self.partitions = partitions
        self.events = db["outbox"]
        # marking events sent: a mark lost to a crash or a failover only sends its events again, and consumers
        # dedupe them (kit.durability)
        self.sent_marks = self.events.with_options(write_concern=APPLIED)
        self.leases = db["outbox_leases"]
        self.relays = db["outbox_relays"]

    def ensure_indexes(self):
        self.events.create_index([("status", ASCENDING), ("partition", ASCENDING), ("seq", ASCENDING)])
        self.events.create_index([("subject", ASCENDING), ("seq", DESCENDING)])
        self.events.create_index([("sent_at", ASCENDING)], expireAfterSeconds=SENT_RETENTION)
        self.relays.create_index([("seen", ASCENDING)], expireAfterSeconds=3600)
        for partition in range(self.partitions):
            try:
                self.leases.insert_one({"_id": partition, "owner": None, "until": utcnow()})
            except DuplicateKeyError:
                pass

    def last_seqs(self, session, subjects):
        """{subject: the seq of its latest event} of the aggregates that have events: one query however many."""
        subjects = sorted(subjects)
        if len(subjects) == 1:  # the common single event: the index's first entry of the aggregate
            last = self.events.find_one({"subject": subjects[0]}, {"seq": 1}, sort=[("seq", DESCENDING)],
                                        session=session)
            return {} if last is None else {subjects[0]: last["seq"]}
        latest = self.events.aggregate([{"$match": {"subject": {"$in": subjects}}},
                                        {"$sort": {"subject": ASCENDING, "seq": DESCENDING}},
                                        {"$group": {"_id": "$subject", "seq": {"$first": "$seq"}}}], session=session)
        return {row["_id"]: row["seq"] for row in latest}

    def add(self, session, event_type, data, subject=None, first=False):
        return self.add_many(session, [(event_type, data, subject)], first=first)[0]

    def add_many(self, session, events, first=False):
        """Record [(event_type, data, subject)] in one insert; returns their envelopes.

        Each event's seq is a nanosecond clock reading, but always above its aggregate's previous event (read
        once for the whole batch, and the batch's own earlier events of it): writers to one aggregate are
        serialised by their transactions, so this orders an aggregate's events even when the wall clock steps
        back (NTP) or another replica's clock runs behind ours. first=True: each is its aggregate's first event
        (made in this transaction), with nothing to come after: no look-up."""
        last = {} if first else self.last_seqs(session, {subject for _, _, subject in events if subject is not None})
        docs = []
        for event_type, data, subject in events:
            owner = spec_for(event_type).source_service
            if owner != self.service_name and self.service_name in PRODUCERS:
                # a Quanzi service emitting another's event: it would leave on the wrong exchange, unheard
                raise ValueError(f"{self.service_name} cannot emit {event_type}: that event belongs to {owner}")
            envelope = make_envelope(event_type, data, subject=subject)
            seq = time.time_ns()
            if subject is not None:
                seq = max(seq, last.get(subject, -1) + 1)
                last[subject] = seq
            docs.append({
                "_id": envelope["id"],
                "type": event_type,
                "subject": subject,
                "partition": partition_of(subject, self.partitions),
                "seq": seq,
                "envelope": envelope,
                "status": "pending",
                "created_at": utcnow(),
            })
        self.events.insert_many(docs, session=session)
        return [doc["envelope"] for doc in docs]

    def backlog(self):
        return self.events.count_documents({"status": "pending"})


class OutboxRelay:
    def __init__(self, outbox, amqp_uri, batch_size=200, idle_wait=0.5, relay_id=None, on_published=None):
        self.outbox = outbox
        self.amqp_uri = amqp_uri
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.relay_id = relay_id or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.exchange = get_event_exchange(outbox.service_name, {})
        self.on_published = on_published  # test hook: called with each chunk confirmed (and marked sent)
        self._wake = threading.Event()
        self._running = True
        self._connection = None
        self._last_gauge = 0.0
        self._lease_deadline = float("inf")  # set by claim_partitions
        self._partitions, self._claimed_at = None, 0.0
        self._more = False  # whether the last pass stopped with events left behind

    # -- control ------------------------------------------------------------------------------------
    def nudge(self):
        """Called after a local commit so new events go out without waiting for the next poll."""
        self._wake.set()

    def stop(self):
        self._running = False
        self._wake.set()

    def run(self):
        backoff = 0.5
        while self._running:
            try:
                self.run_once()
                backoff = 0.5
            except Exception as exc:  # broker or database away: keep leases short-lived, retry
                self._partitions = None  # claim afresh after a failure
                log.warning("outbox relay for %s: %s; retrying in %.1fs",
                            self.outbox.service_name, exc, backoff)
                self._drop_connection()
                self._sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            if not self._more:
                # the last pass left nothing behind: wait for a nudge (a commit) or the poll interval, rather
                # than ask the database again straight away (a query per pass, for nothing, on a busy service)
                self._sleep(self.idle_wait)
        self._release_leases()
        self._drop_connection()

    def _sleep(self, seconds):
        self._wake.wait(seconds)
        self._wake.clear()

    # -- one pass -----------------------------------------------------------------------------------
    def run_once(self):
        # Leases last LEASE_SECONDS; renewing them once a second is plenty, and saves the database several
        # operations on every pass of a busy relay.
        if self._partitions is None or time.monotonic() - self._claimed_at >= CLAIM_EVERY:
            self._partitions = self.claim_partitions()
            self._claimed_at = time.monotonic()
        partitions = self._partitions
        published, self._more = 0, False
        if partitions:
            published = self.publish_pending(partitions)
        self._update_gauges()
        return published

    def claim_partitions(self):
        # Stop publishing well before these leases (and our `seen`) can lapse: past that, another relay
        # may take our partitions and publish the rest of our batch a second time.
        self._lease_deadline = time.monotonic() + LEASE_SECONDS / 2
        now = utcnow()
        until = now + timedelta(seconds=LEASE_SECONDS)
        self.outbox.relays.update_one({"_id": self.relay_id}, {"$set": {"seen": now}}, upsert=True)
        live = self.outbox.relays.count_documents({"seen": {"$gte": now - timedelta(seconds=LEASE_SECONDS)}})
        share = math.ceil(self.outbox.partitions / max(live, 1))
        self.outbox.leases.update_many({"owner": self.relay_id}, {"$set": {"until": until}})
        mine = sorted(d["_id"] for d in self.outbox.leases.find({"owner": self.relay_id}, {"_id": 1}))
        for extra in mine[share:]:  # a new replica joined: hand back what is over our share
            self.outbox.leases.update_one({"_id": extra, "owner": self.relay_id},
                                          {"$set": {"owner": None, "until": now}})
        mine = mine[:share]
        if len(mine) < share:
            for free in self.outbox.leases.find({"$or": [{"owner": None}, {"until": {"$lt": now}}]}, {"_id": 1}):
                if len(mine) >= share:
                    break
                taken = self.outbox.leases.update_one(
                    {"_id": free["_id"], "$or": [{"owner": None}, {"until": {"$lt": now}}]},
                    {"$set": {"owner": self.relay_id, "until": until}})
                if taken.modified_count:
                    mine.append(free["_id"])
        return mine

    def publish_pending(self, partitions):
        pending = list(self.outbox.events.find(
            {"status": "pending", "partition": {"$in": partitions}},
            {"envelope": 1, "type": 1, "partition": 1},
        ).sort([("seq", ASCENDING)]).limit(self.batch_size))
        if not pending:
            return 0
        sent = 0
        self._more = len(pending) == self.batch_size  # a full batch: there may be more behind it
        channel = self._channel()
        for start in range(0, len(pending), CHUNK):
            if time.monotonic() > self._lease_deadline:
                self._more = True
                break  # renew the leases, carry on in the next pass
            chunk = pending[start:start + CHUNK]
            confirmed = chunk[:channel.publish([(doc["envelope"], doc["type"]) for doc in chunk])]
            # marked as soon as the broker confirmed them: a relay that dies later publishes none of them again
            self._mark_sent([doc["_id"] for doc in confirmed])
            sent += len(confirmed)
            for doc in confirmed:
                EVENTS_PUBLISHED.labels(self.outbox.service_name, doc["type"]).inc()
            if self.on_published and confirmed:
                self.on_published(confirmed)
            if len(confirmed) < len(chunk):
                raise ConfirmRefused(f"the broker refused event {chunk[len(confirmed)]['_id']}")
        return sent

    def _mark_sent(self, ids):
        if not ids:
            return
        self.outbox.sent_marks.update_many({"_id": {"$in": ids}}, {"$set": {"status": "sent", "sent_at": utcnow()}})

    def _update_gauges(self):
        if time.monotonic() - self._last_gauge < 2:
            return
        self._last_gauge = time.monotonic()
        OUTBOX_BACKLOG.labels(self.outbox.service_name).set(self.outbox.backlog())
        oldest = self.outbox.events.find_one({"status": "pending"}, {"created_at": 1}, sort=[("seq", 1)])
        age = (utcnow() - oldest["created_at"]).total_seconds() if oldest else 0
        OUTBOX_OLDEST_AGE.labels(self.outbox.service_name).set(age)

    # -- broker connection --------------------------------------------------------------------------
    def _channel(self):
        if self._connection is None:
            self._connection = ConfirmedChannel(self.amqp_uri, self.exchange)
        return self._connection

    def _drop_connection(self):
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def _release_leases(self):
        try:
            self.outbox.leases.update_many({"owner": self.relay_id}, {"$set": {"owner": None, "until": utcnow()}})
            self.outbox.relays.delete_one({"_id": self.relay_id})
        except PyMongoError:
            pass


class ConfirmRefused(Exception):
    """The broker nacked an event (or the connection went before its confirm): the pass stops there."""


class ConfirmedChannel:
    """A channel in publisher-confirm mode on a connection of its own. `publish` writes a chunk of events to the
    socket in one go and then reads the broker's confirms (RabbitMQ acknowledges several at once), so a chunk
    costs one round trip instead of one per event, and the broker can make the chunk durable together."""

    def __init__(self, amqp_uri, exchange):
        self.exchange = exchange
        self.connection = Connection(amqp_uri, connect_timeout=5)
        self.connection.ensure_connection(max_retries=1)
        self.channel = self.connection.channel()
        self.exchange(self.channel).declare()
        self.channel.confirm_select()
        self.published = 0  # delivery tags used on this channel: the broker numbers confirms the same way
        self.acked_upto, self.acked, self.nacked = 0, set(), set()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)

    def publish(self, events, timeout=CONFIRM_TIMEOUT):
        """events: [(envelope, routing key)]. Returns how many of them, from the first, the broker confirmed."""
        first = self.published + 1
        with self._one_write():
            for envelope, routing_key in events:
                content_type, encoding, body = dumps(envelope, serializer="json")
                self.channel.basic_publish(
                    amqp.Message(body, content_type=content_type, content_encoding=encoding, delivery_mode=2,
                                 application_headers={"quanzi-event-id": envelope["id"]}),
                    exchange=self.exchange.name, routing_key=routing_key, mandatory=False)
                self.published += 1
        last = self.published
        deadline = time.monotonic() + timeout
        while not self._settled(first, last):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.connection.drain_events(timeout=remaining)
        confirmed = 0
        for tag in range(first, last + 1):
            if tag in self.nacked or not (tag <= self.acked_upto or tag in self.acked):
                break
            confirmed += 1
        self.acked = {tag for tag in self.acked if tag > last}
        return confirmed

    def _settled(self, first, last):
        return all(tag <= self.acked_upto or tag in self.acked or tag in self.nacked for tag in range(first, last + 1))

    def _on_ack(self, delivery_tag, multiple):
        if multiple:
            self.acked_upto = max(self.acked_upto, delivery_tag)
        else:
            self.acked.add(delivery_tag)

    def _on_nack(self, delivery_tag, multiple):
        if multiple:  # every unconfirmed tag up to this one
            self.nacked.update(tag for tag in range(self.acked_upto + 1, delivery_tag + 1) if tag not in self.acked)
        else:
            self.nacked.add(delivery_tag)

    @contextmanager
    def _one_write(self):
        """Gather the frames the chunk's publishes write and send them in one system call: on this kind of
        machine a socket write costs more than building the frames."""
        transport = self.connection.connection.transport
        send, frames = transport._write, []
        transport._write = lambda data: frames.append(bytes(data))  # copied: amqp reuses its frame buffer
        try:
            yield
        finally:
            transport._write = send
        send(b"".join(frames))

    def close(self):
        try:
            self.connection.release()
        except Exception:
            pass
