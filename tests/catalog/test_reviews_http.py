"""Reviews people can read and merchants they can judge, over HTTP: a product's reviews newest first in pages, with
the reviewer's nickname and the merchant's one reply; a merchant's public profile rated over all its products'
reviews; only approved merchants have one."""
import uuid

from tests.flows import expect, product_payload
from tests.helpers import eventually
from tests.orders.shop import open_shop, pay, place, ship


def another_product(api, owner, merchant_id, price_fen=5000):
    return expect(api.post("/products", token=owner["token"], json=product_payload(
        merchant_id, title=f"Tieguanyin {uuid.uuid4().hex[:6]}", price_fen=price_fen)), 201)


def review(api, owner, product, rating, nickname, text=""):
    """A buyer called `nickname` buys `product`, receives it and reviews it."""
    buyer = api.register_user(nickname=nickname)
    order = place(api, buyer["token"], product["skus"][0]["sku_id"])
    pay(api, buyer["token"], order["order_id"])
    ship(api, owner["token"], order["order_id"])
    expect(api.post(f"/orders/{order['order_id']}/confirm-receipt", token=buyer["token"]), 200)
    body = {"order_id": order["order_id"], "rating": rating, "text": text}
    # the catalog learns of the completed order from its event
    return eventually(lambda: expect(api.post(f"/products/{product['product_id']}/reviews", json=body,
                                              token=buyer["token"]), 201), timeout=15)


def test_reviews_read_newest_first_in_pages_with_nicknames_and_one_merchant_reply(api):
    owner, merchant, product, _ = open_shop(api)
    other_owner, _, _, _ = open_shop(api)
    first = review(api, owner, product, 5, "茶友小林", "清香")
    second = review(api, owner, product, 3, "old hand", "a bit bitter")
    third = review(api, owner, product, 4, "第三位")
    pid = product["product_id"]
    # when anyone reads them two at a time
    page1 = expect(api.get(f"/products/{pid}/reviews", params={"limit": 2}), 200)
    page2 = expect(api.get(f"/products/{pid}/reviews", params={"limit": 2, "cursor": page1["next_cursor"]}), 200)
    # then newest first, with the reviewer's nickname, no buyer or order ids, and the end of the list says so
    assert [(r["review_id"], r["rating"], r["reviewer"]["nickname"]) for r in page1["items"] + page2["items"]] == [
        (third["review_id"], 4, "第三位"), (second["review_id"], 3, "old hand"), (first["review_id"], 5, "茶友小林")]
    assert page2["next_cursor"] is None
    assert all(set(r) == {"review_id", "rating", "text", "created_at", "reviewer", "reply"} for r in page1["items"])
    expect(api.get(f"/products/{pid}/reviews", params={"cursor": "not-a-cursor"}), 400)
    expect(api.get("/products/prd_doesnotexist/reviews"), 404)
    # when the merchant replies to the bitter one: once; nobody else may
    reply = {"text": "谢谢! try 85 °C water next time"}
    expect(api.post(f"/reviews/{second['review_id']}/reply", json=reply), 401)
    expect(api.post(f"/reviews/{second['review_id']}/reply", json=reply, token=other_owner["token"]), 403)
    expect(api.post(f"/reviews/{second['review_id']}/reply", json={"text": ""}, token=owner["token"]), 400)
    replied = expect(api.post(f"/reviews/{second['review_id']}/reply", json=reply, token=owner["token"]), 200)
    assert replied["reply"]["text"] == reply["text"]
    expect(api.post(f"/reviews/{second['review_id']}/reply", json={"text": "again"}, token=owner["token"]), 409)
    expect(api.post("/reviews/rev_doesnotexist/reply", json=reply, token=owner["token"]), 404)
    # then readers see the reply under that review only
    items = expect(api.get(f"/products/{pid}/reviews"), 200)["items"]
    assert [r["reply"] and r["reply"]["text"] for r in items] == [None, reply["text"], None]


def test_a_merchants_rating_is_the_mean_of_all_its_reviews_and_only_approved_merchants_show(api):
    owner, merchant, tea, _ = open_shop(api)
    mid = merchant["merchant_id"]
    # a merchant with nothing reviewed yet has a profile without an average
    profile = expect(api.get(f"/merchants/{mid}"), 200)
    assert profile["rating"] == {"average": None, "count": 0}
    assert (profile["name"], profile["status"]) == (merchant["name"], "approved") and "owner_id" not in profile
    # given two reviews of one product (5, 4) and one of another (1)
    cup = another_product(api, owner, mid)
    for product, rating in ((tea, 5), (tea, 4), (cup, 1)):
        review(api, owner, product, rating, "rater")
    # then the merchant's rating is over the 3 reviews: 10 / 3 = 3.33 (not the mean of product means, 2.75)
    profile = expect(api.get(f"/merchants/{mid}"), 200)
    assert profile["rating"] == {"average": 3.33, "count": 3}
    assert expect(api.get(f"/products/{tea['product_id']}"), 200)["rating"] == {"average": 4.5, "count": 2}
    # when an admin suspends the merchant its profile is gone (404), and back once reinstated
    admin = api.admin_token()
    expect(api.post(f"/admin/merchants/{mid}/suspend", json={"reason": "fake goods"}, token=admin), 200)
    expect(api.get(f"/merchants/{mid}"), 404)
    expect(api.get(f"/merchants/{mid}", token=owner["token"]), 404)
    expect(api.post(f"/admin/merchants/{mid}/approve", token=admin), 200)
    assert expect(api.get(f"/merchants/{mid}"), 200)["rating"]["count"] == 3
    # and pending, rejected or unknown merchants have no public profile
    applicant = api.register_user()
    pending = expect(api.post("/merchants", json={"name": "Not yet"}, token=applicant["token"]), 201)
    expect(api.get(f"/merchants/{pending['merchant_id']}"), 404)
    expect(api.post(f"/admin/merchants/{pending['merchant_id']}/reject", json={"reason": "no licence"},
                    token=admin), 200)
    expect(api.get(f"/merchants/{pending['merchant_id']}"), 404)
    expect(api.get("/merchants/mch_doesnotexist"), 404)
