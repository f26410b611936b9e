"""After-sales people can trust, over HTTP against the real stack: returns with goods (approved, rejected, part of
the money), requests the merchant leaves unanswered (approved by the timers after REFUND_RESPONSE_WINDOW, 12 s in
the test stack), escalation to a dispute an admin decides, and every return of money as one order.refunded seen by
an independent subscriber."""
import time

from tests.commission.test_commission_story import share_link, wait_summary
from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import ADDRESS, events_of, open_shop, pay, place, ship

RETURN = {"carrier": "ZTO", "tracking_no": "ZT-20261130-7"}


def order_of(api, user, order_id):
    return expect(api.get(f"/orders/{order_id}", token=user["token"]), 200)


def shipped_order(api, owner, buyer, sku, qty=2, share_code=None):
    body = {"items": [{"sku_id": sku, "qty": qty}], "address": ADDRESS}
    if share_code:
        body["share_code"] = share_code
    order = expect(api.post("/orders", json=body, token=buyer["token"]), 201)
    pay(api, buyer["token"], order["order_id"])
    ship(api, owner["token"], order["order_id"])
    return order["order_id"]


def ask(api, buyer, order_id, status=201, **body):
    return expect(api.post(f"/orders/{order_id}/refunds", json={"reason": "the tin arrived dented", **body},
                           token=buyer["token"]), status)


def provider_refunds(mongo, order_id):
    trade_no = mongo["quanzi_orders"]["orders"].find_one({"_id": order_id})["trade_no"]
    return sorted(r["amount_fen"] for r in mongo["quanzi_sandbox_pay"]["refunds"].find({"trade_no": trade_no}))


def test_a_return_with_goods_goes_back_before_part_of_the_money(api, mongo, kombu_listener):
    listener = kombu_listener("orders.events", ["order.#"])
    owner, _, _, sku = open_shop(api, price_fen=5000)
    buyer, stranger = api.register_user(), api.register_user()
    oid = shipped_order(api, owner, buyer, sku)  # 2 × 5000 goods, free shipping
    # when the buyer asks for half the goods' money back, with the goods going back
    refund = ask(api, buyer, oid, amount_fen=5000, return_goods=True)
    rid = refund["refund_id"]
    assert (refund["status"], refund["return_goods"], refund["amount_fen"]) == ("requested", True, 5000)
    assert refund["respond_before"]  # unanswered until then, the timers approve it
    # then nothing can be sent back or received before the merchant agrees, and only the right people act
    expect(api.post(f"/refunds/{rid}/return-shipment", json=RETURN, token=buyer["token"]), 409)
    expect(api.post(f"/refunds/{rid}/confirm-return", token=owner["token"]), 409)
    expect(api.post(f"/refunds/{rid}/approve", token=stranger["token"]), 404)
    # when the merchant approves: the buyer sends the goods back (not the merchant), the money still waits
    approved = expect(api.post(f"/refunds/{rid}/approve", token=owner["token"]), 200)
    assert (approved["status"], approved["respond_before"]) == ("awaiting_return", None)
    assert order_of(api, buyer, oid)["status"] == "refund_requested"
    expect(api.post(f"/refunds/{rid}/return-shipment", json=RETURN, token=owner["token"]), 403)
    expect(api.post(f"/refunds/{rid}/return-shipment", json={"carrier": "ZTO"}, token=buyer["token"]), 400)
    sent = expect(api.post(f"/refunds/{rid}/return-shipment", json=RETURN, token=buyer["token"]), 200)
    assert (sent["status"], sent["return_carrier"], sent["return_tracking_no"]) == ("returning", "ZTO",
                                                                                   "ZT-20261130-7")
    assert provider_refunds(mongo, oid) == []
    # when the merchant confirms the goods arrived: that part of the money goes back, the order stays shipped
    expect(api.post(f"/refunds/{rid}/confirm-return", token=buyer["token"]), 403)
    done = expect(api.post(f"/refunds/{rid}/confirm-return", token=owner["token"]), 200)
    assert (done["status"], done["amount_fen"]) == ("succeeded", 5000) and done["return_received_at"]
    after = order_of(api, buyer, oid)
    assert (after["status"], after["refunded_fen"]) == ("shipped", 5000)
    assert provider_refunds(mongo, oid) == [5000]
    expect(api.post(f"/refunds/{rid}/confirm-return", token=owner["token"]), 409)
    # and a subscriber saw one order.refunded: the part, asked by the buyer
    refunded = listener.wait_for(lambda m: m["type"] == "order.refunded" and m["subject"] == oid)
    assert {k: refunded["data"][k] for k in ("refunded_fen", "cause", "full", "refunded_total_fen", "status")} == \
        {"refunded_fen": 5000, "cause": "buyer_request", "full": False, "refunded_total_fen": 5000,
         "status": "shipped"}
    # and the rest, with goods again, ends the order refunded
    rest = ask(api, buyer, oid, return_goods=True)
    assert rest["amount_fen"] == 5000
    expect(api.post(f"/refunds/{rest['refund_id']}/approve", token=owner["token"]), 200)
    expect(api.post(f"/refunds/{rest['refund_id']}/return-shipment", json=RETURN, token=buyer["token"]), 200)
    expect(api.post(f"/refunds/{rest['refund_id']}/confirm-return", token=owner["token"]), 200)
    assert (order_of(api, buyer, oid)["status"], order_of(api, buyer, oid)["refunded_fen"]) == ("refunded", 10000)
    time.sleep(0.5)
    assert [(e["data"]["refunded_fen"], e["data"]["full"]) for t, e in events_of(listener, order_id=oid)
            if t == "order.refunded"] == [(5000, False), (5000, True)]


