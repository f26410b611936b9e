"""kit.claims: the one lease helper timers use, against a real replica set (the kit's own mongod)."""
import threading
from datetime import timedelta

from kit import claims
from kit.config import load_settings
from kit.mongo import BaseStore, connect
from kit.validation import utcnow
from tests.kit.support import unique

LEASE = timedelta(seconds=30)


class TimerStore(BaseStore):
    COLLECTIONS = ("jobs",)
    CLAIMED = ("jobs",)


def fresh(kit_servers):
    client = connect(kit_servers.mongo_uri)
    name = unique("claims")
    return TimerStore(client, client[f"kittest_{name}"], name, load_settings({}))


def due_jobs(store, n):
    now = utcnow()
    store.jobs.insert_many([{"_id": f"job{i}", "due_at": now - timedelta(seconds=1), **claims.free()}
                            for i in range(n)])
    return now


def test_replicas_claiming_at_once_never_take_one_item_twice(kit_servers):
    # given 40 due items and 8 replicas sweeping at the same time
    store = fresh(kit_servers)
    due_jobs(store, 40)
    taken, lock = [], threading.Lock()

    def sweep():
        while (job := claims.next_due(store.jobs, {"due_at": {"$lte": utcnow()}}, utcnow(), LEASE)) is not None:
            with lock:
                taken.append(job["_id"])
    threads = [threading.Thread(target=sweep) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every item was claimed exactly once, and carries its lease in the one field
    assert sorted(taken) == sorted(f"job{i}" for i in range(40))
    assert all(doc[claims.FIELD] > utcnow() for doc in store.jobs.find())


def test_a_lease_expires_a_released_item_is_free_and_a_retry_waits(kit_servers):
    store = fresh(kit_servers)
    now = due_jobs(store, 1)
    query = {"due_at": {"$lte": now}}
    # given an item claimed by a replica
    assert claims.next_due(store.jobs, query, now, LEASE)["_id"] == "job0"
    # then nobody else gets it while the lease runs, and anyone does once it ended (the replica died)
    assert claims.next_due(store.jobs, query, now + LEASE - timedelta(seconds=1), LEASE) is None
    assert claims.next_due(store.jobs, query, now + LEASE, LEASE)["_id"] == "job0"
    # when it is released to be retried in 10 s, it waits 10 s; released outright, it is free at once
    claims.release(store.jobs, "job0", retry_in=timedelta(seconds=10), now=now)
    assert claims.next_due(store.jobs, query, now + timedelta(seconds=9), LEASE) is None
    claims.release(store.jobs, "job0")
    assert store.jobs.find_one({"_id": "job0"})[claims.FIELD] == claims.NEVER
    assert claims.next_due(store.jobs, query, now, LEASE)["_id"] == "job0"
    # a renewed lease holds the item longer
    claims.renew(store.jobs, "job0", now + timedelta(seconds=20), LEASE)
    assert claims.next_due(store.jobs, query, now + LEASE + timedelta(seconds=1), LEASE) is None


def test_take_gets_one_known_item_only_when_its_owner_let_its_lease_end(kit_servers):
    store = fresh(kit_servers)
    now = utcnow()
    store.jobs.insert_one({"_id": "rec", "state": "running", **claims.held(now, LEASE)})
    assert not claims.take(store.jobs, "rec", now, LEASE, {"state": "running"})
    assert not claims.take(store.jobs, "rec", now + LEASE, LEASE, {"state": "done"})
    assert claims.take(store.jobs, "rec", now + LEASE, LEASE, {"state": "running"})
    assert not claims.take(store.jobs, "rec", now + LEASE, LEASE, {"state": "running"})  # ours now


def test_documents_stored_with_the_old_field_name_are_migrated_at_start_once(kit_servers):
    # given documents written before kit.claims, with `claim_until` (one of them claimed until the future)
    store = fresh(kit_servers)
    now = utcnow()
    store.jobs.insert_many([{"_id": "old-free", "due_at": now, "claim_until": claims.NEVER},
                            {"_id": "old-held", "due_at": now, "claim_until": now + LEASE},
                            {"_id": "new", "due_at": now, **claims.free()}])
    # when the service starts (the store's index/migration step), twice
    store.ensure_indexes()
    store.ensure_indexes()
    # then every document carries the one field, with its value kept; and the timers see them
    docs = {doc["_id"]: doc for doc in store.jobs.find()}
    assert all("claim_until" not in doc for doc in docs.values())
    assert docs["old-free"][claims.FIELD] == claims.NEVER
    assert abs(docs["old-held"][claims.FIELD] - (now + LEASE)) < timedelta(milliseconds=2)
    assert claims.migrate(store.jobs) == 0
    # and the migration reads a sparse index of the documents still to migrate, not the whole collection
    assert store.jobs.index_information()["claim_until_legacy_sparse"]["sparse"] is True
    stats = store.db.command("explain", {"find": "jobs", "filter": {"claim_until": {"$exists": True}}},
                             verbosity="executionStats")["executionStats"]
    assert (stats["totalKeysExamined"], stats["totalDocsExamined"]) == (0, 0)
    claimed = {claims.next_due(store.jobs, {}, now, LEASE)["_id"] for _ in range(2)}
    assert claimed == {"old-free", "new"}
    assert claims.next_due(store.jobs, {}, now, LEASE) is None
