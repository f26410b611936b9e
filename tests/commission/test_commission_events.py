"""The commission lifecycle driven by the events its producers publish (real broker, real mongod):
attribution, pending → frozen → settled, refunds, cancellations, redelivery and out-of-order arrival."""
import random
import time
from datetime import timedelta

from tests.commission import bus as ev
from tests.commission.bus import Story, now, uid
from tests.commission.conftest import wait_consumed
from tests.helpers import eventually

ZERO = {"pending_fen": 0, "frozen_fen": 0, "withdrawable_fen": 0, "withdrawing_fen": 0, "withdrawn_fen": 0}


def shared(send, sharer_id=None):
    """A sharer with a share code the commission service knows."""
    sharer_id = sharer_id or uid("usr")
    code = uid("sc")
    send(ev.share_created(code, sharer_id))
    return sharer_id, code


def test_an_order_bought_through_a_share_goes_pending_frozen_then_withdrawable(send, books, kombu_listener):
    listener = kombu_listener("commission.events", ["commission.*"])
    sharer, code = shared(send)
    story = Story(uid("usr"), share_code=code, lines=[ev.line(6000, 1000), ev.line(3999, 500)])
    # when the order is paid: 600 + floor(199.95) = 799 fen pending for the sharer
    send(story.paid())
    books.wait_summary(sharer, **{**ZERO, "pending_fen": 799})
    accrued = listener.wait_for(lambda b: b["type"] == "commission.accrued" and b["subject"] == story.order_id)
    assert accrued["data"] == {"order_id": story.order_id, "beneficiary_id": sharer, "level": 1, "amount_fen": 799}
    # when it completes: frozen until the after-sales window (2 s here) and its margin pass
    send(story.completed(after_sales_in=2))
    assert books.summary(sharer) == {**ZERO, "frozen_fen": 799}
    books.wait_summary(sharer, timeout=15, **{**ZERO, "withdrawable_fen": 799})
    assert books.kinds(sharer) == [("accrual", 1, 799), ("freeze", 1, 799), ("settle", 1, 799)]
    assert {e["status"] for e in books.ledger(sharer)} == {"settled"}
    settled = listener.wait_for(lambda b: b["type"] == "commission.settled" and b["subject"] == story.order_id)
    assert set(settled["data"]) == {"order_id", "beneficiary_id", "level", "amount_fen"}  # ids and fen only


def test_without_a_share_code_the_buyers_last_click_within_the_window_earns(send, books):
    first, second, stale, buyer = uid("usr"), uid("usr"), uid("usr"), uid("usr")
    created = now()
    send(ev.share_clicked(uid("sc"), stale, buyer, clicked_at=created - timedelta(seconds=31)),  # window: 30 s
         ev.share_clicked(uid("sc"), first, buyer, clicked_at=created - timedelta(seconds=20)),
         ev.share_clicked(uid("sc"), second, buyer, clicked_at=created - timedelta(seconds=10)),
         ev.share_clicked(uid("sc"), stale, buyer, clicked_at=created + timedelta(seconds=5)))  # after the order
    send(Story(buyer, created_at=created).paid())
    books.wait_summary(second, pending_fen=1000)
    assert books.summary(first) == ZERO and books.summary(stale) == ZERO


def test_an_expired_binding_attributes_nothing(send, books, mongo):
    sharer, buyer = uid("usr"), uid("usr")
    created = now()
    send(ev.share_clicked(uid("sc"), sharer, buyer, clicked_at=created - timedelta(seconds=31)))
    story = Story(buyer, created_at=created)
    send(story.paid())
    order = mongo["quanzi_commission"]["orders"].find_one({"_id": story.order_id})
    assert order["attribution"]["via"] == "none"
    assert books.summary(sharer) == ZERO


def test_the_share_code_beats_the_binding(send, books):
    bound_to, buyer = uid("usr"), uid("usr")
    sharer, code = shared(send)
    send(ev.share_clicked(uid("sc"), bound_to, buyer))
    send(Story(buyer, share_code=code).paid())
    books.wait_summary(sharer, pending_fen=1000)
    assert books.summary(bound_to) == ZERO


