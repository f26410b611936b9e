"""Commission rules without I/O: attribution, the caps, amounts, and the state machine under any event order."""
import itertools
from datetime import datetime, timedelta, timezone

import pytest

from commission import domain

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
MARGIN = timedelta(seconds=2)


def line(goods_fen, level1_bp=1000, level2_bp=500, product_id="prd_1"):
    return {"sku_id": "sku_1", "product_id": product_id, "qty": 1, "unit_price_fen": goods_fen,
            "goods_fen": goods_fen, "level1_bp": level1_bp, "level2_bp": level2_bp}


def facts(lines=None, **extra):
    lines = lines or [line(10_000)]
    goods = sum(item["goods_fen"] for item in lines)
    return {"order_id": "ord_1", "buyer_id": "usr_buyer", "merchant_id": "mch_1", "status": "paid", "lines": lines,
            "goods_fen": goods, "shipping_fen": 800, "discount_fen": 0, "total_fen": goods + 800,
            "share_code": "code1", "group_id": None, "created_at": (NOW - timedelta(hours=1)).isoformat(), **extra}


PAID = ("order.paid", facts(trade_no="t1", paid_at=NOW.isoformat()))
COMPLETED = ("order.completed", facts(completed_at=NOW.isoformat(),
                                      after_sales_until=(NOW + timedelta(days=7)).isoformat()))


def refund_event(kind, refund_id, amount, total=None, full=False):
    data = facts(refund_id=refund_id, amount_fen=amount, reason="broken")
    if kind == "order.refunded":
        data.update(full=full, refunded_total_fen=total if total is not None else amount)
    return kind, data


def run(events, level1="usr_sharer", inviter=None, max_levels=1, settle_at=None):
    """Feed events through domain.advance as the store does; return final commissions and balances."""
    order, commissions, balances = {"_id": "ord_1"}, {}, {}

    def attribute(o):
        return {"level1_id": level1}, domain.beneficiaries(o, level1, inviter, max_levels, 3000)

    def post(commission, move):
        per_user = balances.setdefault(commission["beneficiary_id"], {b: 0 for b in domain.BUCKETS})
        if move["from"]:
            per_user[move["from"]] -= move["amount_fen"]
            assert per_user[move["from"]] >= 0, "a move took more than its bucket held"
        if move["to"]:
            per_user[move["to"]] += move["amount_fen"]

    for event_type, data in events:
        order, new, changed, moves = domain.advance(order, list(commissions.values()), event_type, data, attribute, NOW)
        for commission in new:
            commissions[commission["_id"]] = commission
        for commission_id, fields in changed.items():
            commissions[commission_id] = {**commissions[commission_id], **fields}
        for commission, move in moves:
            post(commission, move)
    if settle_at is not None:
        for commission in commissions.values():
            move = domain.settle_step(commission, order, settle_at, MARGIN)
            if move:
                post(commission, move)
                commission["status"] = domain.SETTLED
    final = {cid: (c["status"], c["accrued_fen"], c["reversed_fen"]) for cid, c in commissions.items()}
    return final, balances


# --- attribution -------------------------------------------------------------------------------------------

def test_the_share_code_wins_over_the_binding():
    assert domain.level1_earner("usr_b", "usr_s", "usr_x") == ("usr_s", "share_code")


def test_the_buyers_own_share_code_falls_back_to_their_binding():
    assert domain.level1_earner("usr_b", "usr_b", "usr_x") == ("usr_x", "binding")


def test_without_a_valid_code_or_binding_nobody_earns_and_never_the_buyer_themselves():
    assert domain.level1_earner("usr_b", None, None) == (None, "none")
    assert domain.level1_earner("usr_b", "usr_b", "usr_b") == (None, "none")


def test_a_binding_is_active_for_the_attribution_window_before_the_order():
    since, until = domain.binding_window(NOW, 7 * 86400)
    assert (since, until) == (NOW - timedelta(days=7), NOW)


# --- amounts and caps ----------------------------------------------------------------------------------

def test_each_line_is_floored_to_the_fen_then_summed():
    order = {"buyer_id": "usr_b", "lines": [line(999, 1000, 500), line(1001, 1000, 500)]}
    # 99.9 -> 99 and 100.1 -> 100 at level 1; 49.95 -> 49 and 50.05 -> 50 at level 2
    assert domain.beneficiaries(order, "usr_s", "usr_i", 2, 3000) == [(1, "usr_s", 199), (2, "usr_i", 99)]


def test_one_level_by_default_pays_nobody_at_level_2():
    order = {"buyer_id": "usr_b", "lines": [line(10_000)]}
    assert domain.beneficiaries(order, "usr_s", "usr_i", 1, 3000) == [(1, "usr_s", 1000)]


