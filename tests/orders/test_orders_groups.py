"""Group buys (拼团): seats held from order creation, formed exactly once when every seat is paid, failed at the
window's end with every paid member refunded once, also across a crash half-way."""
import concurrent.futures
import time

from tests.flows import expect
from tests.helpers import Api, eventually
from tests.orders.shop import ADDRESS, events_of, open_shop, pay, ship, stock_of

JOIN = {"qty": 1, "address": ADDRESS}


def group_shop(api, size, window_seconds, stock=20):
    return open_shop(api, price_fen=5000, stock=stock,
                     group_buy={"size": size, "price_fen": 3900, "window_seconds": window_seconds})


def open_group(api, user, sku):
    return expect(api.post("/group-buys", json=dict(JOIN, sku_id=sku), token=user["token"]), 201)


def join(api, user, group_id, sku, status=201):
    return expect(api.post(f"/group-buys/{group_id}/join", json=dict(JOIN, sku_id=sku), token=user["token"]), status)


def order_of(api, user, order_id):
    return expect(api.get(f"/orders/{order_id}", token=user["token"]), 200)


def group_of(api, group_id):
    return expect(api.get(f"/group-buys/{group_id}"), 200)


def test_a_group_forms_once_when_every_seat_is_paid_and_ships_only_then(api, kombu_listener):
    listener = kombu_listener("orders.events", ["groupbuy.#", "order.paid"])
    owner, _, product, sku = group_shop(api, size=3, window_seconds=600)
    leader, first, second = (api.register_user() for _ in range(3))
    opened = open_group(api, leader, sku)
    group_id = opened["group_id"]
    orders = {leader["user_id"]: opened, first["user_id"]: join(api, first, group_id, sku),
              second["user_id"]: join(api, second, group_id, sku)}
    # a paid seat waits for the others, and its merchant may not ship it yet
    assert pay(api, leader["token"], opened["order_id"])["status"] == "awaiting_group"
    ship(api, owner["token"], opened["order_id"], status=409)
    # when the last two pay at the same moment
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        paid = list(pool.map(lambda user: _pay_in_own_session(api, user, orders[user["user_id"]]["order_id"]),
                             [first, second]))
    assert all(p.status_code == 200 for p in paid)
    # then the group formed exactly once and every order is paid and ships
    formed = listener.wait_for(lambda m: m["type"] == "groupbuy.formed" and m["data"]["group_id"] == group_id)
    assert sorted(formed["data"]["member_ids"]) == sorted(orders)
    group = group_of(api, group_id)
    assert (group["status"], group["seats_left"]) == ("formed", 0) and all(m["paid"] for m in group["members"])
    for user in (leader, first, second):
        assert order_of(api, user, orders[user["user_id"]]["order_id"])["status"] == "paid"
    assert ship(api, owner["token"], opened["order_id"])["status"] == "shipped"
    # and nobody joins a formed group
    join(api, api.register_user(), group_id, sku, status=409)
    time.sleep(0.5)
    assert [t for t, _ in events_of(listener, group_id=group_id)] == ["groupbuy.formed"]


def test_an_unpaid_seat_is_freed_when_its_order_times_out(api):
    _, _, product, sku = group_shop(api, size=3, window_seconds=600)
    leader, slow, other = (api.register_user() for _ in range(3))
    opened = open_group(api, leader, sku)
    group_id = opened["group_id"]
    pay(api, leader["token"], opened["order_id"])
    unpaid = join(api, slow, group_id, sku)
    assert group_of(api, group_id)["seats_left"] == 1
    join(api, slow, group_id, sku, status=409)  # one seat per user
    # the test stack cancels unpaid orders after 10 s: the seat comes back and the group stays open
    eventually(lambda: _assert(order_of(api, slow, unpaid["order_id"])["status"] == "cancelled"), timeout=20,
               interval=0.5)
    group = group_of(api, group_id)
    assert (group["status"], group["seats_left"]) == ("open", 2)
    assert [m["user_id"] for m in group["members"]] == [leader["user_id"]]
    join(api, other, group_id, sku)
    join(api, slow, group_id, sku)  # and the one who was too slow may take a seat again


def test_an_expired_group_refunds_paid_members_once_cancels_the_unpaid_and_returns_the_stock(
        api, rpc, mongo, kombu_listener):
    listener = kombu_listener("orders.events", ["groupbuy.failed", "order.cancelled", "order.refunded"])
    # (a window shorter than the test stack's 10 s payment timeout: the unpaid seat is still held at its end)
    _, _, product, sku = group_shop(api, size=4, window_seconds=7, stock=10)
    leader, payer, idler = (api.register_user() for _ in range(3))
    opened = open_group(api, leader, sku)
    group_id = opened["group_id"]
    paying = join(api, payer, group_id, sku)
    idle = join(api, idler, group_id, sku)
    pay(api, leader["token"], opened["order_id"])
    pay(api, payer["token"], paying["order_id"])
    assert stock_of(rpc, product["product_id"]) == 7
    # when the window ends with one seat empty
    failed = listener.wait_for(lambda m: m["type"] == "groupbuy.failed" and m["data"]["group_id"] == group_id,
                               timeout=30)
    # then every paid member got their money back exactly once and ends `refunded` (finance tells it from an
    # unpaid cancellation), the unpaid order is cancelled, stock is back
    assert sorted(failed["data"]["order_ids"]) == sorted([opened["order_id"], paying["order_id"], idle["order_id"]])
    for user, order in ((leader, opened), (payer, paying)):
        view = order_of(api, user, order["order_id"])
        assert (view["status"], view["refunded_fen"]) == ("refunded", 3900)
        assert [(r["kind"], r["status"]) for r in view["refunds"]] == [("group_failed", "succeeded")]
        assert _provider_refunds(mongo, view["trade_no"]) == [3900]
    assert order_of(api, idler, idle["order_id"])["status"] == "cancelled"
    assert group_of(api, group_id)["status"] == "failed"
    eventually(lambda: _assert(stock_of(rpc, product["product_id"]) == 10))
    time.sleep(0.5)
    for order in (opened, paying):  # one order.refunded each, with what went back and why
        [(kind, event)] = events_of(listener, order_id=order["order_id"])
        assert kind == "order.refunded"
        assert (event["data"]["status"], event["data"]["refunded_fen"], event["data"]["cause"], event["data"]["full"]) \
            == ("refunded", 3900, "group_failed", True)
    assert [t for t, _ in events_of(listener, order_id=idle["order_id"])] == ["order.cancelled"]


