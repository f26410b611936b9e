"""Order rules without any I/O: the status machine, totals, refunds, group seats, signatures, event data."""
from datetime import datetime, timedelta, timezone

import pytest

from contracts import make_envelope, payment
from kit.config import load_settings
from kit.errors import Conflict, InvalidInput, RuleRefused
from orders import domain

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
SETTINGS = load_settings({"PAYMENT_TIMEOUT": "10", "AUTO_CONFIRM_AFTER": "15"})
LEGAL = {  # every (status, action) docs/api.md allows; everything else must be refused
    ("creating", "create"), ("pending_payment", "pay"), ("pending_payment", "pay_group_seat"),
    ("awaiting_group", "group_formed"), ("pending_payment", "cancel"), ("pending_payment", "payment_timeout"),
    ("pending_payment", "group_failed"), ("awaiting_group", "group_refund"), ("cancelled", "late_payment_refund"),
    ("paid", "ship"),
    ("shipped", "confirm_receipt"), ("shipped", "auto_confirm"), ("paid", "request_refund"),
    ("shipped", "request_refund"), ("completed", "request_refund"), ("refund_requested", "reject_refund"),
    ("refund_requested", "refund_partly"), ("refund_requested", "refund_fully"),
}
STATUSES = ["creating", "pending_payment", "paid", "awaiting_group", "shipped", "completed", "cancelled",
            "refund_requested", "refunded"]


def reserved_line(sku="sku_a", product="prd_a", merchant="mch_a", qty=2, price=1500, l1=1000, l2=500):
    return {"sku_id": sku, "product_id": product, "merchant_id": merchant, "title": "tea", "qty": qty,
            "unit_price_fen": price, "level1_bp": l1, "level2_bp": l2, "group_buy": None}


def an_order(status="paid", **changes):
    merchant_id, lines = domain.price_lines([reserved_line()])
    order = {"_id": "ord_1", "buyer_id": "usr_b", "merchant_id": merchant_id, "status": status, "lines": lines,
             **domain.totals(lines, group=False), "share_code": "shr_abcd", "group_id": None, "refunded_fen": 0,
             "trade_no": "sbx1", "created_at": NOW, "refund_from": None,
             "address": {"recipient": "Lin", "phone": "13912345678", "region": "杭州", "detail": "1 Road"}}
    order.update(changes)
    return order


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", sorted(domain.TRANSITIONS))
def test_every_transition_outside_the_outline_is_refused_with_409(status, action):
    order = an_order(status, refund_from="completed")
    if (status, action) in LEGAL:
        assert domain.transition(order, action) in STATUSES
    else:
        with pytest.raises(Conflict):
            domain.transition(order, action)


def test_a_rejected_or_partial_refund_goes_back_where_it_started():
    order = an_order("refund_requested", refund_from="shipped")
    assert domain.transition(order, "reject_refund") == "shipped"
    assert domain.transition(order, "refund_partly") == "shipped"
    assert domain.transition(order, "refund_fully") == "refunded"


def test_shipping_a_group_order_before_it_forms_says_why():
    with pytest.raises(Conflict) as err:
        domain.transition(an_order("awaiting_group"), "ship")
    assert "group" in err.value.message


def test_totals_are_goods_plus_shipping_minus_discounts_with_free_shipping_from_99_yuan():
    _, cheap = domain.price_lines([reserved_line(qty=2, price=1500)])
    assert domain.totals(cheap, group=False) == {"goods_fen": 3000, "shipping_fen": 800, "discount_fen": 0,
                                                  "total_fen": 3800}
    _, dear = domain.price_lines([reserved_line(qty=1, price=9900)])
    assert domain.totals(dear, group=False)["total_fen"] == 9900
    assert domain.totals(cheap, group=True)["shipping_fen"] == 0  # group buys ship free
    assert domain.totals(cheap, group=False, discount_fen=10_000)["total_fen"] == 0  # never negative


def test_lines_capture_price_and_commission_rates_and_one_order_is_one_merchant():
    merchant_id, lines = domain.price_lines([reserved_line(qty=3, price=1234, l1=700, l2=300)])
    assert merchant_id == "mch_a"
    assert lines[0]["goods_fen"] == 3702 and (lines[0]["level1_bp"], lines[0]["level2_bp"]) == (700, 300)
    with pytest.raises(InvalidInput) as err:
        domain.price_lines([reserved_line(), reserved_line(sku="sku_b", merchant="mch_b")])
    assert "items" in err.value.fields


