"""`make demo`: the demo is loaded through the public API, and loading it again adds nothing."""
from tests.flows import expect
from tests.helpers import eventually
from tools import demo


def test_the_demo_loads_a_whole_social_shop_through_the_api_and_a_second_run_adds_nothing(api, stack):
    first = demo.load(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"], say=lambda _: None)
    token = {phone: api.login(phone, demo.PASSWORD) for phone in demo.ACCOUNTS}

    def world():
        orders = {phone: expect(api.get("/orders", params={"limit": 50}, token=t), 200)["items"]
                  for phone, t in token.items()}
        moments = expect(api.get("/timeline", params={"limit": 50}, token=token["13700000002"]), 200)["items"]
        products = {p["product_id"] for p in first["products"].values()}
        return orders, moments, products

    orders, moments, products = world()
    statuses = {o["status"] for items in orders.values() for o in items}
    # orders in every status a shop sees, group buys formed and open, friends' moments with product cards
    assert {"completed", "shipped", "paid", "pending_payment", "cancelled", "refund_requested",
            "awaiting_group"} <= statuses, statuses
    assert len(products) == len(demo.PRODUCTS) and all(p["images"][0].startswith("/media/demo-")
                                                       for p in first["products"].values())
    assert any(m["product"] and m["author"]["nickname"] == "小美" for m in moments)
    # the sharer earns on what her friend bought through her link
    def earned():
        summary = expect(api.get("/commissions/summary", token=token["13700000001"]), 200)
        assert summary["pending_fen"] + summary["frozen_fen"] > 0
    eventually(earned, timeout=20, interval=0.5)
    # the pictures are served by the gateway
    picture = api.session.get(f"{stack.gateway_url}/media/demo-longjing.svg")
    assert picture.status_code == 200 and picture.headers["Content-Type"].startswith("image/svg+xml")

    again = demo.load(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"], say=lambda _: None)
    orders_after, moments_after, _ = world()
    assert {p: [o["order_id"] for o in items] for p, items in orders_after.items()} == \
        {p: [o["order_id"] for o in items] for p, items in orders.items()}
    assert [m["moment_id"] for m in moments_after] == [m["moment_id"] for m in moments]
    assert again["shares"] == first["shares"]
    assert {k: v["product_id"] for k, v in again["products"].items()} == \
        {k: v["product_id"] for k, v in first["products"].items()}