def test_a_crash_half_way_through_a_failed_group_resumes_and_refunds_nobody_twice(
        api, rpc, mongo, stack, crashing_orders, kombu_listener):
    listener = kombu_listener("orders.events", ["groupbuy.failed", "order.cancelled", "order.refunded"])
    _, _, product, sku = group_shop(api, size=5, window_seconds=8, stock=10)
    # given an orders service that dies right after the provider returned the 2nd member's money, before it
    # recorded that (the worst moment: money gone, order not updated)
    crashing_orders(f"group_refund:{product['product_id']}#2")
    members = [api.register_user() for _ in range(4)]
    opened = open_group(api, members[0], sku)
    group_id = opened["group_id"]
    orders = [opened] + [join(api, user, group_id, sku) for user in members[1:]]
    for user, order in list(zip(members, orders))[:3]:
        pay(api, user["token"], order["order_id"])  # three paid, the fourth never pays
    # when the window ends and the service crashes half-way through the failure
    orders_process = stack.services["orders"]
    eventually(lambda: _assert(not orders_process.is_running()), timeout=40, interval=0.2)
    refunded_before_restart = mongo["quanzi_sandbox_pay"]["refunds"].count_documents(
        {"trade_no": {"$in": [_trade_no(mongo, o) for o in orders[:3]]}})
    assert refunded_before_restart == 2
    assert mongo["quanzi_orders"]["groups"].find_one({"_id": group_id})["status"] == "failing"
    # then, restarted, it finishes the job
    stack.restart_service("orders")
    listener.wait_for(lambda m: m["type"] == "groupbuy.failed" and m["data"]["group_id"] == group_id, timeout=60)
    for user, order in list(zip(members, orders))[:3]:
        view = order_of(api, user, order["order_id"])
        assert (view["status"], view["refunded_fen"]) == ("refunded", 3900)
        assert _provider_refunds(mongo, view["trade_no"]) == [3900]  # once each, the crashed one included
    assert order_of(api, members[3], orders[3]["order_id"])["status"] == "cancelled"
    assert group_of(api, group_id)["status"] == "failed"
    eventually(lambda: _assert(stock_of(rpc, product["product_id"]) == 10))
    time.sleep(0.5)
    for order in orders[:3]:
        assert [t for t, _ in events_of(listener, order_id=order["order_id"])] == ["order.refunded"]
    assert [t for t, _ in events_of(listener, order_id=orders[3]["order_id"])] == ["order.cancelled"]
    assert [t for t, _ in events_of(listener, group_id=group_id)] == ["groupbuy.failed"]


def test_joining_refuses_unknown_groups_and_other_products(api):
    _, _, _, sku = group_shop(api, size=2, window_seconds=600)
    _, _, _, other_sku = group_shop(api, size=2, window_seconds=600)
    leader, joiner = api.register_user(), api.register_user()
    group_id = open_group(api, leader, sku)["group_id"]
    join(api, joiner, "grp_doesnotexist", sku, status=404)
    assert "sku_id" in join(api, joiner, group_id, other_sku, status=400)["error"]["fields"]
    assert group_of(api, group_id)["seats_left"] == 1  # the refused join gave its seat back
    _, _, _, plain_sku = open_shop(api)
    expect(api.post("/group-buys", json=dict(JOIN, sku_id=plain_sku), token=leader["token"]), 409)  # no offer


def _pay_in_own_session(api, user, order_id):
    client = Api(api.base_url[:-len("/api/v1")], api.admin_phone, api.admin_password)
    return client.post(f"/orders/{order_id}/pay", token=user["token"])


def _trade_no(mongo, order):
    return mongo["quanzi_orders"]["orders"].find_one({"_id": order["order_id"]})["trade_no"]


def _provider_refunds(mongo, trade_no):
    return [r["amount_fen"] for r in mongo["quanzi_sandbox_pay"]["refunds"].find({"trade_no": trade_no})]


def _assert(condition):
    assert condition


def test_a_products_open_groups_are_those_with_a_seat_left_closing_soonest_first(api, rpc):
    _, _, product, sku = group_shop(api, size=2, window_seconds=600)
    first, second, joiner = (api.register_user() for _ in range(3))
    full = open_group(api, first, sku)["group_id"]
    open_one = open_group(api, second, sku)["group_id"]
    join(api, joiner, full, sku)
    groups = rpc.orders.open_groups(product["product_id"])
    assert [(g["group_id"], g["seats_left"], g["price_fen"]) for g in groups] == [(open_one, 1, 3900)]