def test_level_2_never_pays_the_buyer():
    order = {"buyer_id": "usr_b", "lines": [line(10_000)]}
    assert domain.beneficiaries(order, "usr_s", "usr_b", 2, 3000) == [(1, "usr_s", 1000)]


@pytest.mark.parametrize("levels", [0, 3, 5])
def test_a_depth_other_than_1_or_2_is_refused(levels):
    with pytest.raises(ValueError):
        domain.beneficiaries({"buyer_id": "usr_b", "lines": [line(100)]}, "usr_s", None, levels, 3000)


def test_rates_above_the_cap_are_cut_to_the_cap():
    assert domain.capped_rates(2500, 1000, 3000) == (2500, 500)
    assert domain.capped_rates(4000, 1000, 3000) == (3000, 0)
    order = {"buyer_id": "usr_b", "lines": [line(10_000, 2800, 800)]}
    paid = domain.beneficiaries(order, "usr_s", "usr_i", 2, 3000)
    assert sum(fen for _, _, fen in paid) == 3000


def test_zero_rates_create_no_commission():
    order = {"buyer_id": "usr_b", "lines": [line(10_000, 0, 0)]}
    assert domain.beneficiaries(order, "usr_s", "usr_i", 2, 3000) == []


def test_commission_comes_from_the_one_orders_goods_only():
    """C4: the amount depends on this order's lines and nothing else: no team volume input exists."""
    small = {"buyer_id": "usr_b", "lines": [line(100)]}
    big = {"buyer_id": "usr_b", "lines": [line(100_000)]}
    assert domain.beneficiaries(small, "usr_s", None, 1, 3000) == [(1, "usr_s", 10)]
    assert domain.beneficiaries(big, "usr_s", None, 1, 3000) == [(1, "usr_s", 10_000)]


# --- lifecycle -------------------------------------------------------------------------------------------

def test_paid_then_completed_then_window_passed_settles_everything():
    final, balances = run([PAID, COMPLETED], settle_at=NOW + timedelta(days=7) + MARGIN)
    assert final == {"ord_1:1": ("settled", 1000, 0)}
    assert balances["usr_sharer"]["withdrawable"] == 1000
    assert balances["usr_sharer"]["pending"] == balances["usr_sharer"]["frozen"] == 0


def test_nothing_settles_before_the_window_and_its_margin_pass():
    final, balances = run([PAID, COMPLETED], settle_at=NOW + timedelta(days=7) + MARGIN - timedelta(seconds=1))
    assert final == {"ord_1:1": ("frozen", 1000, 0)}
    assert balances["usr_sharer"]["frozen"] == 1000


def test_a_30_percent_refund_reverses_30_percent():
    final, balances = run([PAID, refund_event("order.refund_requested", "rf1", 3000),
                           refund_event("order.refunded", "rf1", 3000), COMPLETED],
                          settle_at=NOW + timedelta(days=8))
    assert final == {"ord_1:1": ("settled", 1000, 300)}
    assert balances["usr_sharer"]["withdrawable"] == 700


def test_partial_reversal_leaves_the_sharer_the_floor_of_what_was_kept():
    # accrued 1000 on 9999 goods would be 999; refund 1 fen: keeps floor(999 * 9998 / 9999) = 998
    final, _ = run([("order.paid", facts([line(9999)], trade_no="t", paid_at=NOW.isoformat())),
                    ("order.refunded", facts([line(9999)], refund_id="rf", amount_fen=1, reason=None, full=False,
                                             refunded_total_fen=1))])
    assert final == {"ord_1:1": ("pending", 999, 1)}


def test_an_open_refund_blocks_settlement_and_a_rejection_releases_it():
    late = NOW + timedelta(days=8)
    blocked, _ = run([PAID, COMPLETED, refund_event("order.refund_requested", "rf1", 3000)], settle_at=late)
    assert blocked == {"ord_1:1": ("frozen", 1000, 0)}
    released, balances = run([PAID, COMPLETED, refund_event("order.refund_requested", "rf1", 3000),
                              refund_event("order.refund_rejected", "rf1", 3000)], settle_at=late)
    assert released == {"ord_1:1": ("settled", 1000, 0)}
    assert balances["usr_sharer"]["withdrawable"] == 1000


@pytest.mark.parametrize("ending", [
    ("order.cancelled", facts(reason="group_failed", refunded_fen=10_800)),
    ("groupbuy.failed", {"group_id": "grp_1", "product_id": "prd_1", "sku_id": "sku_1", "leader_id": "usr_b",
                         "size": 2, "order_ids": ["ord_1"], "member_ids": ["usr_b"], "failed_at": NOW.isoformat()}),
    refund_event("order.refunded", "rf1", 10_800, full=True),
])
def test_cancellation_failed_group_or_full_refund_reverses_everything(ending):
    final, balances = run([PAID, ending], settle_at=NOW + timedelta(days=30))
    assert final == {"ord_1:1": ("reversed", 1000, 1000)}
    assert balances["usr_sharer"] == {b: 0 for b in domain.BUCKETS}


