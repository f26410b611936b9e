"""The payment provider's signed callback: applied once per trade_no, forgeries refused, late money refunded,
unpaid orders cancelled when the payment timeout passes."""
import concurrent.futures
import json
import time

from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import distinct, events_of, notification, notify, open_shop, place, stock_of


def order_of(api, token, order_id):
    return expect(api.get(f"/orders/{order_id}", token=token), 200)


def test_ten_identical_notifications_make_one_payment(api, stack, mongo, kombu_listener):
    listener = kombu_listener("orders.events", ["order.paid"])
    _, _, _, sku = open_shop(api)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    body = notification(order)
    # when the provider's callback arrives ten times at once
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: notify(_client(api), stack.env["PAYMENT_HMAC_SECRET"], body), range(10)))
    # then every copy is acknowledged, exactly one applied it, and the order was paid once
    assert [a.status_code for a in answers] == [200] * 10
    assert sorted(a.json()["outcome"] for a in answers) == ["applied"] + ["duplicate"] * 9
    assert order_of(api, buyer["token"], order["order_id"])["trade_no"] == body["trade_no"]
    assert mongo["quanzi_orders"]["payments"].count_documents({"order_id": order["order_id"]}) == 1
    listener.wait_for(lambda m: m["data"]["order_id"] == order["order_id"])
    again = notify(api, stack.env["PAYMENT_HMAC_SECRET"], body)
    assert again.json()["outcome"] == "duplicate"
    # a repeat of the trade_no changes nothing whatever it says now (here: another amount)
    altered = notify(api, stack.env["PAYMENT_HMAC_SECRET"], dict(body, amount_fen=body["amount_fen"] + 1))
    assert (altered.status_code, altered.json()["outcome"]) == (200, "duplicate")
    time.sleep(0.5)  # room for a second order.paid to show up, were there one
    assert [m["data"]["order_id"] for m in distinct(listener.messages)].count(order["order_id"]) == 1


def test_a_pay_tapped_again_after_it_went_through_answers_the_paid_order_and_charges_once(api, mongo,
                                                                                          kombu_listener):
    # given a buyer whose first tap paid the order, but whose app never saw the answer (a timeout, an outage)
    listener = kombu_listener("orders.events", ["order.paid"])
    _, _, _, sku = open_shop(api)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    first = expect(api.post(f"/orders/{order['order_id']}/pay", token=buyer["token"]), 200)
    assert first["status"] == "paid"
    # when it taps "pay" again, twice
    again = [expect(api.post(f"/orders/{order['order_id']}/pay", token=buyer["token"]), 200) for _ in range(2)]
    # then both answers show the same paid order, one payment exists and one order.paid was published
    assert {(a["status"], a["trade_no"]) for a in again} == {("paid", first["trade_no"])}
    assert mongo["quanzi_orders"]["payments"].count_documents({"order_id": order["order_id"]}) == 1
    listener.wait_for(lambda m: m["data"]["order_id"] == order["order_id"])
    time.sleep(0.5)
    assert [m["data"]["order_id"] for m in distinct(listener.messages)].count(order["order_id"]) == 1


def test_a_tampered_or_unsigned_notification_is_refused_with_401_and_changes_nothing(api, stack, mongo):
    _, _, _, sku = open_shop(api)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    secret = stack.env["PAYMENT_HMAC_SECRET"]
    genuine = json.dumps(notification(order)).encode()
    tampered = genuine.replace(b'"trade_no": "test', b'"trade_no": "evil')
    assert notify(api, secret, None, signature=_sign(genuine, secret), raw=tampered).status_code == 401
    assert notify(api, secret, None, signature="", raw=genuine).status_code == 401
    assert notify(api, "a-guessed-secret", None, raw=genuine).status_code == 401
    assert order_of(api, buyer["token"], order["order_id"])["status"] == "pending_payment"
    assert mongo["quanzi_orders"]["payments"].count_documents({"order_id": order["order_id"]}) == 0