def test_returned_goods_the_merchant_finds_wrong_are_rejected_and_nothing_is_paid(api, mongo):
    owner, _, _, sku = open_shop(api, price_fen=5000)
    buyer = api.register_user()
    oid = shipped_order(api, owner, buyer, sku, qty=1)
    refund = ask(api, buyer, oid, return_goods=True)
    rid = refund["refund_id"]
    expect(api.post(f"/refunds/{rid}/approve", token=owner["token"]), 200)
    expect(api.post(f"/refunds/{rid}/return-shipment", json=RETURN, token=buyer["token"]), 200)
    # when the merchant rejects what came back, with a reason
    rejected = expect(api.post(f"/refunds/{rid}/reject", json={"reason": "the box that came back was empty"},
                               token=owner["token"]), 200)
    # then the order is back where it was, nothing was paid, and the refund cannot be received any more
    assert (rejected["status"], rejected["reject_reason"]) == ("rejected", "the box that came back was empty")
    assert (order_of(api, buyer, oid)["status"], order_of(api, buyer, oid)["refunded_fen"]) == ("shipped", 0)
    expect(api.post(f"/refunds/{rid}/confirm-return", token=owner["token"]), 409)
    expect(api.post(f"/refunds/{rid}/approve", token=owner["token"]), 409)
    assert provider_refunds(mongo, oid) == []