def test_the_same_sku_twice_in_a_cart_is_one_line():
    assert domain.merge_items([{"sku_id": "a", "qty": 1}, {"sku_id": "b", "qty": 2}, {"sku_id": "a", "qty": 3}]) \
        == [{"sku_id": "a", "qty": 4}, {"sku_id": "b", "qty": 2}]


def test_refund_before_shipping_is_the_whole_order_and_automatic():
    order = an_order("paid")
    assert domain.refund_terms(order, None, NOW) == (order["total_fen"], True)
    with pytest.raises(InvalidInput):
        domain.refund_terms(order, 100, NOW)


def test_refund_after_completion_is_up_to_the_goods_within_the_window_then_refused():
    order = an_order("completed", after_sales_until=NOW + timedelta(seconds=8), refunded_fen=1000)
    assert domain.refund_terms(order, None, NOW) == (2000, False)  # 3000 goods − 1000 already back; no shipping
    assert domain.refund_terms(order, 500, NOW) == (500, False)
    with pytest.raises(InvalidInput):
        domain.refund_terms(order, 2001, NOW)
    with pytest.raises(RuleRefused):
        domain.refund_terms(order, None, NOW + timedelta(seconds=9))
    with pytest.raises(Conflict):
        domain.refund_terms(an_order("cancelled"), None, NOW)


def test_a_refund_is_full_once_everything_refundable_went_back():
    after = an_order("refund_requested", refund_from="completed", refunded_fen=1000)
    assert domain.refund_outcome(after, 1500) == ("refund_partly", 2500)
    assert domain.refund_outcome(after, 2000) == ("refund_fully", 3000)
    before = an_order("refund_requested", refund_from="paid")
    assert domain.refund_outcome(before, before["total_fen"]) == ("refund_fully", 3800)


def a_refund(status="requested", kind="after_sales", **changes):
    return {"_id": "rfd_1", "order_id": "ord_1", "kind": kind, "status": status, "amount_fen": 1200,
            "return_goods": False, **changes}


REFUND_LEGAL = {  # (kind, status, action) -> the status it leads to; everything else is 409
    ("after_sales", "requested", "approve"): "processing",
    ("after_sales", "requested", "auto_approve"): "processing",
    ("after_sales", "requested", "reject"): "rejected",
    ("after_sales", "awaiting_return", "ship_back"): "returning",
    ("after_sales", "returning", "confirm_return"): "processing",
    ("after_sales", "returning", "reject"): "rejected",
    ("after_sales", "returning", "auto_confirm_return"): "processing",
    ("after_sales", "awaiting_return", "close_unreturned"): "closed",
    ("after_sales", "rejected", "escalate"): "escalated",
    ("dispute", "disputed", "decide_refund"): "processing",
    ("dispute", "disputed", "decide_reject"): "rejected",
}


@pytest.mark.parametrize("kind", domain.REFUND_KINDS)
@pytest.mark.parametrize("status", domain.REFUND_STATUSES)
@pytest.mark.parametrize("action", sorted(domain.REFUND_TRANSITIONS))
def test_the_refund_machine_allows_exactly_its_transitions(kind, status, action):
    refund = a_refund(status, kind)
    if (kind, status, action) in REFUND_LEGAL:
        assert domain.refund_transition(refund, action) == REFUND_LEGAL[kind, status, action]
    else:
        with pytest.raises(Conflict):
            domain.refund_transition(refund, action)


def test_every_status_that_waits_on_one_side_has_a_window_and_a_timer_and_no_other_does():
    settings = load_settings({"REFUND_RESPONSE_WINDOW": "60", "RETURN_SHIP_WINDOW": "70", "RETURN_RECEIVE_WINDOW": "80"})
    waits = {status: domain.waiting_deadline(status, NOW, settings) for status in domain.REFUND_STATUSES}
    assert {s: (d - NOW).total_seconds() for s, d in waits.items() if d is not None} == {
        "requested": 60, "awaiting_return": 70, "returning": 80}
    # the timer's step is a legal transition from that status, and the statuses it leaves to are not timed
    for status, action in domain.TIMED_OUT.items():
        target = domain.refund_transition(a_refund(status, "after_sales"), action)
        assert waits[status] is not None and target in ("processing", "closed")


def test_the_contracts_refund_statuses_are_the_machines():
    machine = {status for _, allowed, target in domain.REFUND_TRANSITIONS.values() for status in (*allowed, target)}
    assert set(domain.REFUND_STATUSES) == (machine - {None}) | {domain.R_AWAITING_RETURN, domain.R_SUCCEEDED}
    assert set(domain.REFUND_KINDS) == set(domain.REFUND_CAUSES)