def test_buying_through_ones_own_share_or_own_link_earns_nothing(send, books, mongo):
    buyer = uid("usr")
    _, own_code = shared(send, sharer_id=buyer)
    send(ev.share_clicked(own_code, buyer, buyer))  # opening one's own link binds nobody
    story = Story(buyer, share_code=own_code)
    send(story.paid())
    assert mongo["quanzi_commission"]["orders"].find_one({"_id": story.order_id})["attribution"]["via"] == "none"
    assert books.summary(buyer) == ZERO and books.ledger(buyer) == []


def test_an_unknown_share_code_falls_back_to_the_binding(send, books):
    bound_to, buyer = uid("usr"), uid("usr")
    send(ev.share_clicked(uid("sc"), bound_to, buyer))
    send(Story(buyer, share_code="nosuchcode").paid())
    books.wait_summary(bound_to, pending_fen=1000)


def test_a_30_percent_refund_before_settlement_reverses_30_percent_and_the_rest_settles(send, books):
    sharer, code = shared(send)
    story = Story(uid("usr"), share_code=code)
    send(story.paid())
    send(story.completed(after_sales_in=4))
    send(story.refund_requested("rf_a", 3000))
    send(story.refunded("rf_a", 3000, 3000))
    assert books.summary(sharer) == {**ZERO, "frozen_fen": 700}
    books.wait_summary(sharer, timeout=15, **{**ZERO, "withdrawable_fen": 700})
    assert books.kinds(sharer) == [("accrual", 1, 1000), ("reversal", 1, 300), ("freeze", 1, 1000),
                                   ("settle", 1, 700)]


def test_an_open_refund_blocks_settlement_until_it_is_rejected(send, books):
    sharer, code = shared(send)
    story = Story(uid("usr"), share_code=code)
    send(story.paid())
    send(story.completed(after_sales_in=1))
    send(story.refund_requested("rf_b", 5000))
    time.sleep(1 + 2 + 2)  # window + settlement margin + two sweeps
    assert books.summary(sharer) == {**ZERO, "frozen_fen": 1000}, "settled while a refund was open"
    send(story.refund_rejected("rf_b", 5000))
    books.wait_summary(sharer, timeout=10, **{**ZERO, "withdrawable_fen": 1000})


def test_a_cancelled_paid_order_reverses_its_pending_commission(send, books, kombu_listener):
    listener = kombu_listener("commission.events", ["commission.reversed"])
    sharer, code = shared(send)
    story = Story(uid("usr"), share_code=code)
    send(story.paid())
    send(story.cancelled(reason="buyer", refunded_fen=10_000))
    assert books.summary(sharer) == ZERO
    reversed_ = listener.wait_for(lambda b: b["subject"] == story.order_id)
    assert reversed_["data"] == {"order_id": story.order_id, "beneficiary_id": sharer, "level": 1,
                                 "amount_fen": 1000, "reason": "cancelled"}


def test_a_failed_group_buy_reverses_every_members_commission(send, books):
    sharer, code = shared(send)
    group_id = uid("grp")
    members = [Story(uid("usr"), share_code=code, group_id=group_id) for _ in range(2)]
    send(*(member.paid() for member in members))
    books.wait_summary(sharer, pending_fen=2000)
    send(ev.groupbuy_failed(group_id, [m.order_id for m in members], [m.facts["buyer_id"] for m in members]))
    assert books.summary(sharer) == ZERO
    assert sorted(k for k, _, _ in books.kinds(sharer)) == ["accrual", "accrual", "reversal", "reversal"]