def test_a_request_the_merchant_leaves_unanswered_is_approved_by_the_timers_once(api, mongo, kombu_listener):
    listener = kombu_listener("orders.events", ["order.refunded"])
    owner, _, _, sku = open_shop(api, price_fen=5000)
    buyer = api.register_user()
    plain = shipped_order(api, owner, buyer, sku, qty=1)
    with_goods = shipped_order(api, owner, buyer, sku, qty=1)
    answered = shipped_order(api, owner, buyer, sku, qty=1)
    legacy = shipped_order(api, owner, buyer, sku, qty=1)
    # given three requests: two the merchant never answers, one rejected in time
    money_only = ask(api, buyer, plain)
    goods_first = ask(api, buyer, with_goods, return_goods=True)
    in_time = ask(api, buyer, answered)
    # and one as stored before REFUND_RESPONSE_WINDOW existed (no due time), made 13 s ago
    old = ask(api, buyer, legacy)
    mongo["quanzi_orders"]["refunds"].update_one({"_id": old["refund_id"]}, [
        {"$set": {"created_at": {"$subtract": ["$$NOW", 13_000]}}}, {"$unset": "due_at"}])
    expect(api.post(f"/refunds/{in_time['refund_id']}/reject", json={"reason": "as described"},
                    token=owner["token"]), 200)

    # when REFUND_RESPONSE_WINDOW (12 s here) passes: the money-only one is approved and paid back
    def auto_approved(asked, status):
        [now] = [r for r in order_of(api, buyer, asked["order_id"])["refunds"] if r["refund_id"] == asked["refund_id"]]
        assert (now["status"], now["auto_approved"]) == (status, True)
    eventually(lambda: auto_approved(old, "succeeded"), timeout=5, interval=0.2)  # due by its age: at once
    for asked, status in ((money_only, "succeeded"), (goods_first, "awaiting_return")):
        eventually(lambda: auto_approved(asked, status), timeout=30, interval=0.5)
    # then the money went back once, with one order.refunded; the return with goods waits for them; the answered
    # request stays rejected
    assert (order_of(api, buyer, plain)["status"], order_of(api, buyer, plain)["refunded_fen"]) == ("refunded", 5000)
    assert provider_refunds(mongo, plain) == [5000]
    assert order_of(api, buyer, with_goods)["status"] == "refund_requested"
    assert provider_refunds(mongo, with_goods) == []
    assert [r["status"] for r in order_of(api, buyer, answered)["refunds"]] == ["rejected"]
    time.sleep(2)  # two more sweeps: nothing is approved or paid twice
    assert provider_refunds(mongo, plain) == [5000]
    assert [e["data"]["cause"] for _, e in events_of(listener, order_id=plain)] == ["buyer_request"]
    expect(api.post(f"/refunds/{money_only['refund_id']}/approve", token=owner["token"]), 409)


