"""Social proof for a product page: which of my friends bought it (from order.paid) and which shared it."""
import copy
import json
import uuid

from contracts import make_envelope
from contracts.asyncapi import EXAMPLES
from tests.flows import expect, published_product
from tests.helpers import eventually
from tests.commission.bus import Bus
from tests.social.social_flows import befriend


def paid_event(buyer_id, product_id):
    data = copy.deepcopy(json.loads((EXAMPLES / "order.paid.json").read_text())["data"])
    data.update(order_id=f"ord_{uuid.uuid4().hex[:20]}", buyer_id=buyer_id)
    for line in data["lines"]:
        line["product_id"] = product_id
    return make_envelope("order.paid", data, subject=data["order_id"])


def test_a_viewer_sees_friends_who_bought_or_shared_and_nobody_else(api, rpc, stack):
    _, _, product = published_product(api)
    viewer, buyer, sharer, stranger = (api.register_user(nickname=n) for n in ("viewer", "buyer", "sharer", "x"))
    befriend(api, viewer, buyer)
    befriend(api, viewer, sharer)
    for user in (buyer, stranger):  # separate consent (PIPL): buyers who let friends see their purchases
        expect(api.patch("/me/privacy", json={"show_purchases_to_friends": True}, token=user["token"]), 200)
    # given a friend who paid for it (twice: counted once), a friend who shared it, and a stranger who did both
    bus = Bus(stack.amqp_uri)
    bus.deliver(paid_event(buyer["user_id"], product["product_id"]), times=2)  # redelivered: counted once
    bus.deliver(paid_event(buyer["user_id"], product["product_id"]))  # a second order: still one friend
    bus.deliver(paid_event(stranger["user_id"], product["product_id"]))
    bus.close()
    for user in (sharer, stranger):
        expect(api.post("/shares", json={"product_id": product["product_id"], "channel": "moments"},
                        token=user["token"]), 201)

    def proof_is_complete():
        proof = rpc.social_feed.social_proof(viewer["user_id"], product["product_id"])
        assert proof == {"friends_bought": [{"user_id": buyer["user_id"], "nickname": "buyer"}],
                         "friends_bought_count": 1,
                         "friends_shared": [{"user_id": sharer["user_id"], "nickname": "sharer"}],
                         "friends_shared_count": 1}
    eventually(proof_is_complete, timeout=10)
    # and someone with no friends sees nobody
    loner = api.register_user()
    assert rpc.social_feed.social_proof(loner["user_id"], product["product_id"])["friends_bought_count"] == 0
