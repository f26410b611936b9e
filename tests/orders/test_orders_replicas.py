"""Three replicas of the orders service sweeping the same due work: every timeout (an unpaid order, an unanswered
refund request) handled exactly once."""
import time

from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import distinct, mint_buyers, open_shop, pay, place, ship, stock_of


def test_three_replicas_running_timers_cancel_each_timed_out_order_once(api, stack, rpc, mongo, kombu_listener):
    listener = kombu_listener("orders.events", ["order.cancelled"])
    # given three processes of the orders service, all sweeping every second
    replicas = [stack.add_replica("orders"), stack.add_replica("orders")]
    try:
        _, _, product, sku = open_shop(api, price_fen=1000, stock=30)
        # when 12 orders go unpaid past the payment timeout (10 s on the test stack)
        orders = [place(api, buyer["token"], sku, qty=2)["order_id"] for buyer in mint_buyers(stack, 12)]
        assert stock_of(rpc, product["product_id"]) == 6

        def all_cancelled():
            cancelled = [m["data"]["order_id"] for m in listener.messages if m["data"]["order_id"] in orders]
            assert sorted(set(cancelled)) == sorted(orders)
        eventually(all_cancelled, timeout=30, interval=0.5)
        time.sleep(1.5)  # a second sweep pass of every replica: a double would show up now
        # then each order was cancelled exactly once, by payment timeout, and the stock came back exactly
        cancelled = [m for m in distinct(listener.messages) if m["data"]["order_id"] in orders]
        assert sorted(m["data"]["order_id"] for m in cancelled) == sorted(orders)
        assert {m["data"]["reason"] for m in cancelled} == {"payment_timeout"}
        assert mongo["quanzi_orders"]["orders"].count_documents(
            {"_id": {"$in": orders}, "status": "cancelled", "cancel_reason": "payment_timeout"}) == 12
        eventually(lambda: _equal(stock_of(rpc, product["product_id"]), 30))
        time.sleep(0.5)
        assert stock_of(rpc, product["product_id"]) == 30  # released once each: never more than there was
    finally:
        for replica in replicas:
            replica.stop()


def _equal(actual, expected):
    assert actual == expected


def test_three_replicas_approve_each_unanswered_refund_request_once(api, stack, mongo, kombu_listener):
    listener = kombu_listener("orders.events", ["order.refunded"])
    replicas = [stack.add_replica("orders"), stack.add_replica("orders")]
    try:
        # given 6 shipped orders whose refund requests the merchant never answers
        owner, _, _, sku = open_shop(api, price_fen=1000, stock=30)
        buyers = mint_buyers(stack, 6)
        orders = []
        for buyer in buyers:
            order_id = place(api, buyer["token"], sku)["order_id"]
            pay(api, buyer["token"], order_id)
            ship(api, owner["token"], order_id)
            expect(api.post(f"/orders/{order_id}/refunds", json={"reason": "never arrived"}, token=buyer["token"]),
                   201)
            orders.append(order_id)

        # when REFUND_RESPONSE_WINDOW (12 s on the test stack) passes with three processes sweeping every second
        def all_refunded():
            assert sorted({m["data"]["order_id"] for m in listener.messages} & set(orders)) == sorted(orders)
        eventually(all_refunded, timeout=40, interval=0.5)
        time.sleep(1.5)  # a second sweep pass of every replica: a double would show up now
        # then each was approved and paid back exactly once: one provider refund, one order.refunded each
        refunded = [m for m in distinct(listener.messages) if m["data"]["order_id"] in orders]
        assert sorted(m["data"]["order_id"] for m in refunded) == sorted(orders)
        assert {(m["data"]["cause"], m["data"]["refunded_fen"], m["data"]["full"]) for m in refunded} == \
            {("buyer_request", 1000, True)}
        trade_nos = [o["trade_no"] for o in mongo["quanzi_orders"]["orders"].find({"_id": {"$in": orders}})]
        assert mongo["quanzi_sandbox_pay"]["refunds"].count_documents({"trade_no": {"$in": trade_nos}}) == 6
        assert mongo["quanzi_orders"]["refunds"].count_documents(
            {"order_id": {"$in": orders}, "status": "succeeded", "auto_approved": True}) == 6
    finally:
        for replica in replicas:
            replica.stop()
