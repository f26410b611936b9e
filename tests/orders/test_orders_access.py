"""Who sees and acts on an order: its buyer, its merchant (the address to these two only), an admin; anyone else
gets 404, as if it did not exist; a buyer acting as merchant gets 403."""
from tests.flows import expect
from tests.orders.shop import ADDRESS, open_shop, pay, place, ship


def test_orders_are_visible_to_their_buyer_their_merchant_and_admins_only(api):
    owner, merchant, _, sku = open_shop(api)
    other_owner, other_merchant, _, _ = open_shop(api)
    buyer, stranger = api.register_user(), api.register_user()
    order = place(api, buyer["token"], sku)
    oid = order["order_id"]
    # the buyer and the merchant see it with the address; an admin sees it without
    assert expect(api.get(f"/orders/{oid}", token=buyer["token"]), 200)["address"] == ADDRESS
    assert expect(api.get(f"/orders/{oid}", token=owner["token"]), 200)["address"] == ADDRESS
    assert "address" not in expect(api.get(f"/orders/{oid}", token=api.admin_token()), 200)
    # another buyer, another merchant: it does not exist for them
    for token in (stranger["token"], other_owner["token"]):
        assert expect(api.get(f"/orders/{oid}", token=token), 404)["error"]["code"] == "not_found"
        expect(api.post(f"/orders/{oid}/pay", token=token), 404)
        expect(api.post(f"/orders/{oid}/cancel", token=token), 404)
    pay(api, buyer["token"], oid)
    for token in (stranger["token"], other_owner["token"]):
        ship(api, token, oid, status=404)
    # the buyer may see it but is not its merchant: shipping is forbidden
    assert ship(api, buyer["token"], oid, status=403)["error"]["code"] == "forbidden"
    # the merchant may not act as the buyer either
    expect(api.post(f"/orders/{oid}/refunds", json={"reason": "x"}, token=owner["token"]), 403)
    # nothing changed through all that
    assert expect(api.get(f"/orders/{oid}", token=buyer["token"]), 200)["status"] == "paid"
    # signed out: 401
    expect(api.get(f"/orders/{oid}"), 401)
    expect(api.post("/orders", json={"items": [{"sku_id": sku, "qty": 1}], "address": ADDRESS}), 401)


def test_lists_show_a_merchant_its_own_orders_and_a_buyer_their_own(api):
    owner, merchant, _, sku = open_shop(api)
    other_owner, other_merchant, _, _ = open_shop(api)
    buyer, stranger = api.register_user(), api.register_user()
    first, second = place(api, buyer["token"], sku), place(api, stranger["token"], sku)
    ids = lambda page: [o["order_id"] for o in page["items"]]  # noqa: E731
    mine = expect(api.get("/orders", token=buyer["token"]), 200)
    assert ids(mine) == [first["order_id"]]
    theirs = expect(api.get("/orders", params={"merchant_id": merchant["merchant_id"]}, token=owner["token"]), 200)
    assert ids(theirs) == [second["order_id"], first["order_id"]]  # newest first
    page = expect(api.get("/orders", params={"merchant_id": merchant["merchant_id"], "limit": 1},
                          token=owner["token"]), 200)
    rest = expect(api.get("/orders", params={"merchant_id": merchant["merchant_id"], "cursor": page["next_cursor"]},
                          token=owner["token"]), 200)
    assert ids(page) + ids(rest) == ids(theirs) and rest["next_cursor"] is None
    # someone else's merchant or someone else's purchases
    expect(api.get("/orders", params={"merchant_id": merchant["merchant_id"]}, token=other_owner["token"]), 404)
    expect(api.get("/orders", params={"buyer_id": buyer["user_id"]}, token=stranger["token"]), 403)
    by_admin = expect(api.get("/orders", params={"buyer_id": buyer["user_id"]}, token=api.admin_token()), 200)
    assert ids(by_admin) == [first["order_id"]]
    expect(api.get("/orders", params={"cursor": "garbage"}, token=buyer["token"]), 400)