def test_a_rejected_buyer_escalates_and_an_admins_decision_refunds_and_reverses_commission(api, mongo,
                                                                                          kombu_listener):
    orders_events = kombu_listener("orders.events", ["order.#"])
    commission_events = kombu_listener("commission.events", ["commission.reversed"])
    # given an order of 100 yuan bought through a sharer's link (10 % commission), shipped
    owner, _, product, sku = open_shop(api, price_fen=10_000)
    sharer, buyer, other = api.register_user(), api.register_user(), api.register_user()
    code = share_link(api, sharer, product["product_id"])
    expect(api.get(f"/s/{code}", token=buyer["token"]), 200)
    oid = shipped_order(api, owner, buyer, sku, qty=1, share_code=code)
    wait_summary(api, sharer, pending_fen=1000)
    # and a refund of 50 yuan the merchant rejected
    refund = ask(api, buyer, oid, amount_fen=5000)
    rid = refund["refund_id"]
    escalate = {"reason": "photos show the seal was broken"}
    expect(api.post(f"/refunds/{rid}/escalate", json=escalate, token=buyer["token"]), 409)  # not rejected yet
    expect(api.post(f"/refunds/{rid}/reject", json={"reason": "seal intact when shipped"}, token=owner["token"]),
           200)
    # when the buyer escalates (only they may, once)
    expect(api.post(f"/refunds/{rid}/escalate", json=escalate, token=other["token"]), 404)
    expect(api.post(f"/refunds/{rid}/escalate", json=escalate, token=owner["token"]), 403)
    dispute = expect(api.post(f"/refunds/{rid}/escalate", json=escalate, token=buyer["token"]), 201)
    expect(api.post(f"/refunds/{rid}/escalate", json=escalate, token=buyer["token"]), 409)
    assert (dispute["status"], dispute["amount_fen"], dispute["refund_id"], dispute["merchant_reason"]) == \
        ("open", 5000, rid, "seal intact when shipped")
    assert order_of(api, buyer, oid)["status"] == "refund_requested"
    # then admins find it in the open queue
    admin = api.admin_token()
    queue = expect(api.get("/admin/disputes", token=admin, params={"status": "open", "limit": 100}), 200)
    assert dispute["dispute_id"] in [d["dispute_id"] for d in queue["items"]]
    expect(api.get("/admin/disputes", token=buyer["token"]), 403)
    # when an admin decides for the buyer, for 30 yuan of the 50 disputed
    decision = {"outcome": "refund", "amount_fen": 3000, "reason": "seal damage visible, tin usable"}
    expect(api.post(f"/admin/disputes/{dispute['dispute_id']}/decide", json=dict(decision, amount_fen=5001),
                    token=admin), 400)
    decided = expect(api.post(f"/admin/disputes/{dispute['dispute_id']}/decide", json=decision, token=admin), 200)
    admin_id = expect(api.get("/me", token=admin), 200)["user_id"]
    # then the decision is recorded (who, why, when), final, and the money went back
    assert (decided["status"], decided["outcome"], decided["refunded_fen"], decided["decided_by"],
            decided["decision_reason"]) == ("decided", "refund", 3000, admin_id, decision["reason"])
    assert decided["decided_at"]
    expect(api.post(f"/admin/disputes/{dispute['dispute_id']}/decide", json=decision, token=admin), 409)
    expect(api.post(f"/admin/disputes/{dispute['dispute_id']}/decide",
                    json={"outcome": "reject", "reason": "changed my mind"}, token=admin), 409)
    after = order_of(api, buyer, oid)
    assert (after["status"], after["refunded_fen"]) == ("shipped", 3000)
    assert provider_refunds(mongo, oid) == [3000]
    assert dispute["dispute_id"] not in [d["dispute_id"] for d in expect(
        api.get("/admin/disputes", token=admin, params={"status": "open", "limit": 100}), 200)["items"]]
    # and an independent subscriber saw one order.refunded for the dispute, and commission reversed 30 %
    refunded = orders_events.wait_for(lambda m: m["type"] == "order.refunded" and m["subject"] == oid)
    assert (refunded["data"]["cause"], refunded["data"]["refunded_fen"], refunded["data"]["full"]) == \
        ("dispute", 3000, False)
    reversed_ = commission_events.wait_for(lambda m: m["data"]["order_id"] == oid, timeout=20)
    assert (reversed_["data"]["beneficiary_id"], reversed_["data"]["amount_fen"]) == (sharer["user_id"], 300)
    wait_summary(api, sharer, pending_fen=700)
    time.sleep(0.5)
    assert [t for t, _ in events_of(orders_events, order_id=oid)] == [
        "order.created", "order.paid", "order.shipped", "order.refund_requested", "order.refund_rejected",
        "order.refund_requested", "order.refunded"]


def test_an_admin_may_reject_a_dispute_and_the_order_goes_back(api, kombu_listener):
    listener = kombu_listener("orders.events", ["order.refund_rejected"])
    owner, _, _, sku = open_shop(api, price_fen=5000)
    buyer = api.register_user()
    oid = shipped_order(api, owner, buyer, sku, qty=1)
    rid = ask(api, buyer, oid)["refund_id"]
    expect(api.post(f"/refunds/{rid}/reject", json={"reason": "as described"}, token=owner["token"]), 200)
    dispute = expect(api.post(f"/refunds/{rid}/escalate", json={"reason": "it is not"}, token=buyer["token"]), 201)
    admin = api.admin_token()
    expect(api.post(f"/admin/disputes/{dispute['dispute_id']}/decide",
                    json={"outcome": "reject", "amount_fen": 100, "reason": "x"}, token=admin), 400)
    decided = expect(api.post(f"/admin/disputes/{dispute['dispute_id']}/decide",
                              json={"outcome": "reject", "reason": "matches the listing photos"}, token=admin), 200)
    assert (decided["outcome"], decided["refunded_fen"], decided["decision_reason"]) == \
        ("reject", 0, "matches the listing photos")
    assert (order_of(api, buyer, oid)["status"], order_of(api, buyer, oid)["refunded_fen"]) == ("shipped", 0)
    eventually(lambda: _assert(len(events_of(listener, order_id=oid)) == 2))  # the merchant's, then the admin's
    decided_list = expect(api.get("/admin/disputes", token=admin, params={"status": "decided", "limit": 100}), 200)
    assert dispute["dispute_id"] in [d["dispute_id"] for d in decided_list["items"]]