def test_approving_a_return_with_goods_waits_for_the_goods_first():
    refund = a_refund(return_goods=True)
    assert domain.refund_transition(refund, "approve") == "awaiting_return"
    assert domain.refund_transition(refund, "auto_approve") == "awaiting_return"
    with pytest.raises(Conflict, match="not sent the goods back"):
        domain.refund_transition(a_refund("awaiting_return", return_goods=True), "confirm_return")


def test_an_unanswered_request_is_due_after_the_response_window():
    settings = load_settings({"REFUND_RESPONSE_WINDOW": "60"})
    assert domain.respond_before(NOW, settings) == NOW + timedelta(seconds=60)
    assert domain.respond_before(NOW, load_settings({})) == NOW + timedelta(days=2)


def test_every_return_of_money_settles_its_order_once():
    # a paid member of a failed group: refunded, never "cancelled"
    member = an_order("awaiting_group", group_id="grp_1")
    assert domain.money_back(member, a_refund("processing", "group_failed", amount_fen=3800)) == ("group_refund", 3800)
    assert domain.transition(member, "group_refund") == "refunded"
    # money after the cancellation: the cancelled order becomes refunded; a second payment of a paid order leaves
    # it alone (that money never counted for it)
    late = a_refund("processing", "late_payment", amount_fen=3800)
    assert domain.money_back(an_order("cancelled"), late) == ("late_payment_refund", 3800)
    assert domain.money_back(an_order("paid"), late) == (None, 0)
    # after-sales and disputes: part keeps the status, the rest makes it refunded
    asked = an_order("refund_requested", refund_from="completed", refunded_fen=1000)
    assert domain.money_back(asked, a_refund("processing", "dispute", amount_fen=500)) == ("refund_partly", 1500)
    assert domain.money_back(asked, a_refund("processing", "after_sales", amount_fen=2000)) == ("refund_fully", 3000)
    assert set(domain.REFUND_CAUSES.values()) == {"buyer_request", "group_failed", "late_payment", "dispute"}


def test_a_dispute_asks_for_what_is_left_and_an_admin_refunds_at_most_that():
    order = an_order("completed", refunded_fen=2500, after_sales_until=NOW + timedelta(seconds=8))
    assert domain.dispute_terms(order, a_refund("rejected", amount_fen=1200), NOW) == 500  # 3000 goods − 2500 back
    assert domain.dispute_terms(an_order("shipped"), a_refund("rejected", amount_fen=1200), NOW) == 1200
    with pytest.raises(Conflict):
        domain.dispute_terms(an_order("refund_requested", refund_from="completed"), a_refund("rejected"), NOW)
    with pytest.raises(Conflict):
        domain.dispute_terms(dict(order, refunded_fen=3000), a_refund("rejected"), NOW)
    # like a refund request, within the after-sales window (commission settles after it, and is final then)
    with pytest.raises(RuleRefused):
        domain.dispute_terms(order, a_refund("rejected"), NOW + timedelta(seconds=9))
    dispute = a_refund("disputed", "dispute", asked_fen=1200)
    assert domain.decided_amount(dispute, None) == 1200
    assert domain.decided_amount(dispute, 700) == 700
    for wrong in (0, 1201):
        with pytest.raises(InvalidInput):
            domain.decided_amount(dispute, wrong)


def test_a_dispute_view_records_who_decided_why_and_when():
    open_ = a_refund("disputed", "dispute", _id="dsp_1", escalated_from="rfd_1", asked_fen=1200, buyer_id="usr_b",
                     merchant_id="mch_a", reason="it was broken", merchant_reason="it was fine", created_at=NOW)
    view = domain.dispute_view(open_)
    assert (view["status"], view["outcome"], view["refunded_fen"], view["decided_by"]) == ("open", None, 0, None)
    decided = dict(open_, status="succeeded", amount_fen=700, decided_by="usr_admin", decision_reason="photos",
                   decided_at=NOW)
    view = domain.dispute_view(decided)
    assert (view["status"], view["outcome"], view["amount_fen"], view["refunded_fen"]) == \
        ("decided", "refund", 1200, 700)
    assert (view["decided_by"], view["decision_reason"], view["decided_at"]) == ("usr_admin", "photos",
                                                                                  NOW.isoformat())
    assert domain.dispute_view(dict(open_, status="rejected", decided_at=NOW))["outcome"] == "reject"


