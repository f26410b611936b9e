"""Each service's own MongoDB database, through a store class the service writes.

`MongoStore(MyStore)` is a nameko dependency: one MongoClient per container, indexes created at start, the
outbox relay running beside it. Services subclass `BaseStore`, declare `INDEXES`, and add their queries."""
import logging
from contextlib import contextmanager
from datetime import datetime

import eventlet
from nameko.extensions import DependencyProvider
import pymongo
from pymongo import ASCENDING, MongoClient
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern

from kit import claims
from kit.batching import ALONE, group_commit_of
from kit.config import load_settings
from kit.context import current_request_id, request_id_of
from kit.durability import DURABLE
from kit.outbox import Outbox, OutboxRelay
from kit.validation import utcnow

log = logging.getLogger(__name__)

DUPLICATE = object()  # returned by apply_once when the event was applied before
PROCESSED_RETENTION = 30 * 24 * 3600  # longer than any broker redelivery or DLQ replay window
# How long a consumer's first event from idle waits for others to share its transaction (apply_once_together).
# Nobody waits on a consumer's answer; a transaction costs MongoDB far more than the events in it, and at the
# order.paid rate of a busy shop (~100/s) this turns batches of 1.25 events into batches of 4-5.
EVENTS_LINGER = 0.03


EXPORT_LIMIT = 10_000  # documents per collection in one export


