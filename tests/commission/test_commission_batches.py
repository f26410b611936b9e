"""order.paid events applied together (one transaction per batch) read their orders and their buyers' clicks once
for the batch; each order is still attributed exactly as it would be alone: its own buyer, its own window."""
from datetime import timedelta

from tests.commission import bus as ev
from tests.commission.bus import Story, now, uid

ZERO = {"pending_fen": 0, "frozen_fen": 0, "withdrawable_fen": 0, "withdrawing_fen": 0, "withdrawn_fen": 0}


def test_orders_paid_together_are_each_attributed_by_their_own_buyer_and_window(send, books, mongo):
    # given five buyers whose orders' windows (30 s here) differ, and clicks that only the batch's union of
    # windows would cover
    created = now()
    late_created = created - timedelta(seconds=10)
    newest, older, after_late, before_late, stale = (uid("usr") for _ in range(5))
    a, b, c, d, e = (uid("usr") for _ in range(5))
    send(ev.share_clicked(uid("sc"), older, a, clicked_at=created - timedelta(seconds=20)),
         ev.share_clicked(uid("sc"), newest, a, clicked_at=created - timedelta(seconds=10)),
         # b's order was created 10 s before the others: a click after that is not b's, even though it falls in
         # the window of the others' orders
         ev.share_clicked(uid("sc"), before_late, b, clicked_at=late_created - timedelta(seconds=15)),
         ev.share_clicked(uid("sc"), after_late, b, clicked_at=late_created + timedelta(seconds=5)),
         # d clicked 31 s before its order: outside its window, inside b's
         ev.share_clicked(uid("sc"), stale, d, clicked_at=created - timedelta(seconds=31)))
    # (c clicked nothing; e's share code beats any click)
    sharer_of_e, code = uid("usr"), uid("sc")
    send(ev.share_created(code, sharer_of_e))
    stories = {a: Story(a, created_at=created), b: Story(b, created_at=late_created), c: Story(c, created_at=created),
               d: Story(d, created_at=created), e: Story(e, share_code=code, created_at=created)}
    # when their payments arrive at once
    envelopes = send(*(story.paid() for story in stories.values()))
    # then they shared transactions (their dedupe markers were written together)
    markers = list(mongo["quanzi_commission"]["processed_events"].find(
        {"_id": {"$in": [f"commission.order_paid:{envelope['id']}" for envelope in envelopes]}}))
    assert len(markers) == 5
    assert len({marker["at"] for marker in markers}) < 5
    # and each order was attributed as alone: a's newest click, b's click before its order, nobody for c and d,
    # e's share code
    attribution = {buyer: mongo["quanzi_commission"]["orders"].find_one({"_id": story.order_id})["attribution"]
                   for buyer, story in stories.items()}
    assert {buyer: (a_["via"], a_["level1_id"]) for buyer, a_ in attribution.items()} == {
        a: ("binding", newest), b: ("binding", before_late), c: ("none", None), d: ("none", None),
        e: ("share_code", sharer_of_e)}
    for sharer, earned in ((newest, 1000), (before_late, 1000), (sharer_of_e, 1000)):
        books.wait_summary(sharer, pending_fen=earned)
    for sharer in (older, after_late, stale):
        assert books.summary(sharer) == ZERO


def test_one_sharer_earning_on_orders_paid_together_is_credited_once_for_each(send, books, mongo):
    # given six buyers who all came through one sharer's share code
    sharer, code = uid("usr"), uid("sc")
    send(ev.share_created(code, sharer))
    stories = [Story(uid("usr"), share_code=code) for _ in range(6)]
    # when their payments arrive at once (applied in shared transactions, their writes sent together at the end)
    envelopes = send(*(story.paid() for story in stories))
    markers = list(mongo["quanzi_commission"]["processed_events"].find(
        {"_id": {"$in": [f"commission.order_paid:{envelope['id']}" for envelope in envelopes]}}))
    assert len({marker["at"] for marker in markers}) < 6
    # then the sharer's one balance was credited for each order, in order (no increment lost to another of the
    # batch), with one ledger entry and one commission per order
    books.wait_summary(sharer, pending_fen=6 * 1000)
    assert books.kinds(sharer) == [("accrual", 1, 1000)] * 6
    commissions = mongo["quanzi_commission"]["commissions"]
    assert sorted(c["order_id"] for c in commissions.find({"beneficiary_id": sharer})) == sorted(
        story.order_id for story in stories)