def _due_now(mongo, refund_id):
    """Backdate a waiting refund's deadline: as if its window (days in production) had just passed."""
    mongo["quanzi_orders"]["refunds"].update_one({"_id": refund_id}, [{"$set": {"due_at": "$$NOW"}}])


def test_a_return_whose_goods_never_leave_closes_and_one_never_confirmed_counts_as_received(api, mongo,
                                                                                           kombu_listener):
    listener = kombu_listener("orders.events", ["order.#"])
    owner, _, _, sku = open_shop(api, price_fen=5000)
    buyer = api.register_user()
    idle, unconfirmed = shipped_order(api, owner, buyer, sku, qty=1), shipped_order(api, owner, buyer, sku, qty=1)
    # given two approved returns: one the buyer never sends back, one the merchant never confirms
    stuck, sent = ask(api, buyer, idle, return_goods=True), ask(api, buyer, unconfirmed, return_goods=True)
    for refund in (stuck, sent):
        approved = expect(api.post(f"/refunds/{refund['refund_id']}/approve", token=owner["token"]), 200)
        assert approved["status"] == "awaiting_return" and approved["ship_back_before"] > approved["decided_at"]
    returning = expect(api.post(f"/refunds/{sent['refund_id']}/return-shipment", json=RETURN,
                                token=buyer["token"]), 200)
    assert (returning["ship_back_before"], returning["received_by"] > returning["returned_at"]) == (None, True)
    # when both windows pass (RETURN_SHIP_WINDOW, RETURN_RECEIVE_WINDOW: days in production)
    _due_now(mongo, stuck["refund_id"])
    _due_now(mongo, sent["refund_id"])

    def status_of(order_id, refund_id):
        return {r["refund_id"]: r for r in order_of(api, buyer, order_id)["refunds"]}[refund_id]
    eventually(lambda: _assert(status_of(idle, stuck["refund_id"])["status"] == "closed"), timeout=10, interval=0.3)
    eventually(lambda: _assert(status_of(unconfirmed, sent["refund_id"])["status"] == "succeeded"), timeout=10,
               interval=0.3)
    # then the unsent return closed without money and the order is back where it was (a new request is possible)
    closed = status_of(idle, stuck["refund_id"])
    assert closed["close_reason"] == "the goods were not sent back within the return window"
    assert (order_of(api, buyer, idle)["status"], provider_refunds(mongo, idle)) == ("shipped", [])
    def announced():
        rejected = [e["data"] for kind, e in events_of(listener, order_id=idle) if kind == "order.refund_rejected"]
        assert [(d["refund_id"], d["reason"]) for d in rejected] == [(stuck["refund_id"], closed["close_reason"])]
    eventually(announced, timeout=10, interval=0.3)
    # and the unconfirmed one was paid back once, as if the merchant had confirmed receipt
    assert (order_of(api, buyer, unconfirmed)["status"], provider_refunds(mongo, unconfirmed)) == ("refunded", [5000])
    time.sleep(2)  # two more sweeps: nothing acted on twice
    assert provider_refunds(mongo, unconfirmed) == [5000] and status_of(idle, stuck["refund_id"])["status"] == "closed"
    expect(api.post(f"/refunds/{sent['refund_id']}/confirm-return", token=owner["token"]), 409)
    expect(api.post(f"/refunds/{stuck['refund_id']}/return-shipment", json=RETURN, token=buyer["token"]), 409)


def test_a_refund_before_shipping_stays_automatic_even_when_goods_are_offered_back(api, mongo):
    owner, _, _, sku = open_shop(api, price_fen=3000)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    pay(api, buyer["token"], order["order_id"])
    refund = ask(api, buyer, order["order_id"], return_goods=True)  # nothing shipped: nothing to send back
    assert (refund["status"], refund["return_goods"], refund["amount_fen"]) == ("succeeded", False, 3800)
    assert order_of(api, buyer, order["order_id"])["status"] == "refunded"


def _assert(condition):
    assert condition