def jsonable(value):
    """A Mongo document as JSON values: datetimes as ISO 8601 strings, nested values converted too."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def connect(uri):
    return MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000, appname="quanzi")


class BaseStore:
    """Subclasses set COLLECTIONS (each becomes an attribute: store.orders is the `orders` collection),
    INDEXES = {collection: [IndexModel, ...]}, CLAIMED = (collections whose documents carry a kit.claims lease),
    and add query methods."""
    COLLECTIONS = ()
    INDEXES = {}
    CLAIMED = ()
    # Where a user's personal data lives: {collection: (fields holding a user id, ...)}. `export_user` reads it
    # (PIPL access and portability: GET /me/export asks every service); erasure is each service's own rule.
    PERSONAL_DATA = {}

    def __init__(self, client, db, service_name, settings):
        self.client = client
        self.db = db
        for name in self.COLLECTIONS:
            setattr(self, name, db[name])
        self.service_name = service_name
        self.settings = settings
        self.outbox = Outbox(db, service_name, settings.outbox_partitions)
        self.processed = db["processed_events"]
        # the most events the broker hands this process at once on a queue (its prefetch: nameko's max_workers);
        # MongoStore sets it. A batch of events applied together goes as soon as that many wait.
        self.deliveries_at_once = None
        self._committed_listeners = []

    def ensure_indexes(self):
        """The start-up step: indexes, and the migrations of stored documents (idempotent)."""
        for collection in self.CLAIMED:
            changed = claims.migrate(self.db[collection])
            if changed:
                log.info("%s: %d documents' lease field renamed to %s", collection, changed, claims.FIELD)
        for collection, models in self.INDEXES.items():
            if models:
                self.db[collection].create_indexes(models)
        self.outbox.ensure_indexes()
        self.processed.create_index([("at", ASCENDING)], expireAfterSeconds=PROCESSED_RETENTION)

    def on_events_committed(self, listener):
        """listener() runs after every transaction that committed events (the relay's wake-up call)."""
        self._committed_listeners.append(listener)

    def transaction(self, fn):
        """Run fn(session) in a multi-document transaction (retried on transient conflicts).

        Events added with `emit` inside fn commit with the state change or not at all."""
        callbacks = []

        def attempt(session):
            callbacks.clear()  # a retried attempt starts over: only the committed attempt's callbacks run
            session.after_commit = callbacks.append
            session.emitted = False
            session.batch_reads = {}  # what handlers of a batch read once for all of it (see apply_once_together)
            session.pending_writes = None  # a batch's writes sent together at its end (write_later)
            return fn(session)

        with self.client.start_session() as session:
            result = session.with_transaction(
                attempt, read_concern=ReadConcern("majority"), write_concern=DURABLE)
        for callback in callbacks:
            callback()
        return result

    @contextmanager
    def snapshot(self):
        """A session whose reads all see one point in time, however long they take: a read-only transaction
        (it holds its snapshot while it runs; a snapshot session's later reads fail once mongod's history window
        has passed their time, and the stacks keep no window: tools/stack/mongo.py)."""
        with self.client.start_session() as session:
            with session.start_transaction(read_concern=ReadConcern("snapshot")):
                yield session

    @staticmethod
    def after_commit(session, callback):
        """Run callback() once the transaction of `session` has committed (e.g. count a business metric):
        never for an attempt that was retried or aborted."""
        session.after_commit(callback)

    def emit(self, session, event_type, data, subject=None, first=False):
        """Record an event in the outbox within the caller's transaction; returns the envelope. Once it
        commits, the relay is woken (only transactions that wrote events wake it). first=True: the aggregate's
        very first event (it was made in this transaction), so there is no earlier event to order it after."""
        return self.emit_many(session, [(event_type, data, subject)], first=first)[0]

    def emit_many(self, session, events, first=False):
        """emit() of several [(event_type, data, subject)] in one insert (a batch's events)."""
        envelopes = self.outbox.add_many(session, events, first=first)
        if not getattr(session, "emitted", True):
            session.emitted = True
            session.after_commit(self._events_committed)
        return envelopes

    @staticmethod
    def write_later(session, collection, op):
        """A write whose result nobody waits for (pymongo's InsertOne, UpdateOne, ReplaceOne, unconditional). In an
        event handler's transaction (apply_once, apply_once_together) it goes with the other writes to
        `collection`, in order, in one bulk_write at the end: one round trip for a batch of events instead of one
        per event and write. Anywhere else it is sent now. Before reading `collection`, or writing it on a
        condition, in the same transaction, call flush_writes(session, collection): the read then sees every
        write before it."""
        pending = getattr(session, "pending_writes", None)
        if pending is None:
            collection.bulk_write([op], session=session)
        else:
            pending.setdefault(collection.name, (collection, []))[1].append(op)

    @staticmethod
    def flush_writes(session, collection=None):
        """Send the writes write_later kept for `collection` (for every collection: None)."""
        pending = getattr(session, "pending_writes", None) or {}
        for name in list(pending) if collection is None else [collection.name]:
            target, ops = pending.pop(name, (None, ()))
            if ops:
                target.bulk_write(ops, session=session)

    def _events_committed(self):
        for listener in self._committed_listeners:
            listener()

    def apply_once(self, key, fn):
        """Apply fn(session) and remember `key` in one transaction; a key seen before returns DUPLICATE."""
        def attempt(session):
            # the marker first, without looking it up: a key seen before fails this insert (and aborts the
            # transaction before anything else was written), which is rarer than a first delivery
            self.processed.insert_one({"_id": key, "at": utcnow()}, session=session)
            session.pending_writes = {}
            result = fn(session)
            self.flush_writes(session)
            return result
        try:
            return self.transaction(attempt)
        except DuplicateKeyError:
            # Applied before (a redelivery), or a concurrent delivery of it committed first: nothing of ours was
            # written. (A DuplicateKeyError of the handler's own writes leaves no marker: it is raised as it is.)
            if self.processed.find_one({"_id": key}):
                return DUPLICATE
            raise

    def apply_once_together(self, key, fn, event=None):
        """apply_once(key, fn), in one transaction with the others arriving meanwhile (group commit,
        kit.batching): one insert of their markers and one commit for a batch of events instead of one each. The
        first event from idle waits EVENTS_LINGER for company.

        In a batch, `session.batch_events` lists the events of the batch (each caller's `event`), so a handler
        may read what all of them need at once, keeping it in `session.batch_reads` (emptied with each attempt
        of the transaction). An event applied alone has no `batch_events`. A handler's writes through
        write_later go to MongoDB together, one bulk_write per collection once every handler of the batch ran.

        For handlers that write only through `session`: a batch in which a marker was seen before (a repeat) or
        a handler failed is written by none of them; each then goes again alone, where a repeat answers DUPLICATE
        and a failure reaches its own event only (its retries, its dead-letter queue)."""
        request_id = current_request_id()  # the batch runs outside this worker: its log lines keep the event's id
        return self.events_batcher().submit((key, fn, request_id, event), alone=lambda: self.apply_once(key, fn))

    def events_batcher(self):
        """The process's GroupCommit of the events applied together."""
        return group_commit_of(self, f"{self.service_name}.events", self._apply_together, linger=EVENTS_LINGER,
                               full=self.deliveries_at_once)

    def _apply_together(self, batch):
        def attempt(session):
            now = utcnow()
            self.processed.insert_many([{"_id": key, "at": now} for key, _, _, _ in batch], session=session)
            session.batch_events = [event for _, _, _, event in batch]
            session.pending_writes = {}
            results = []
            for _, fn, request_id, _ in batch:
                with request_id_of(request_id):
                    results.append(fn(session))
            self.flush_writes(session)
            return results
        try:
            return self.transaction(attempt)
        except Exception:  # noqa: BLE001 - whatever failed, each event is decided alone and hears its own outcome
            log.debug("a batch of %d events goes again one by one", len(batch), exc_info=True)
            return [ALONE] * len(batch)

    def export_user(self, user_id):
        """{collection: [documents]} of everything this service holds about `user_id`, as plain JSON values."""
        return {collection: [jsonable(doc) for doc in self.db[collection].find(
                    {"$or": [{field: user_id} for field in user_fields]}).sort("_id", ASCENDING).limit(EXPORT_LIMIT)]
                for collection, user_fields in self.PERSONAL_DATA.items()}

    def ping(self, timeout=1.5):
        """Raises unless MongoDB answers within `timeout` s (readiness must answer fast while it is down)."""
        with pymongo.timeout(timeout):
            self.client.admin.command("ping")


class MongoStore(DependencyProvider):
    """Injects the service's store; runs its outbox relay unless relay=False (services that emit nothing)."""
    same_for_every_worker = True  # one store per process (kit.workerless)

    def __init__(self, store_cls, relay=True, **kwargs):
        super().__init__(**kwargs)
        self.store_cls = store_cls
        self.relay_enabled = relay
        self.store = None
        self.relay = None

    def setup(self):
        settings = load_settings()
        client = connect(settings.mongo_uri)
        service = self.container.service_name
        db = client[f"{settings.mongo_db_prefix}{service}"]
        self.store = self.store_cls(client, db, service, settings)
        self.store.deliveries_at_once = self.container.max_workers
        self.store.ensure_indexes()
        if self.relay_enabled:
            self.relay = OutboxRelay(self.store.outbox, settings.amqp_uri)
            self.store.on_events_committed(self.relay.nudge)

    def start(self):
        if self.relay:
            self._relay_thread = self.container.spawn_managed_thread(self.relay.run)

    def stop(self):
        if self.relay:
            self.relay.stop()
            thread = getattr(self, "_relay_thread", None)
            if thread is not None:
                with eventlet.Timeout(10, False):
                    thread.wait()
        self.store.client.close()

    def kill(self):
        if self.relay:
            self.relay.stop()

    def get_dependency(self, worker_ctx):
        return self.store
