"""Leases on due work: how timers (and anything else that N replicas might pick up at once) claim one item.

A document that can be claimed carries ONE field, `claimed_until` (FIELD): the time its current lease ends.
`NEVER` (the epoch) means "free". Claiming is one atomic `find_one_and_update` on "due and lease expired", so two
replicas never hold the same item, and a replica that dies holding one lets go when its lease runs out (every
handler must therefore be idempotent: an item can be handled again after a crash).

    from kit import claims

    # a new document starts free (or claimed by its creator: claims.held(now, lease))
    doc = {"_id": ..., "due_at": ..., **claims.free()}

    # a timer: claim the next due item, handle it, repeat
    item = claims.next_due(self.orders, {"due_at": {"$lte": now}}, now, timedelta(seconds=15))
    if item is not None:
        handle(item)                                   # idempotent
        claims.release(self.orders, item["_id"])       # optional: free now (else it is free when the lease ends)
        # or claims.release(self.orders, item["_id"], retry_in=timedelta(seconds=1))  to look again in 1 s

    # take one known item over once its owner's lease ended (e.g. an Idempotency-Key whose request died)
    if claims.take(self.records, record_id, now, lease, {"state": "running"}): ...

    # a long job keeps its lease
    claims.renew(self.orders, item["_id"], now, lease)

Store classes list their claimable collections in `BaseStore.CLAIMED` so the start-up migration (`migrate`, run by
`ensure_indexes`) renames the legacy field `claim_until` of documents written before this helper existed.

No pymongo import here: domain.py modules build documents with `free()` and stay free of pymongo.
"""
from datetime import datetime, timezone

FIELD = "claimed_until"
LEGACY_FIELDS = ("claim_until",)  # names used before kit.claims; migrate() renames them to FIELD
NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)  # "not claimed": every lease has ended by now
_AFTER = True  # pymongo.ReturnDocument.AFTER


def free():
    """The lease fields of a new, unclaimed document."""
    return {FIELD: NEVER}


def held(now, lease):
    """The lease fields of a new document its creator is handling (nobody else may take it before now + lease)."""
    return {FIELD: now + lease}


def expired(now):
    """The filter part "nobody holds a lease on it at `now`"."""
    return {FIELD: {"$lte": now}}


def next_due(collection, query, now, lease, sort=None, projection=None):
    """Claim one document matching `query` whose lease has ended, for `lease` (a timedelta); the claimed
    document (after the update) or None when nothing is due. Several replicas may call this at once."""
    return collection.find_one_and_update({**query, **expired(now)}, {"$set": held(now, lease)},
                                          sort=sort, projection=projection, return_document=_AFTER)


def take(collection, item_id, now, lease, query=None):
    """Claim the document `item_id` (if it also matches `query`) when its lease has ended; True if we got it."""
    return collection.update_one({**(query or {}), "_id": item_id, **expired(now)},
                                 {"$set": held(now, lease)}).modified_count == 1


def renew(collection, item_id, now, lease):
    """Extend a lease we hold (a long job); True if the document is still there."""
    return collection.update_one({"_id": item_id}, {"$set": held(now, lease)}).matched_count == 1


def release(collection, item_id, retry_in=None, now=None):
    """Let go of a claimed document: free at once, or (retry_in, a timedelta) not claimable before now + retry_in."""
    if retry_in is None:
        until = NEVER
    else:
        until = (now or datetime.now(timezone.utc)) + retry_in
    collection.update_one({"_id": item_id}, {"$set": {FIELD: until}})


def migrate(collection):
    """Rename the legacy lease field of stored documents to FIELD; idempotent (a second run matches nothing).
    Returns the number of documents changed.

    It runs at every start, because during a rolling deploy a replica of the previous version may still write the
    legacy field. A sparse index on that field keeps this cheap: it holds only the documents still to migrate
    (none once the fleet is upgraded), so the query never scans the collection and new writes never touch it."""
    changed = 0
    for legacy in LEGACY_FIELDS:
        index = collection.create_index([(legacy, 1)], sparse=True, name=f"{legacy}_legacy_sparse")
        changed += collection.update_many({legacy: {"$exists": True}}, {"$rename": {legacy: FIELD}},
                                          hint=index).modified_count
    return changed
