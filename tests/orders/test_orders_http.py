"""An order's life through the gateway: place, pay, ship, receive, review; refunds; refused transitions."""
import time
from datetime import datetime

from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import ADDRESS, open_shop, order_body, pay, place, ship, stock_of


def test_a_shopper_orders_pays_receives_and_reviews(api, rpc):
    # given an approved merchant selling tea at 50 yuan, 20 in stock
    owner, merchant, product, sku = open_shop(api, price_fen=5000, stock=20)
    buyer = api.register_user(nickname="tea lover")
    # when the buyer orders two
    order = place(api, buyer["token"], sku, qty=2, key="first-try")
    # then it waits for payment at the price of the moment, free shipping from 99 yuan, stock reserved
    assert order["status"] == "pending_payment"
    assert (order["goods_fen"], order["shipping_fen"], order["discount_fen"], order["total_fen"]) == \
        (10000, 0, 0, 10000)
    assert order["lines"][0]["unit_price_fen"] == 5000 and order["address"] == ADDRESS
    assert stock_of(rpc, product["product_id"]) == 18
    # and a later price rise does not change it
    expect(api.patch(f"/products/{product['product_id']}", json={"skus": [{"sku_id": sku, "price_fen": 6000}]},
                     token=owner["token"]), 200)
    # when the buyer pays through the sandbox provider
    paid = pay(api, buyer["token"], order["order_id"])
    assert paid["status"] == "paid" and paid["trade_no"] and paid["total_fen"] == 10000
    # and the merchant ships, the buyer confirms receipt
    shipped = ship(api, owner["token"], order["order_id"])
    assert shipped["status"] == "shipped" and shipped["tracking_no"] == "SF1234567"
    done = expect(api.post(f"/orders/{order['order_id']}/confirm-receipt", token=buyer["token"]), 200)
    assert done["status"] == "completed" and done["after_sales_until"]
    # then the buyer may review the product once (the catalog learns of the completed order from its event)
    review = {"order_id": order["order_id"], "rating": 4, "text": "清香"}
    posted = eventually(lambda: expect(api.post(f"/products/{product['product_id']}/reviews", json=review,
                                                token=buyer["token"]), 201), timeout=10)
    assert posted["rating"] == 4
    expect(api.post(f"/products/{product['product_id']}/reviews", json=review, token=buyer["token"]), 409)
    assert expect(api.get(f"/products/{product['product_id']}"), 200)["rating"] == {"average": 4.0, "count": 1}
    # and someone who did not buy it may not
    stranger = api.register_user()
    expect(api.post(f"/products/{product['product_id']}/reviews", json=review, token=stranger["token"]), 403)
    # and the buyer finds the order in their list, as it is now
    mine = expect(api.get("/orders", token=buyer["token"]), 200)
    assert [(o["order_id"], o["status"], o["total_fen"]) for o in mine["items"]] == \
        [(order["order_id"], "completed", 10000)]
    assert "address" not in mine["items"][0]


def test_an_order_below_99_yuan_pays_shipping_and_a_review_needs_a_completed_order(api):
    owner, _, product, sku = open_shop(api, price_fen=3000)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    assert (order["goods_fen"], order["shipping_fen"], order["total_fen"]) == (3000, 800, 3800)
    pay(api, buyer["token"], order["order_id"])
    review = {"order_id": order["order_id"], "rating": 5}
    expect(api.post(f"/products/{product['product_id']}/reviews", json=review, token=buyer["token"]), 403)
    expect(api.post(f"/products/{product['product_id']}/reviews", json=dict(review, rating=6),
                    token=buyer["token"]), 400)


def test_refused_transitions_answer_409_and_change_nothing(api, rpc):
    owner, _, product, sku = open_shop(api, stock=5)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    oid = order["order_id"]
    # an unpaid order cannot ship, be received or refunded
    ship(api, owner["token"], oid, status=409)
    expect(api.post(f"/orders/{oid}/confirm-receipt", token=buyer["token"]), 409)
    expect(api.post(f"/orders/{oid}/refunds", json={"reason": "changed my mind"}, token=buyer["token"]), 409)
    assert expect(api.get(f"/orders/{oid}", token=buyer["token"]), 200)["status"] == "pending_payment"
    # a cancelled one cannot be paid or cancelled again, and its stock came back once
    assert expect(api.post(f"/orders/{oid}/cancel", token=buyer["token"]), 200)["status"] == "cancelled"
    expect(api.post(f"/orders/{oid}/pay", token=buyer["token"]), 409)
    expect(api.post(f"/orders/{oid}/cancel", token=buyer["token"]), 409)
    eventually(lambda: _assert_equal(stock_of(rpc, product["product_id"]), 5))
    after = expect(api.get(f"/orders/{oid}", token=buyer["token"]), 200)
    assert after["status"] == "cancelled" and after["cancel_reason"] == "buyer" and after["trade_no"] is None
    # a paid order is not cancelled (that is a refund)
    paid = place(api, buyer["token"], sku)
    pay(api, buyer["token"], paid["order_id"])
    expect(api.post(f"/orders/{paid['order_id']}/cancel", token=buyer["token"]), 409)


