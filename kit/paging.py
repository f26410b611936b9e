"""Keyset pagination for lists sorted newest first by (a time field, an id field): `{items, next_cursor}` pages
that stay correct while new items arrive. The cursor is opaque to clients: "<milliseconds>_<id>" of the last
item shown (CURSOR_PATTERN; anything else is refused as a bad cursor, 400, before it reaches a query).

The usual list, in one call (query limit + 1 documents to know whether there is a next page):

    items, next_cursor = paging.find_page(coll, {"owner": user_id}, limit, cursor, "created_at")
    items, next_cursor = paging.find_page(coll, query, limit, cursor, "since", id_field="friend",
                                          projection={"x": 0})

Lists that filter what they read in Python (a timeline) use the parts: `decode` the cursor once into a position
(at, id), `after(position, ...)` as the query part, and `encode(at, id)` for the next cursor.
"""
import re
from datetime import datetime, timezone

from kit.errors import InvalidInput

# milliseconds since the epoch (at most 14 digits: before the year 5000), "_", an id (kit.validation.new_id ids and
# user ids: letters, digits, "_", "-"). The API document publishes this pattern for every `cursor` parameter.
CURSOR_PATTERN = r"^[0-9]{1,14}_[A-Za-z0-9_-]{1,64}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def NEWEST_FIRST(field, id_field="_id"):  # noqa: N802 (reads like a constant at the call site)
    return [(field, -1), (id_field, -1)]


def encode(at, item_id):
    # MongoDB keeps milliseconds: encode exactly what a stored document holds.
    return f"{int(at.timestamp() * 1000)}_{item_id}"


def decode(cursor):
    """(at, id) of a cursor we issued; None for None (the first page); InvalidInput for anything else."""
    if cursor is None:
        return None
    refused = InvalidInput("bad cursor", {"cursor": ["Not a cursor this list returned."]})
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise refused
    millis, _, item_id = cursor.partition("_")
    try:
        return datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc), item_id
    except (ValueError, OverflowError, OSError):
        raise refused


def after(cursor, field, id_field="_id"):
    """The filter part selecting what comes after `cursor` (a cursor string, or a position (at, id) from
    `decode`) in newest-first order ({} for the first page: None or "")."""
    if not cursor:
        return {}
    at, item_id = decode(cursor) if isinstance(cursor, str) else cursor
    return {"$or": [{field: {"$lt": at}}, {field: at, id_field: {"$lt": item_id}}]}


def page(docs, limit, field, id_field="_id"):
    """(the first `limit` docs, the cursor of the next page or None); query limit + 1 docs to know."""
    next_cursor = encode(docs[limit - 1][field], docs[limit - 1][id_field]) if len(docs) > limit else None
    return docs[:limit], next_cursor


def find_page(collection, query, limit, cursor, field, id_field="_id", **find_kwargs):
    """One newest-first page of `collection` matching `query`: (documents, next cursor). `find_kwargs` go to
    `find` (projection, comment, session...)."""
    query = {**query, **after(cursor, field, id_field)}
    docs = list(collection.find(query, **find_kwargs).sort(NEWEST_FIRST(field, id_field)).limit(limit + 1))
    return page(docs, limit, field, id_field)
