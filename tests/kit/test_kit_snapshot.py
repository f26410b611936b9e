"""BaseStore.snapshot: reads that all see one point in time, however long they take (commission's
reconciliation sums the ledger and compares it with the balances), on a mongod that keeps no snapshot history
beyond its open transactions (tools/stack/mongo.py: minSnapshotHistoryWindowInSeconds=0)."""
import time

import pytest

from tests.kit.support import fresh_store, unique

pytestmark = pytest.mark.slow


def test_reads_in_a_snapshot_see_the_point_it_started_at_while_writes_commit_beside_it(kit_servers):
    # given an account of 100 fen and its ledger entry
    store = fresh_store(kit_servers.mongo_uri)
    account = unique("acc_")
    store.aggregates.insert_one({"_id": account, "fen": 100})
    store.db["ledger"].insert_one({"account": account, "fen": 100})
    with store.snapshot() as session:
        balance = store.aggregates.find_one({"_id": account}, session=session)["fen"]
        # when a payment of 30 commits beside it (balance and ledger together), and mongod's history moves on
        for _ in range(3):
            store.transaction(lambda other: (
                store.aggregates.update_one({"_id": account}, {"$inc": {"fen": -10}}, session=other),
                store.db["ledger"].insert_one({"account": account, "fen": -10}, session=other)))
            time.sleep(1)
        ledger = sum(entry["fen"] for entry in store.db["ledger"].find({"account": account}, session=session))
    # then the snapshot's reads agree with each other: no payment shows up as a difference, and none fails
    assert (balance, ledger) == (100, 100)
    assert store.aggregates.find_one({"_id": account})["fen"] == 70
