"""Keyset pagination for lists sorted newest first by (a time field, _id): `{items, next_cursor}` pages that stay
correct while new items arrive. The cursor is opaque to clients: "<milliseconds>_<id>" of the last item shown.

    query.update(paging.after(cursor, "created_at"))      # raises InvalidInput on a cursor we never issued
    docs = list(coll.find(query).sort(paging.NEWEST_FIRST("created_at")).limit(limit + 1))
    items, next_cursor = paging.page(docs, limit, "created_at")
"""
from datetime import datetime, timezone

from kit.errors import InvalidInput


def NEWEST_FIRST(field):  # noqa: N802 (reads like a constant at the call site)
    return [(field, -1), ("_id", -1)]


def encode(at, item_id):
    # MongoDB keeps milliseconds: encode exactly what a stored document holds.
    return f"{int(at.timestamp() * 1000)}_{item_id}"


def decode(cursor):
    millis, sep, item_id = (cursor or "").partition("_")
    try:
        if not sep or not item_id:
            raise ValueError(cursor)
        return datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc), item_id
    except (ValueError, OverflowError, OSError):
        raise InvalidInput("bad cursor", {"cursor": ["Not a cursor this list returned."]})


def after(cursor, field):
    """The filter part selecting what comes after `cursor` in newest-first order ({} for the first page)."""
    if not cursor:
        return {}
    at, item_id = decode(cursor)
    return {"$or": [{field: {"$lt": at}}, {field: at, "_id": {"$lt": item_id}}]}


def page(docs, limit, field):
    """(the first `limit` docs, the cursor of the next page or None); query limit + 1 docs to know."""
    next_cursor = encode(docs[limit - 1][field], docs[limit - 1]["_id"]) if len(docs) > limit else None
    return docs[:limit], next_cursor