def test_a_refund_arriving_after_settlement_cannot_take_back_settled_money(send, books):
    sharer, code = shared(send)
    story = Story(uid("usr"), share_code=code)
    send(story.paid(), story.completed(after_sales_in=-10))
    books.wait_summary(sharer, timeout=10, withdrawable_fen=1000)
    send(story.refunded("rf_late", 10_000, 10_000, full=True))
    assert books.summary(sharer) == {**ZERO, "withdrawable_fen": 1000}


def test_compliance_sign_ups_shares_and_clicks_alone_never_pay_anyone(send, books, mongo):
    """C2, C8: a storm of sign-ups, shares and clicks moves no money; C4: no order, no commission."""
    leader = uid("usr")
    recruits = [uid("usr") for _ in range(20)]
    events = [ev.user_joined(user, inviter_id=leader) for user in recruits]
    for user in [leader, *recruits]:
        code = uid("sc")
        events += [ev.share_created(code, user), ev.share_clicked(code, user, uid("usr")),
                   ev.share_clicked(code, user, None)]
    send(*events)
    ledger = mongo["quanzi_commission"]["ledger"]
    for user in [leader, *recruits]:
        assert books.summary(user) == ZERO
        assert ledger.count_documents({"beneficiary_id": user}) == 0


def test_every_event_three_times_and_out_of_order_ends_like_a_clean_run(send, bus, mongo, books, rpc):
    """Two identical worlds: one gets each event once, in order, each applied before the next; the other
    gets every event three times, all at once, the order lifecycle shuffled."""
    def world():
        sharer, buyer = uid("usr"), uid("usr")
        code = uid("sc")
        social = [ev.share_created(code, sharer), ev.share_clicked(code, sharer, buyer)]
        orders = [Story(buyer, share_code=code), Story(buyer), Story(buyer, share_code=code)]
        a, b, c = orders
        lifecycle = [a.paid(), a.refund_requested("rf1", 3000), a.refunded("rf1", 3000, 3000),
                     a.refund_requested("rf2", 1000), a.refund_rejected("rf2", 1000), a.completed(after_sales_in=3),
                     b.paid(), b.completed(after_sales_in=3),
                     c.paid(), c.refunded("rf3", 2000, 2000), c.refunded("rf4", 3000, 5000), c.cancelled("buyer")]
        return sharer, social, lifecycle, orders

    clean_sharer, clean_social, clean_events, clean_orders = world()
    for event in clean_social + clean_events:
        send(event)

    messy_sharer, messy_social, messy_events, messy_orders = world()
    send(*messy_social)  # who shared and clicked is known before the orders (a human clicks, then buys)
    envelopes = [bus.envelope(t, d, subject=d["order_id"]) for t, d in messy_events]
    deliveries = [e for e in envelopes for _ in range(3)]
    random.Random(5).shuffle(deliveries)
    for envelope in deliveries:
        bus.deliver(envelope)
    wait_consumed(mongo, envelopes)

    def state(sharer, orders):
        commissions = mongo["quanzi_commission"]["commissions"]
        per_order = [commissions.find_one({"order_id": o.order_id}, {"_id": 0, "status": 1, "accrued_fen": 1,
                                                                        "reversed_fen": 1, "level": 1})
                     for o in orders]
        totals = {}
        for kind, _, fen in books.kinds(sharer):
            totals[kind] = totals.get(kind, 0) + fen
        return books.summary(sharer), per_order, totals

    def settled_alike():
        clean, messy = state(clean_sharer, clean_orders), state(messy_sharer, messy_orders)
        assert clean[0]["withdrawable_fen"] == 1700 and clean[0]["pending_fen"] == 0, clean
        assert messy[0] == clean[0] and messy[1] == clean[1]
        for kind in ("accrual", "reversal", "settle"):
            assert messy[2][kind] == clean[2][kind], kind
    eventually(settled_alike, timeout=20, interval=0.2)
    # a keeps 700 of 1000 (30 % refunded, the second refund rejected); b (no code) earns its full 1000 through
    # the buyer's click; c's 1000 is reversed in full by the cancellation that follows its partial refunds
    report = rpc.commission.reconcile()
    assert report["ok"], report
