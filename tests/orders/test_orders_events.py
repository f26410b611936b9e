"""What another team's subscriber to `orders.events` sees: every event type, once each, as CloudEvents, with ids
and fen amounts and never a phone number or an address."""
import json
import time
from collections import Counter

from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import ADDRESS, distinct, open_shop, order_body, pay, ship

ALL_TYPES = {"order.created", "order.paid", "order.cancelled", "order.shipped", "order.completed",
             "order.refund_requested", "order.refund_rejected", "order.refunded", "groupbuy.formed",
             "groupbuy.failed"}


def test_an_independent_subscriber_gets_every_order_event_once_without_personal_data(api, kombu_listener):
    listener = kombu_listener("orders.events", ["#"])
    owner, merchant, product, sku = open_shop(api, price_fen=5000, stock=50,
                                              group_buy={"size": 2, "price_fen": 3900, "window_seconds": 6})
    buyer, friend = api.register_user(), api.register_user()
    token = buyer["token"]
    # an order shared by a friend's link: created, paid, shipped, completed, refund asked and approved (partial)
    shared = expect(api.post("/orders", json=order_body(sku, share_code="shr_friend01"), token=token), 201)["order_id"]
    pay(api, token, shared)
    ship(api, owner["token"], shared)
    expect(api.post(f"/orders/{shared}/confirm-receipt", token=token), 200)
    refund = expect(api.post(f"/orders/{shared}/refunds", json={"reason": "dented", "amount_fen": 500},
                             token=token), 201)
    expect(api.post(f"/refunds/{refund['refund_id']}/approve", token=owner["token"]), 200)
    # another: shipped, a refund asked and rejected
    rejected = expect(api.post("/orders", json=order_body(sku), token=token), 201)["order_id"]
    pay(api, token, rejected)
    ship(api, owner["token"], rejected)
    refund = expect(api.post(f"/orders/{rejected}/refunds", json={"reason": "meh"}, token=token), 201)
    expect(api.post(f"/refunds/{refund['refund_id']}/reject", json={"reason": "as described"},
                    token=owner["token"]), 200)
    # one cancelled; a group that forms; a group that fails (window 6 s)
    cancelled = expect(api.post("/orders", json=order_body(sku), token=token), 201)["order_id"]
    expect(api.post(f"/orders/{cancelled}/cancel", token=token), 200)
    formed = _group(api, buyer, sku)
    pay(api, token, formed["order_id"])
    joined = expect(api.post(f"/group-buys/{formed['group_id']}/join", json={"sku_id": sku, "address": ADDRESS},
                             token=friend["token"]), 201)
    pay(api, friend["token"], joined["order_id"])
    failed = _group(api, friend, sku)

    def seen(subject, event_type):
        return [m for m in listener.messages if m["type"] == event_type and m["subject"] == subject]
    eventually(lambda: _assert(seen(failed["group_id"], "groupbuy.failed")), timeout=30, interval=0.5)
    time.sleep(1)  # room for duplicates to show up
    mine = [m for m in distinct(listener.messages)
            if m["subject"] in {shared, rejected, cancelled, formed["order_id"], joined["order_id"],
                                failed["order_id"], formed["group_id"], failed["group_id"]}]
    # every type arrived, each once per order or group
    assert {m["type"] for m in mine} == ALL_TYPES
    repeats = {k: n for k, n in Counter((m["subject"], m["type"]) for m in mine).items() if n > 1}
    assert repeats == {}  # (a redelivery of the same event, same id, would be fine: subscribers dedupe on it)
    assert [m["type"] for m in mine if m["subject"] == shared] == [
        "order.created", "order.paid", "order.shipped", "order.completed", "order.refund_requested",
        "order.refunded"]  # one order's events arrive in the order they happened
    # as CloudEvents 1.0 envelopes
    for message in mine:
        assert message["specversion"] == "1.0" and message["source"] == "/quanzi/orders"
        assert message["datacontenttype"] == "application/json"
        assert message["dataschema"] == f"urn:quanzi:events:{message['type']}:v1" and message["time"]
    # carrying ids, lines with fen amounts and the share code, never the address or a phone number
    created = seen(shared, "order.created")[0]["data"]
    assert (created["buyer_id"], created["merchant_id"], created["share_code"]) == \
        (buyer["user_id"], merchant["merchant_id"], "shr_friend01")
    assert created["lines"] == [{"sku_id": sku, "product_id": product["product_id"], "qty": 1,
                                 "unit_price_fen": 5000, "goods_fen": 5000, "level1_bp": 1000, "level2_bp": 500}]
    refunded = seen(shared, "order.refunded")[0]["data"]
    assert (refunded["amount_fen"], refunded["full"], refunded["refunded_total_fen"]) == (500, False, 500)
    text = json.dumps(mine, ensure_ascii=False)
    for private in (ADDRESS["phone"], ADDRESS["detail"], ADDRESS["recipient"], buyer["phone"], friend["phone"],
                    '"address"', '"phone"'):
        assert private not in text


def _group(api, user, sku):
    return expect(api.post("/group-buys", json={"sku_id": sku, "address": ADDRESS}, token=user["token"]), 201)


def _assert(condition):
    assert condition
