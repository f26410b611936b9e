"""Group commit of reservations (kit.batching): single-line reservations that arrive while a batch is being written
are written together by CatalogStore.reserve_many, so a hot SKU's orders cost a few database round trips per batch
instead of four per order. Multi-line reservations, and one whose order already has a claim (a retry of a
reservation in progress elsewhere), go through CatalogStore.reserve on their own."""
from kit.batching import ALONE, group_commit_of
from kit.errors import CallerError, as_outcome


def batcher_of(store):
    """The store's GroupCommit of reservations."""
    return group_commit_of(store, "catalog.reservations", lambda batch: [
        ALONE if outcome is None else outcome for outcome in store.reserve_many(batch)])


def reserve(store, order_id, lines, group):
    """Reserve an order's lines, batched with the single-line reservations that arrive while others are in
    flight."""
    if len(lines) != 1:
        return store.reserve(order_id, lines, group)
    return batcher_of(store).submit((order_id, lines[0], group), alone=lambda: store.reserve(order_id, lines, group))


def reserve_many(store, requests):
    """Several orders' reservations (validated Reservation payloads), one outcome each (kit.errors.as_outcome):
    the single-line ones written as one batch, the others (and a retry of one already claimed) one by one."""
    outcomes = [None] * len(requests)
    single = [i for i, r in enumerate(requests) if len(r["lines"]) == 1]
    batched = store.reserve_many([(requests[i]["order_id"], requests[i]["lines"][0], requests[i]["group"])
                                  for i in single]) if single else []
    for i, outcome in zip(single, batched):
        outcomes[i] = outcome
    for i, request in enumerate(requests):
        if outcomes[i] is None:
            try:
                outcomes[i] = store.reserve(request["order_id"], request["lines"], request["group"])
            except CallerError as exc:
                outcomes[i] = exc
    return [as_outcome(outcome) for outcome in outcomes]