def test_a_settled_commission_is_final():
    commission = {"status": "settled", "accrued_fen": 1000, "reversed_fen": 0}
    order = domain.absorb({"_id": "ord_1"}, *refund_event("order.refunded", "rf9", 10_000, full=True))
    steps, fields = domain.plan(commission, order)
    assert steps == [] and fields["status"] == "settled"


def test_an_unpaid_order_accrues_nothing_whatever_else_happens():
    final, balances = run([COMPLETED, refund_event("order.refunded", "rf1", 100)])
    assert final == {} and balances == {}


def refunded(cause, amount, total, full, refund_id="rf1"):
    kind, data = refund_event("order.refunded", refund_id, amount, total=total, full=full)
    return kind, dict(data, refunded_fen=amount, cause=cause)


def test_every_cause_of_a_refund_reverses_in_proportion():
    # a failed group's paid member: everything, and the reversal says why
    final, _ = run([PAID, refunded("group_failed", 10_800, 10_800, True)])
    assert final == {"ord_1:1": ("reversed", 1000, 1000)}
    order = domain.absorb({"_id": "ord_1"}, *refunded("group_failed", 10_800, 10_800, True))
    steps, _ = domain.plan({"status": "pending", "accrued_fen": 1000, "reversed_fen": 0}, order)
    assert [(s["kind"], s["amount_fen"], s["extra"]["reason"]) for s in steps] == [("reversal", 1000, "group_failed")]
    # a dispute decided for 30 % of the goods, after the merchant's rejection: 30 % back
    final, _ = run([PAID, refund_event("order.refund_requested", "rf1", 5000),
                    refund_event("order.refund_rejected", "rf1", 5000),
                    refund_event("order.refund_requested", "dsp1", 5000),
                    refunded("dispute", 3000, 3000, False, refund_id="dsp1")])
    assert final == {"ord_1:1": ("pending", 1000, 300)}
    # a payment the order could not take (a second payment of a paid order): its refund leaves the order's refunded
    # total as it was, so the commission on the real payment stays
    final, _ = run([PAID, refunded("late_payment", 10_800, 0, False, refund_id="rf_late")])
    assert final == {"ord_1:1": ("pending", 1000, 0)}
    # a late payment of a cancelled order: never paid for the shop, nothing accrued, nothing to reverse
    final, balances = run([("order.cancelled", facts(reason="buyer", refunded_fen=0)),
                           refunded("late_payment", 10_800, 10_800, True)])
    assert final == {} and balances == {}


def test_a_dispute_under_way_blocks_settlement_like_any_open_refund():
    late = NOW + timedelta(days=8)
    disputed = [PAID, COMPLETED, refund_event("order.refund_requested", "rf1", 3000),
                refund_event("order.refund_rejected", "rf1", 3000), refund_event("order.refund_requested", "dsp1", 3000)]
    blocked, _ = run(disputed, settle_at=late)
    assert blocked == {"ord_1:1": ("frozen", 1000, 0)}
    decided, _ = run(disputed + [refund_event("order.refund_rejected", "dsp1", 3000)], settle_at=late)
    assert decided == {"ord_1:1": ("settled", 1000, 0)}


# --- convergence: any order, any repetition ------------------------------------------------------------

STORY = [PAID, refund_event("order.refund_requested", "rf1", 3000), refund_event("order.refunded", "rf1", 3000),
         refund_event("order.refund_requested", "rf2", 1000), refund_event("order.refund_rejected", "rf2", 1000),
         COMPLETED]


def test_every_arrival_order_of_a_story_ends_in_the_same_state():
    expected = run(STORY, inviter="usr_inviter", max_levels=2, settle_at=NOW + timedelta(days=8))
    assert expected[0] == {"ord_1:1": ("settled", 1000, 300), "ord_1:2": ("settled", 500, 150)}
    for permutation in itertools.permutations(STORY):
        assert run(list(permutation), inviter="usr_inviter", max_levels=2,
                   settle_at=NOW + timedelta(days=8)) == expected, permutation


def test_two_partial_refunds_arriving_swapped_reverse_the_same_total():
    first = refund_event("order.refunded", "rf1", 2000, total=2000)
    second = refund_event("order.refunded", "rf2", 3000, total=5000)
    assert run([PAID, first, second]) == run([PAID, second, first])
    assert run([PAID, second, first])[0] == {"ord_1:1": ("pending", 1000, 500)}


def test_each_event_three_times_changes_nothing():
    assert run([e for e in STORY for _ in range(3)], settle_at=NOW + timedelta(days=8)) == \
        run(STORY, settle_at=NOW + timedelta(days=8))


