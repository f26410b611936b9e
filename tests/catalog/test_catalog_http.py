"""Merchants and products through the gateway: the review flow, search, and who may do what."""
import uuid

from tests.helpers import eventually
from tests.flows import approved_merchant, expect, product_payload, published_product


def unique_title(word):
    return f"{word} {uuid.uuid4().hex[:8]}"


def test_merchant_applies_admin_approves_product_is_searchable(api):
    # given a user who applies to sell
    owner = api.register_user(nickname="tea seller")
    merchant = expect(api.post("/merchants", json={"name": "Lin's Tea", "description": "Hangzhou"},
                               token=owner["token"]), 201)
    assert merchant["status"] == "pending"
    # when an admin approves and the owner publishes a product
    approved = expect(api.post(f"/admin/merchants/{merchant['merchant_id']}/approve", token=api.admin_token()), 200)
    assert approved["status"] == "approved"
    title = unique_title("Tieguanyin 铁观音")
    product = expect(api.post("/products", json=product_payload(merchant["merchant_id"], title=title, price_fen=5800,
                                                                 stock=7), token=owner["token"]), 201)
    # then anyone finds it by a word, by a Chinese phrase, by category, and can open it
    word = title.split()[-1]
    found = expect(api.get("/products", params={"q": word}), 200)
    assert [p["product_id"] for p in found["items"]] == [product["product_id"]]
    assert found["items"][0]["min_price_fen"] == 5800
    assert product["product_id"] in [p["product_id"] for p in
                                     expect(api.get("/products", params={"q": f"观音 {word}"}), 200)["items"]]
    assert expect(api.get("/products", params={"q": f"普洱 {word}"}), 200)["items"] == []
    page = expect(api.get(f"/products/{product['product_id']}"), 200)
    assert page["skus"][0]["stock"] == 7 and page["skus"][0]["price_fen"] == 5800
    assert page["rating"] == {"average": None, "count": 0}
    # and the owner sees the merchant on their profile, phone whole
    me = expect(api.get("/me", token=owner["token"]), 200)
    assert me["phone"] == owner["phone"]
    assert [m["merchant_id"] for m in me["merchants"]] == [merchant["merchant_id"]]


def test_search_pages_with_a_cursor_newest_first(api):
    owner, merchant = approved_merchant(api)
    tag = uuid.uuid4().hex[:8]
    ids = [expect(api.post("/products", json=product_payload(merchant["merchant_id"], title=f"Puer {tag} #{i}"),
                           token=owner["token"]), 201)["product_id"] for i in range(5)]
    first = expect(api.get("/products", params={"q": tag, "limit": 2}), 200)
    second = expect(api.get("/products", params={"q": tag, "limit": 2, "cursor": first["next_cursor"]}), 200)
    third = expect(api.get("/products", params={"q": tag, "limit": 2, "cursor": second["next_cursor"]}), 200)
    seen = [p["product_id"] for page in (first, second, third) for p in page["items"]]
    assert seen == list(reversed(ids))
    assert third["next_cursor"] is None


def test_a_shopper_cannot_create_products(api):
    shopper = api.register_user()
    _, other_merchant = approved_merchant(api)
    # with someone else's merchant: it does not exist for them
    response = api.post("/products", json=product_payload(other_merchant["merchant_id"]), token=shopper["token"])
    assert response.status_code == 404
    # with their own merchant still pending review: not allowed yet
    pending = expect(api.post("/merchants", json={"name": "Pending"}, token=shopper["token"]), 201)
    response = api.post("/products", json=product_payload(pending["merchant_id"]), token=shopper["token"])
    assert response.status_code == 403
    # signed out: 401
    assert api.post("/products", json=product_payload(pending["merchant_id"])).status_code == 401


def test_a_merchant_cannot_touch_another_merchants_product(api):
    _, _, product = published_product(api)
    rival, _ = approved_merchant(api, name="Rival")
    response = api.patch(f"/products/{product['product_id']}", json={"title": "hijacked"}, token=rival["token"])
    assert response.status_code == 404
    assert expect(api.get(f"/products/{product['product_id']}"), 200)["title"] != "hijacked"


def test_owner_updates_price_and_stock_and_the_page_shows_it_at_once(api):
    owner, _, product = published_product(api, price_fen=1000, stock=5)
    sku_id = product["skus"][0]["sku_id"]
    expect(api.get(f"/products/{product['product_id']}"), 200)  # warm the gateway's read model
    updated = expect(api.patch(f"/products/{product['product_id']}", token=owner["token"],
                               json={"skus": [{"sku_id": sku_id, "price_fen": 1200, "stock_delta": 3}]}), 200)
    assert updated["skus"][0] == {**updated["skus"][0], "price_fen": 1200, "stock": 8}
    page = expect(api.get(f"/products/{product['product_id']}"), 200)
    assert page["skus"][0]["price_fen"] == 1200 and page["min_price_fen"] == 1200
    # stock can't be taken below zero
    response = api.patch(f"/products/{product['product_id']}", token=owner["token"],
                         json={"skus": [{"sku_id": sku_id, "stock_delta": -9}]})
    assert response.status_code == 409


def test_only_admins_review_merchants(api):
    owner = api.register_user()
    merchant = expect(api.post("/merchants", json={"name": "Shop"}, token=owner["token"]), 201)
    assert api.post(f"/admin/merchants/{merchant['merchant_id']}/approve", token=owner["token"]).status_code == 403
    assert api.post(f"/admin/merchants/{merchant['merchant_id']}/approve").status_code == 401
    rejected = expect(api.post(f"/admin/merchants/{merchant['merchant_id']}/reject", json={"reason": "no licence"},
                               token=api.admin_token()), 200)
    assert rejected == {**rejected, "status": "rejected", "reason": "no licence"}
    # a rejected application cannot be approved afterwards (apply again instead)
    assert api.post(f"/admin/merchants/{merchant['merchant_id']}/approve",
                    token=api.admin_token()).status_code == 409
    assert api.post("/admin/merchants/mch_doesnotexist/approve", token=api.admin_token()).status_code == 404


def test_suspending_a_merchant_hides_its_products_at_once(api):
    owner, merchant, product = published_product(api, title=unique_title("Oolong"))
    word = product["title"].split()[-1]
    assert len(expect(api.get("/products", params={"q": word}), 200)["items"]) == 1
    expect(api.get(f"/products/{product['product_id']}"), 200)  # cached in the gateway's read model
    # when an admin suspends the merchant
    expect(api.post(f"/admin/merchants/{merchant['merchant_id']}/suspend", json={"reason": "fake goods"},
                    token=api.admin_token()), 200)
    # then search no longer shows the product, and the page is gone for shoppers (the read model was told)
    assert expect(api.get("/products", params={"q": word}), 200)["items"] == []

    def page_is_gone():
        assert api.get(f"/products/{product['product_id']}").status_code == 404
    eventually(page_is_gone, timeout=5)
    # its owner still sees it, marked hidden; reinstating shows it again
    assert expect(api.get(f"/products/{product['product_id']}", token=owner["token"]), 200)["status"] == "hidden"
    expect(api.post(f"/admin/merchants/{merchant['merchant_id']}/approve", token=api.admin_token()), 200)
    assert len(expect(api.get("/products", params={"q": word}), 200)["items"]) == 1