def test_a_notification_with_the_wrong_amount_is_refused_and_logged(api, stack, mongo):
    _, _, _, sku = open_shop(api)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    answer = notify(api, stack.env["PAYMENT_HMAC_SECRET"], notification(order, amount_fen=1))
    assert answer.status_code == 422 and "amount_fen" in answer.json()["error"]["fields"]
    assert order_of(api, buyer["token"], order["order_id"])["status"] == "pending_payment"
    assert mongo["quanzi_orders"]["payments"].count_documents({"order_id": order["order_id"]}) == 0
    assert f"for order {order['order_id']} refused: amount 1" in stack.services["orders"].log_path.read_text()


def test_money_arriving_after_a_cancel_is_refunded_and_the_order_ends_refunded(api, stack, mongo, rpc, kombu_listener):
    listener = kombu_listener("orders.events", ["order.*"])
    _, _, product, sku = open_shop(api, stock=3)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    expect(api.post(f"/orders/{order['order_id']}/cancel", token=buyer["token"]), 200)
    # when the provider's notification comes in late
    body = notification(order)
    answer = notify(api, stack.env["PAYMENT_HMAC_SECRET"], body)
    # then the money goes straight back (recorded at the provider and with us) and nothing revives the order: it
    # ends `refunded`, announced once as order.refunded with cause late_payment
    assert answer.status_code == 200 and answer.json()["outcome"] == "refund"
    view = order_of(api, buyer["token"], order["order_id"])
    assert (view["status"], view["refunded_fen"], view["trade_no"]) == ("refunded", order["total_fen"], None)
    refunded = listener.wait_for(lambda m: m["type"] == "order.refunded" and m["subject"] == order["order_id"])
    assert (refunded["data"]["cause"], refunded["data"]["refunded_fen"], refunded["data"]["full"]) == \
        ("late_payment", order["total_fen"], True)
    assert [(r["kind"], r["status"], r["amount_fen"]) for r in view["refunds"]] == \
        [("late_payment", "succeeded", order["total_fen"])]
    assert mongo["quanzi_sandbox_pay"]["refunds"].count_documents({"trade_no": body["trade_no"]}) == 1
    # and a repeat of that late notification changes nothing
    assert notify(api, stack.env["PAYMENT_HMAC_SECRET"], body).json()["outcome"] == "duplicate"
    assert mongo["quanzi_sandbox_pay"]["refunds"].count_documents({"trade_no": body["trade_no"]}) == 1
    eventually(lambda: _equal(stock_of(rpc, product["product_id"]), 3))
    time.sleep(0.5)
    assert [t for t, _ in events_of(listener, order_id=order["order_id"])] == [
        "order.created", "order.cancelled", "order.refunded"]


def test_an_unpaid_order_is_cancelled_after_the_payment_timeout_and_its_stock_comes_back(api, rpc, kombu_listener):
    listener = kombu_listener("orders.events", ["order.cancelled"])
    _, _, product, sku = open_shop(api, stock=5)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku, qty=2)
    assert stock_of(rpc, product["product_id"]) == 3
    # the test stack cancels unpaid orders after PAYMENT_TIMEOUT=10 s, swept every second
    cancelled = listener.wait_for(lambda m: m["data"]["order_id"] == order["order_id"], timeout=20)
    assert cancelled["data"]["reason"] == "payment_timeout"
    view = order_of(api, buyer["token"], order["order_id"])
    assert (view["status"], view["cancel_reason"]) == ("cancelled", "payment_timeout")
    eventually(lambda: _equal(stock_of(rpc, product["product_id"]), 5))
    expect(api.post(f"/orders/{order['order_id']}/pay", token=buyer["token"]), 409)


def _client(api):
    """A session of its own for each thread (requests sessions are not shared between threads)."""
    from tests.helpers import Api
    return Api(api.base_url[:-len("/api/v1")], api.admin_phone, api.admin_password)


def _sign(raw, secret):
    from contracts.payment import sign
    return sign(raw, secret)


def _equal(actual, expected):
    assert actual == expected
