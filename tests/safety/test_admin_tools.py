"""The admin's tools and the audit log: review queue by status, product takedown and restore (hidden from
search, page, share landing and moments' product cards), and an append-only record of every decision."""
import re
import uuid
from pathlib import Path

import pymongo
import pytest

from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import open_shop, pay, place, ship
from tests.social.social_flows import befriend


def audit(api, admin, **query):
    return expect(api.get("/admin/audit", params=query, token=admin), 200)["items"]


def test_the_review_queue_lists_merchants_by_status_and_every_decision_is_audited(api):
    admin = api.admin_token()
    applicants = [api.register_user() for _ in range(4)]
    ids = [expect(api.post("/merchants", json={"name": f"Shop {n}"}, token=a["token"]), 201)["merchant_id"]
           for n, a in enumerate(applicants)]
    pending = expect(api.get("/admin/merchants", params={"status": "pending", "limit": 100}, token=admin), 200)
    assert set(ids) <= {m["merchant_id"] for m in pending["items"]}
    # when the admin approves one, rejects one and suspends the approved one
    expect(api.post(f"/admin/merchants/{ids[0]}/approve", token=admin, headers={"X-Request-Id": "rv-approve"}), 200)
    expect(api.post(f"/admin/merchants/{ids[1]}/reject", json={"reason": "no licence"}, token=admin), 200)
    expect(api.post(f"/admin/merchants/{ids[0]}/suspend", json={"reason": "fake goods"}, token=admin), 200)
    # then the queue follows, page by page
    first = expect(api.get("/admin/merchants", params={"status": "pending", "limit": 1}, token=admin), 200)
    assert len(first["items"]) == 1 and first["next_cursor"]
    pending = expect(api.get("/admin/merchants", params={"status": "pending", "limit": 100}, token=admin), 200)
    assert {ids[2], ids[3]} <= {m["merchant_id"] for m in pending["items"]}
    assert not {ids[0], ids[1]} & {m["merchant_id"] for m in pending["items"]}
    suspended = expect(api.get("/admin/merchants", params={"status": "suspended", "limit": 100}, token=admin), 200)
    assert ids[0] in {m["merchant_id"] for m in suspended["items"]}
    assert api.get("/admin/merchants", params={"status": "closed"}, token=admin).status_code == 400
    # and each decision is in the audit log: who, what, which target, why, which request
    admin_id = expect(api.get("/me", token=admin), 200)["user_id"]
    on_first = audit(api, admin, target_id=ids[0])
    assert [(e["action"], e["actor_id"], e["reason"]) for e in on_first] == [
        ("merchant.suspend", admin_id, "fake goods"), ("merchant.approve", admin_id, None)]
    assert on_first[1]["request_id"] == "rv-approve"
    assert [e["action"] for e in audit(api, admin, target_id=ids[1])] == ["merchant.reject"]
    assert {e["target_id"] for e in audit(api, admin, actor_id=admin_id, limit=100)} >= {ids[0], ids[1]}
    # a refused decision (a pending merchant cannot be suspended) leaves no entry
    assert api.post(f"/admin/merchants/{ids[2]}/suspend", json={"reason": "x"}, token=admin).status_code == 409
    assert audit(api, admin, target_id=ids[2]) == []


