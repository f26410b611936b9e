"""PIPL rights: separate consent for showing purchases to friends (honoured retroactively), the export of
everything held about a user, and erasure (DELETE /me) checked in every service's database."""
import json
import uuid

from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import open_shop, pay
from tests.social.social_flows import befriend


def test_friends_see_a_purchase_only_while_the_buyer_consents(api, rpc):
    _, _, product, sku_id = open_shop(api)
    buyer, viewer = api.register_user(), api.register_user()
    befriend(api, buyer, viewer)
    assert expect(api.get("/me/privacy", token=buyer["token"]), 200) == {"show_purchases_to_friends": False}
    order_id = expect(api.post("/orders", json={"items": [{"sku_id": sku_id, "qty": 1}], "address": ADDRESS},
                               token=buyer["token"]), 201)["order_id"]
    pay(api, buyer["token"], order_id)

    def bought():
        return rpc.social_feed.social_proof(viewer["user_id"], product["product_id"])["friends_bought_count"]
    # the purchase is known (order.paid) but not shown: consent is off by default
    eventually(lambda: _true(rpc.social_feed.export_user(buyer["user_id"])["collections"]["purchases"]))
    assert bought() == 0
    # when the buyer turns it on, the earlier purchase shows; when off again, it is hidden again
    assert expect(api.patch("/me/privacy", json={"show_purchases_to_friends": True}, token=buyer["token"]),
                  200) == {"show_purchases_to_friends": True}
    assert bought() == 1
    expect(api.patch("/me/privacy", json={"show_purchases_to_friends": False}, token=buyer["token"]), 200)
    assert bought() == 0
    assert api.patch("/me/privacy", json={"show_purchases_to_friends": "yes"}, token=buyer["token"]).status_code == 400


ADDRESS = {"recipient": "Li Lei", "phone": "13700001111", "region": "上海市", "detail": "1 Road"}


def holders(mongo, *needles):
    """(database, collection, needle) for every document of every Quanzi database holding one of `needles`."""
    found = []
    for db_name in mongo.list_database_names():
        if not db_name.startswith("quanzi_"):
            continue
        for collection in mongo[db_name].list_collection_names():
            for doc in mongo[db_name][collection].find():
                text = json.dumps(doc, default=str, ensure_ascii=False)
                found += [(db_name, collection, n) for n in needles if n in text]
    return found


def test_export_holds_everything_and_erasure_leaves_no_phone_nickname_or_address_anywhere(
        api, mongo, kombu_listener):
    listener = kombu_listener("social_feed.events", ["user.deleted"])
    owner, _, product, sku_id = open_shop(api)
    tag = uuid.uuid4().hex[:8]
    user = api.register_user(nickname=f"erase{tag}")
    friend = api.register_user()
    befriend(api, user, friend)
    address = {"recipient": f"R{tag}", "phone": api.new_phone(), "region": "浙江省 杭州市", "detail": f"Lane {tag}"}
    # given a user with an order (placed with an Idempotency-Key, kept with the order and its address), a
    # moment, a comment on a friend's moment, a share, and a friend
    order = expect(api.post("/orders", json={"items": [{"sku_id": sku_id, "qty": 1}], "address": address},
                            token=user["token"], headers={"Idempotency-Key": f"k-{tag}"}), 201)
    pay(api, user["token"], order["order_id"])
    # a review of the completed order (the catalog keeps the reviewer's nickname with it)
    expect(api.post(f"/orders/{order['order_id']}/ship", json={"carrier": "SF", "tracking_no": f"SF{tag}"},
                    token=owner["token"]), 200)
    expect(api.post(f"/orders/{order['order_id']}/confirm-receipt", token=user["token"]), 200)
    review = eventually(lambda: expect(api.post(f"/products/{product['product_id']}/reviews",
                                                json={"order_id": order["order_id"], "rating": 5, "text": "good"},
                                                token=user["token"]), 201), timeout=15, interval=0.5)
    # (posted with an Idempotency-Key: the gateway keeps its answer, with the author's nickname, until erasure)
    expect(api.post("/moments", json={"text": f"my moment {tag}"}, token=user["token"],
                    headers={"Idempotency-Key": f"m-{tag}"}), 201)
    friends_moment = expect(api.post("/moments", json={"text": "hi"}, token=friend["token"]), 201)["moment_id"]
    expect(api.post(f"/moments/{friends_moment}/comments", json={"text": f"comment {tag}"}, token=user["token"]), 201)
    expect(api.post("/shares", json={"product_id": product["product_id"]}, token=user["token"]), 201)
    needles = (user["phone"], user["nickname"], address["phone"], address["recipient"], address["detail"])
    # when the user exports their data, then it holds them, from every service
    export = expect(api.get("/me/export", token=user["token"]), 200)
    text = json.dumps(export, ensure_ascii=False)
    assert all(n in text for n in needles), [n for n in needles if n not in text]
    assert "password_hash" not in text and "scrypt$" not in text
    assert export["account"]["phone"] == user["phone"]
    assert {s["service"] for s in export["services"]} == {"gateway", "catalog", "orders", "social_feed", "commission"}
    assert holders(mongo, *needles)  # the databases hold them now (the check below can fail)
    # a wrong password erases nothing
    assert api.delete("/me", json={"password": "wrong"}, token=user["token"]).status_code == 401
    # when the user erases the account
    expect(api.request("DELETE", "/me", json={"password": user["password"]}, token=user["token"]), 204)
    # then they cannot sign in, their token is dead, and every service hears of it
    assert api.post("/auth/login", json={"phone": user["phone"], "password": user["password"]}).status_code == 401
    assert api.get("/me", token=user["token"]).status_code == 401
    event = listener.wait_for(lambda body: body["data"]["user_id"] == user["user_id"])
    assert set(event["data"]) == {"user_id", "deleted_at"}
    # and no collection of any service holds their phone, nickname or address
    eventually(lambda: _equal(holders(mongo, *needles), []), timeout=15, interval=0.5)
    # the friend's friendship and timeline are gone too; the order is kept, de-identified, for the merchant
    assert expect(api.get("/friends", token=friend["token"]), 200)["items"] == []
    kept = expect(api.get(f"/orders/{order['order_id']}", token=owner["token"]), 200)
    assert kept["status"] == "completed" and kept["address"] is None and kept["total_fen"] == order["total_fen"]
    # the review stays (its rating is part of the product's), without a name
    reviews = expect(api.get(f"/products/{product['product_id']}/reviews"), 200)["items"]
    assert [r["reviewer"]["nickname"] for r in reviews if r["review_id"] == review["review_id"]] == [None]
    # the phone may register again, as a new person
    again = api.post("/auth/register", json={"phone": user["phone"], "password": "another-pw-1", "nickname": "new"})
    assert again.status_code == 201 and again.json()["user_id"] != user["user_id"]


def _true(condition):
    assert condition


def _equal(actual, expected):
    assert actual == expected, actual