def test_a_cart_spanning_two_merchants_is_refused_and_reserves_nothing(api, rpc):
    _, _, first, sku_a = open_shop(api, stock=3)
    _, _, second, sku_b = open_shop(api, stock=3)
    buyer = api.register_user()
    body = {"items": [{"sku_id": sku_a, "qty": 1}, {"sku_id": sku_b, "qty": 1}], "address": ADDRESS}
    error = expect(api.post("/orders", json=body, token=buyer["token"]), 400)["error"]
    assert "items" in error["fields"]
    eventually(lambda: _assert_equal((stock_of(rpc, first["product_id"]), stock_of(rpc, second["product_id"])),
                                     (3, 3)))
    expect(api.post("/orders", json=order_body("sku_doesnotexist"), token=buyer["token"]), 404)
    expect(api.post("/orders", json=order_body(sku_a, qty=4), token=buyer["token"]), 409)
    assert expect(api.get("/orders", token=buyer["token"]), 200)["items"] == []


def test_a_refund_before_shipping_is_whole_automatic_and_gives_the_stock_back(api, rpc, mongo):
    owner, _, product, sku = open_shop(api, price_fen=3000, stock=4)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku, qty=2)
    pay(api, buyer["token"], order["order_id"])
    assert stock_of(rpc, product["product_id"]) == 2
    # when the buyer asks for the money back before the merchant shipped
    refund = expect(api.post(f"/orders/{order['order_id']}/refunds", json={"reason": "ordered twice"},
                             token=buyer["token"]), 201)
    # then everything paid goes back at once, through the provider, and the stock returns
    assert (refund["status"], refund["amount_fen"]) == ("succeeded", 6800)  # goods 6000 + shipping 800
    after = expect(api.get(f"/orders/{order['order_id']}", token=buyer["token"]), 200)
    assert (after["status"], after["refunded_fen"]) == ("refunded", 6800)
    assert mongo["quanzi_sandbox_pay"]["refunds"].count_documents({"trade_no": after["trade_no"]}) == 1
    eventually(lambda: _assert_equal(stock_of(rpc, product["product_id"]), 4))
    expect(api.post(f"/orders/{order['order_id']}/refunds", json={"reason": "again"}, token=buyer["token"]), 409)
    ship(api, owner["token"], order["order_id"], status=409)


def test_after_sales_the_merchant_decides_partial_refunds_until_the_window_closes(api, rpc):
    owner, _, product, sku = open_shop(api, price_fen=5000, stock=4)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)  # 5000 goods + 800 shipping
    oid = order["order_id"]
    pay(api, buyer["token"], oid)
    ship(api, owner["token"], oid)
    completed = expect(api.post(f"/orders/{oid}/confirm-receipt", token=buyer["token"]), 200)
    # more than the goods (shipping is not refunded after delivery) is refused
    expect(api.post(f"/orders/{oid}/refunds", json={"reason": "x", "amount_fen": 5001}, token=buyer["token"]), 400)
    # a partial refund, approved by the merchant
    asked = expect(api.post(f"/orders/{oid}/refunds", json={"reason": "one tin dented", "amount_fen": 1200},
                            token=buyer["token"]), 201)
    assert asked["status"] == "requested"
    assert expect(api.get(f"/orders/{oid}", token=buyer["token"]), 200)["status"] == "refund_requested"
    expect(api.post(f"/refunds/{asked['refund_id']}/approve", token=buyer["token"]), 403)  # not the merchant
    approved = expect(api.post(f"/refunds/{asked['refund_id']}/approve", token=owner["token"]), 200)
    assert approved["status"] == "succeeded"
    after = expect(api.get(f"/orders/{oid}", token=buyer["token"]), 200)
    assert (after["status"], after["refunded_fen"]) == ("completed", 1200)
    expect(api.post(f"/refunds/{asked['refund_id']}/approve", token=owner["token"]), 409)
    # the rest, rejected with a reason: the order is back where it was
    rest = expect(api.post(f"/orders/{oid}/refunds", json={"reason": "all of it"}, token=buyer["token"]), 201)
    assert rest["amount_fen"] == 3800
    rejected = expect(api.post(f"/refunds/{rest['refund_id']}/reject", json={"reason": "tea was fine"},
                               token=owner["token"]), 200)
    assert (rejected["status"], rejected["reject_reason"]) == ("rejected", "tea was fine")
    after = expect(api.get(f"/orders/{oid}", token=owner["token"]), 200)
    assert after["status"] == "completed" and [r["status"] for r in after["refunds"]] == ["succeeded", "rejected"]
    # after the after-sales window: refused by rule (422); the stock of delivered goods never comes back
    _sleep_until(completed["after_sales_until"])
    expect(api.post(f"/orders/{oid}/refunds", json={"reason": "late"}, token=buyer["token"]), 422)
    assert stock_of(rpc, product["product_id"]) == 3


def test_a_shipped_order_completes_by_itself_after_auto_confirm_after(api):
    owner, _, _, sku = open_shop(api)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    pay(api, buyer["token"], order["order_id"])
    ship(api, owner["token"], order["order_id"])
    # the test stack confirms after 15 s, swept every second
    done = eventually(lambda: _completed(api, buyer, order["order_id"]), timeout=25, interval=0.5)
    assert done["completed_at"] and done["after_sales_until"]


def _completed(api, buyer, order_id):
    view = expect(api.get(f"/orders/{order_id}", token=buyer["token"]), 200)
    assert view["status"] == "completed"
    return view


def _sleep_until(iso):
    time.sleep(max(0.0, (datetime.fromisoformat(iso) - datetime.now(datetime.fromisoformat(iso).tzinfo))
                   .total_seconds()) + 0.2)


def _assert_equal(actual, expected):
    assert actual == expected