def test_timers_follow_the_status():
    assert domain.due_at(an_order("pending_payment"), SETTINGS) == NOW + timedelta(seconds=10)
    assert domain.due_at(an_order("shipped", shipped_at=NOW), SETTINGS) == NOW + timedelta(seconds=15)
    assert domain.due_at(an_order("creating"), SETTINGS) == NOW + timedelta(seconds=domain.INTENT_TTL)
    assert domain.due_at(an_order("paid"), SETTINGS) is None


def a_group(**changes):
    group = domain.new_group("grp_1", "usr_leader", "ord_l", {"product_id": "prd_a", "sku_id": "sku_a"},
                             {"size": 3, "price_fen": 900, "window_seconds": 60}, NOW)
    group.update(changes)
    return group


def test_a_new_group_holds_the_leaders_seat_and_closes_after_its_window():
    group = a_group()
    assert group["free_seats"] == 2 and group["members"] == [{"user_id": "usr_leader", "order_id": "ord_l",
                                                               "paid": False}]
    assert group["expires_at"] == NOW + timedelta(seconds=60)


@pytest.mark.parametrize("group, user, reason", [
    (a_group(status="formed"), "usr_x", "closed"),
    (a_group(), "usr_x", "closed"),  # asked after its window
    (a_group(), "usr_leader", "leader"),
    (a_group(members=[{"user_id": "usr_x", "order_id": "o", "paid": False}]), "usr_x", "already a member"),
    (a_group(free_seats=0), "usr_y", "full"),
])
def test_a_refused_join_says_why(group, user, reason):
    when = NOW + timedelta(seconds=61) if reason == "closed" and group["status"] == "open" else NOW
    refusal = domain.join_refusal(group, user, when)
    assert isinstance(refusal, Conflict) and reason in str(refusal.fields["group_id"])


def test_a_payment_counts_only_for_an_unpaid_order_of_an_open_group():
    assert domain.payment_applies(an_order("pending_payment"), None, NOW)
    assert not domain.payment_applies(an_order("cancelled"), None, NOW)
    assert domain.payment_applies(an_order("pending_payment"), a_group(), NOW)
    assert not domain.payment_applies(an_order("pending_payment"), a_group(), NOW + timedelta(seconds=60))
    assert not domain.payment_applies(an_order("pending_payment"), a_group(status="failing"), NOW)


def test_a_pay_that_finds_its_order_paid_is_answered_with_it_and_an_unpaid_or_ended_one_is_not():
    # a retried tap after the first one went through: the order is paid (or on past it), with the provider's trade
    for status in ("paid", "awaiting_group", "shipped", "completed"):
        assert domain.paid_already({**an_order(status), "trade_no": "sbx1"})
    # waiting for money, or where paying again means nothing (cancelled, refunded): pay decides, a 409 for these
    for status in ("pending_payment", "cancelled", "refunded", "refund_requested"):
        assert not domain.paid_already({**an_order(status), "trade_no": "sbx1" if status != "pending_payment" else None})


def test_only_the_exact_body_with_the_right_secret_passes_the_signature_check():
    body = b'{"trade_no":"sbx123456","amount_fen":3800}'
    signature = payment.sign(body, "s3cret")
    assert payment.signature_ok(body, signature, "s3cret")
    assert payment.signature_ok(body, signature.upper(), "s3cret")
    assert not payment.signature_ok(body.replace(b"3800", b"3801"), signature, "s3cret")
    assert not payment.signature_ok(body, signature, "other")
    assert not payment.signature_ok(body, None, "s3cret") and not payment.signature_ok(body, "", "s3cret")


def test_an_amount_other_than_the_total_is_refused():
    with pytest.raises(RuleRefused):
        domain.check_amount(an_order("pending_payment"), {"amount_fen": 1})


def test_event_data_matches_the_contract_and_carries_no_address_or_phone():
    order = an_order("paid")
    envelope = make_envelope("order.paid", domain.event_data(order, trade_no="sbx1", paid_at=NOW.isoformat()))
    text = str(envelope)
    assert "13912345678" not in text and "1 Road" not in text and "address" not in text
    assert envelope["data"]["lines"][0] == {"sku_id": "sku_a", "product_id": "prd_a", "qty": 2,
                                            "unit_price_fen": 1500, "goods_fen": 3000, "level1_bp": 1000,
                                            "level2_bp": 500}
    assert envelope["data"]["share_code"] == "shr_abcd"


def test_the_address_is_in_the_view_only_when_asked_for():
    assert domain.order_view(an_order(), with_address=True)["address"]["recipient"] == "Lin"
    assert "address" not in domain.order_view(an_order(), with_address=False)