# --- reconciliation ------------------------------------------------------------------------------------

def test_reconciliation_finds_a_balance_that_drifted_from_the_ledger():
    sums = [("usr_a", "pending", 1000), ("usr_a", None, -1000), ("usr_a", "pending", -1000),
            ("usr_a", "frozen", 1000)]
    ledger = domain.ledger_balances(sums)
    assert domain.balance_differences(ledger, {"usr_a": {"frozen_fen": 1000}}) == []
    assert domain.balance_differences(ledger, {"usr_a": {"frozen_fen": 900, "pending_fen": 100}}) == [
        {"user_id": "usr_a", "bucket": "pending", "ledger_fen": 0, "balance_fen": 100},
        {"user_id": "usr_a", "bucket": "frozen", "ledger_fen": 1000, "balance_fen": 900}]


def test_reconciliation_finds_a_commission_that_disagrees_with_its_entries():
    commissions = [{"_id": "ord_1:1", "accrued_fen": 1000, "reversed_fen": 300, "status": "settled"}]
    assert domain.commission_differences(commissions, {"ord_1:1": {"accrual": 1000, "reversal": 300,
                                                                   "freeze": 700, "settle": 700}}) == []
    assert domain.commission_differences(commissions, {"ord_1:1": {"accrual": 1000, "reversal": 300},
                                                       "ord_2:1": {"accrual": 5}}) == [
        {"commission_id": "ord_1:1", "field": "settled_fen", "stored": 700, "ledger": 0},
        {"commission_id": "ord_2:1", "field": "exists", "stored": 0, "ledger": 5}]


def test_preview_uses_the_real_orders_rate_cap_and_rounding():
    shown = domain.preview({"sku_a": 9999, "group": 7900}, level1_bp=1234, level2_bp=500, max_total_bp=3000)
    assert shown == {"level1_bp": 1234, "per_unit_fen": {"sku_a": 1233, "group": 974}}
    # rates above the cap are cut as on a real order, and level 2 is never previewed as the viewer's own
    capped = domain.preview({"sku_a": 1000}, level1_bp=3500, level2_bp=500, max_total_bp=3000)
    assert capped == {"level1_bp": 3000, "per_unit_fen": {"sku_a": 300}}


def test_difference_fen_adds_up_every_disagreement_in_absolute_value():
    balances = [{"user_id": "u", "bucket": "pending", "ledger_fen": 100, "balance_fen": 70},
                {"user_id": "u", "bucket": "frozen", "ledger_fen": 0, "balance_fen": -5}]
    commissions = [{"commission_id": "o:1", "field": "accrued_fen", "stored": 10, "ledger": 12}]
    assert domain.difference_fen(balances, commissions) == 30 + 5 + 2
    assert domain.difference_fen([], []) == 0


# --- a batch's reads (BatchReads) ---------------------------------------------------------------------

def click(viewer, sharer, seconds):
    return {"viewer_id": viewer, "sharer_id": sharer, "clicked_at": NOW + timedelta(seconds=seconds)}


def test_a_batchs_clicks_answer_each_buyer_as_its_own_query_would():
    # given the clicks read for a batch (newest first) over the union of its windows (-40 s, 0]
    clicks = [click("usr_a", "usr_a", -1),  # one's own link: never a binding
              click("usr_b", "usr_s3", -5), click("usr_a", "usr_s2", -10), click("usr_b", "usr_s4", -25),
              click("usr_a", "usr_s1", -35)]
    reads = domain.BatchReads({}, clicks, ["usr_a", "usr_b", "usr_c"], NOW - timedelta(seconds=40), NOW)
    # then each buyer's window picks its own newest click on someone else's share
    assert reads.active_binding("usr_a", NOW - timedelta(seconds=30), NOW)["sharer_id"] == "usr_s2"
    assert reads.active_binding("usr_b", NOW - timedelta(seconds=40), NOW - timedelta(seconds=10))["sharer_id"] == \
        "usr_s4"  # an order created 10 s earlier: the click at -5 s came after it
    assert reads.active_binding("usr_a", NOW - timedelta(seconds=9), NOW) is None
    assert reads.active_binding("usr_c", NOW - timedelta(seconds=30), NOW) is None
    # and it answers only for the buyers and windows it read
    assert reads.covers("usr_a", NOW - timedelta(seconds=30), NOW)
    assert not reads.covers("usr_d", NOW - timedelta(seconds=30), NOW)
    assert not reads.covers("usr_a", NOW - timedelta(seconds=41), NOW)
    assert not reads.covers("usr_a", NOW - timedelta(seconds=30), NOW + timedelta(seconds=1))
    assert not domain.BatchReads({}, None, ["usr_a"], NOW - timedelta(seconds=40), NOW).covers(
        "usr_a", NOW - timedelta(seconds=30), NOW)  # too many clicks to read at once

