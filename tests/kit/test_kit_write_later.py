"""Writes an event handler keeps for later (BaseStore.write_later): in a handler's transaction (apply_once, or a
batch of events applied together) they go to MongoDB at its end, one bulk_write per collection, in the order they
were made; a read after flush_writes sees them; a write that fails there fails the batch, whose events then go
again alone. Outside a handler's transaction a write is sent at once."""
import eventlet
import pytest
from pymongo import InsertOne, MongoClient, UpdateOne
from pymongo.errors import BulkWriteError

from kit.config import load_settings
from tests.helpers import CommandsSeen
from tests.kit.support import ProbeStore, unique


def write_statements(event):
    """A write command the store's client sends, as (command, collection, number of statements)."""
    name = event.command_name
    if name in ("insert", "update", "delete"):
        statements = event.command.get({"insert": "documents", "update": "updates", "delete": "deletes"}[name])
        return name, event.command[name], len(statements)
    return None


@pytest.fixture
def store(kit_servers):
    commands = CommandsSeen(write_statements)
    client = MongoClient(kit_servers.mongo_uri, tz_aware=True, event_listeners=[commands])
    service = unique("kit")
    store = ProbeStore(client, client[f"kittest_{service}"], service, load_settings({}))
    store.ensure_indexes()
    store.commands = commands
    return store


def together(store, events):
    """[(key, fn)] delivered at once while another event is being applied: one batch. {key: result or error}."""
    batcher = store.events_batcher()
    outcomes = {}

    def deliver(key, fn):
        try:
            outcomes[key] = store.apply_once_together(key, fn)
        except Exception as exc:  # noqa: BLE001 - the caller's own outcome, checked by the test
            outcomes[key] = exc
    batcher._alone += 1
    pool = eventlet.GreenPool(len(events))
    for event in events:
        pool.spawn_n(deliver, *event)
    pool.waitall()
    batcher._alone -= 1
    return outcomes


def counting(store, tally_id):
    """A handler adding its event to the aggregates and to one shared tally, both kept for later."""
    def handler(event_id):
        def apply(session):
            store.write_later(session, store.aggregates, InsertOne({"_id": event_id, "tally": tally_id}))
            store.write_later(session, store.db["tallies"], UpdateOne(
                {"_id": tally_id}, {"$inc": {"n": 1}, "$push": {"order": event_id}}, upsert=True))
            return event_id
        return apply
    return handler


def test_a_batch_sends_its_handlers_writes_in_one_bulk_per_collection_in_their_order(store):
    # given twelve events whose handlers each insert one document and update one tally shared by all of them
    tally = unique("tally_")
    ids = [unique("evt_") for _ in range(12)]
    handler = counting(store, tally)
    # when they are applied together
    store.commands.seen.clear()
    outcomes = together(store, [(f"probe:{i}", handler(i)) for i in ids])
    # then each is applied once, and the tally saw all twelve, one after the other (the upsert of the first, the
    # increments of the others)
    assert outcomes == {f"probe:{i}": i for i in ids}
    assert store.aggregates.count_documents({"tally": tally}) == 12
    counted = store.db["tallies"].find_one({"_id": tally})
    assert counted["n"] == 12 and sorted(counted["order"]) == sorted(ids)
    # and MongoDB received one insert of twelve documents and one update of twelve statements, not twelve each
    # (beside the insert of the batch's markers)
    writes = [w for w in store.commands.seen if w[1] != "processed_events"]
    assert sorted(writes) == [("insert", "aggregates", 12), ("update", "tallies", 12)]


def test_a_read_after_flush_writes_sees_the_writes_kept_before_it(store):
    # given three events whose handlers each count the tally's documents written so far, then add one
    tally = unique("tally_")
    ids = [unique("evt_") for _ in range(3)]
    seen = {}

    def handler(event_id):
        def apply(session):
            store.flush_writes(session, store.aggregates)
            seen[event_id] = store.aggregates.count_documents({"tally": tally}, session=session)
            store.write_later(session, store.aggregates, InsertOne({"_id": event_id, "tally": tally}))
        return apply
    # when they are applied together
    together(store, [(f"probe:{i}", handler(i)) for i in ids])
    # then each saw those of the events before it in the batch (0, 1, 2), though none was written yet when it ran
    assert sorted(seen.values()) == [0, 1, 2]
    assert store.aggregates.count_documents({"tally": tally}) == 3


def test_a_kept_write_that_fails_at_the_end_sends_the_batch_again_alone(store):
    # given a document already there, and a batch in which one handler inserts it again (kept for later)
    tally = unique("tally_")
    taken = unique("doc_")
    store.aggregates.insert_one({"_id": taken})
    ids = [unique("evt_") for _ in range(4)]
    handler = counting(store, tally)

    def clashing(session):
        store.write_later(session, store.aggregates, InsertOne({"_id": taken, "tally": tally}))
        return "clash"
    # when they are applied together
    outcomes = together(store, [("probe:clash", clashing)] + [(f"probe:{i}", handler(i)) for i in ids])
    # then the failing write is the failing event's alone (its insert fails when it goes alone too), and the
    # others are applied once each: the tally counts four, not eight
    assert isinstance(outcomes["probe:clash"], BulkWriteError)
    assert [outcomes[f"probe:{i}"] for i in ids] == ids
    assert store.db["tallies"].find_one({"_id": tally})["n"] == 4
    assert store.processed.find_one({"_id": "probe:clash"}) is None


def test_an_event_alone_sends_its_writes_at_its_end_and_other_transactions_at_once(store):
    # given a handler keeping two writes for later, applied alone
    tally = unique("tally_")
    event_id = unique("evt_")
    store.commands.seen.clear()
    store.apply_once(f"probe:{event_id}", counting(store, tally)(event_id))
    # then they were sent once the handler had run: one command per collection
    writes = [w for w in store.commands.seen if w[1] != "processed_events"]
    assert sorted(writes) == [("insert", "aggregates", 1), ("update", "tallies", 1)]
    # and in a transaction that is not a handler's, a write kept for later is there for the next read at once
    other = unique("doc_")

    def txn(session):
        store.write_later(session, store.aggregates, InsertOne({"_id": other}))
        return store.aggregates.find_one({"_id": other}, session=session)
    assert store.transaction(txn) == {"_id": other}