def test_a_taken_down_product_disappears_everywhere_until_restored(api, stack, mongo):
    admin = api.admin_token()
    word = f"takedown{uuid.uuid4().hex[:8]}"
    owner, _, product, sku_id = open_shop(api)
    product_id = product["product_id"]
    expect(api.patch(f"/products/{product_id}", json={"title": f"Tea {word}"}, token=owner["token"]), 200)
    author, friend = api.register_user(), api.register_user()
    befriend(api, author, friend)
    share = expect(api.post("/shares", json={"product_id": product_id}, token=author["token"]), 201)["share_code"]
    moment_id = expect(api.post("/moments", json={"text": "好茶", "product_id": product_id},
                                token=author["token"]), 201)["moment_id"]

    def card_in_timeline():
        items = expect(api.get("/timeline", token=friend["token"]), 200)["items"]
        return next(m for m in items if m["moment_id"] == moment_id)["product"]

    def search():
        return [p["product_id"] for p in expect(api.get("/products", params={"q": word}), 200)["items"]]
    eventually(lambda: _true(card_in_timeline() is not None and search() == [product_id]))
    expect(api.get(f"/products/{product_id}", token=friend["token"]), 200)  # cached in the read model now
    # when the admin takes it down
    down = expect(api.post(f"/admin/products/{product_id}/takedown", json={"reason": "counterfeit"}, token=admin),
                  200)
    assert down["status"] == "hidden"
    # then it is gone from search, its page (404 to shoppers, signed in or not), its share link, the card
    assert search() == []
    assert api.get(f"/products/{product_id}").status_code == 404
    assert api.get(f"/products/{product_id}", token=friend["token"]).status_code == 404
    assert api.get(f"/s/{share}").status_code == 404
    eventually(lambda: _true(card_in_timeline() is None))
    # and once social-feed heard of it, opening the link records no click (nobody is bound to the sharer for it)
    clicks = mongo["quanzi_social_feed"]["share_clicks"]
    before = clicks.count_documents({"share_code": share})
    assert api.get(f"/s/{share}", token=friend["token"]).status_code == 404
    assert clicks.count_documents({"share_code": share}) == before
    # and nobody can order it; approving its merchant again does not bring it back
    assert api.post("/orders", json={"items": [{"sku_id": sku_id, "qty": 1}], "address": ADDRESS},
                    token=friend["token"]).status_code == 409
    assert api.post(f"/admin/products/{product_id}/takedown", json={"reason": "again"},
                    token=admin).status_code == 409
    # when restored, it is back everywhere
    expect(api.post(f"/admin/products/{product_id}/restore", token=admin), 200)
    assert search() == [product_id]
    expect(api.get(f"/products/{product_id}"), 200)
    eventually(lambda: _true(api.get(f"/s/{share}").status_code == 200))
    eventually(lambda: _true(card_in_timeline() == {"product_id": product_id, "share_code": card_share(api, friend,
                                                                                                         moment_id)}))
    assert [(e["action"], e["reason"]) for e in audit(api, admin, target_id=product_id)] == [
        ("product.restore", None), ("product.takedown", "counterfeit")]


def card_share(api, viewer, moment_id):
    return expect(api.get(f"/moments/{moment_id}", token=viewer["token"]), 200)["product"]["share_code"]


ADDRESS = {"recipient": "Li Lei", "phone": "13700001111", "region": "上海市", "detail": "1 Road"}


def test_refund_decisions_of_merchants_are_audited(api):
    admin = api.admin_token()
    owner, _, product, sku_id = open_shop(api)
    buyer = api.register_user()
    refunds = []
    for _ in range(2):
        order_id = place(api, buyer["token"], sku_id)["order_id"]
        pay(api, buyer["token"], order_id)
        ship(api, owner["token"], order_id)
        refunds.append(expect(api.post(f"/orders/{order_id}/refunds", json={"reason": "damaged", "amount_fen": 100},
                                       token=buyer["token"]), 201)["refund_id"])
    expect(api.post(f"/refunds/{refunds[0]}/approve", token=owner["token"]), 200)
    expect(api.post(f"/refunds/{refunds[1]}/reject", json={"reason": "seal intact"}, token=owner["token"]), 200)
    assert [(e["action"], e["actor_id"]) for e in audit(api, admin, target_id=refunds[0])] == [
        ("refund.approve", owner["user_id"])]
    assert [(e["action"], e["reason"]) for e in audit(api, admin, target_id=refunds[1])] == [
        ("refund.reject", "seal intact")]
    assert {e["target_id"] for e in audit(api, admin, actor_id=owner["user_id"])} == set(refunds)


def test_the_audit_log_is_append_only(stack):
    # no code path of the gateway changes or deletes an entry
    source = "\n".join(p.read_text() for p in Path("services/gateway/gateway").rglob("*.py"))
    assert not re.search(r"\baudit\.(update|delete|replace|find_one_and|bulk_write|drop)", source)
    # and MongoDB refuses an entry that does not say who did what, when and why (the collection's validator)
    collection = pymongo.MongoClient(stack.mongo_uri).quanzi_gateway.audit
    with pytest.raises(pymongo.errors.WriteError):
        collection.insert_one({"_id": "aud_bad", "action": "merchant.approve"})


def _true(condition):
    assert condition
