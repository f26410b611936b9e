"""Share links and inviters through the gateway: clicks recorded and announced (ids only, CloudEvents envelope),
registration through a link, first-touch inviters without self-invites or cycles, registration undone when the
profile cannot be made."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.flows import expect, published_product
from tests.helpers import Api, eventually
from tests.social.social_flows import SOCIAL_DB, metric, no_personal_data, post

ENVELOPE_KEYS = {"specversion", "id", "type", "source", "subject", "time", "datacontenttype", "dataschema",
                 "schemaversion", "data"}


def share_of(api, user, product_id, **fields):
    return expect(api.post("/shares", json={"product_id": product_id, **fields}, token=user["token"]), 201)


def test_opening_a_share_link_counts_the_click_returns_the_product_and_tells_other_teams(api, mongo, kombu_listener):
    events = kombu_listener("social_feed.events", ["share.created", "share.clicked"])
    _, _, product = published_product(api, title="Anji white tea 安吉白茶")
    sharer, viewer = api.register_user(), api.register_user()
    # when a user shares a product
    share = share_of(api, sharer, product["product_id"], channel="wechat")
    code = share["share_code"]
    assert len(code) == 10 and code.isalnum() and share["url"].endswith(f"/s/{code}") and "/api/" not in share["url"]
    assert share == {**share, "sharer_id": sharer["user_id"], "product_id": product["product_id"], "channel": "wechat"}
    # and someone opens the link signed out, then a signed-in viewer opens it
    anonymous = expect(api.get(f"/s/{code}"), 200)
    signed_in = expect(api.get(f"/s/{code}", token=viewer["token"]), 200)
    # then both get the product summary
    for landing in (anonymous, signed_in):
        assert landing["sharer_id"] == sharer["user_id"]
        assert landing["product"] == {**landing["product"], "product_id": product["product_id"],
                                      "title": "Anji white tea 安吉白茶", "min_price_fen": 9900}
    # and both clicks are kept, the anonymous one counted too
    kept = mongo[SOCIAL_DB].share_clicks.find({"share_code": code})
    assert sorted((c["viewer_id"] or "") for c in kept) == ["", viewer["user_id"]]
    # and an independent subscriber got share.created once and each click once, as CloudEvents with ids only
    clicks = lambda: [m for m in events.messages if m["type"] == "share.clicked" and m["subject"] == code]  # noqa
    eventually(lambda: _count(clicks(), 2), timeout=10)
    time.sleep(1)  # anything duplicated would have arrived by now
    assert len(clicks()) == 2 and len({m["id"] for m in clicks()}) == 2
    created = [m for m in events.messages if m["type"] == "share.created" and m["subject"] == code]
    assert len(created) == 1
    assert created[0]["data"] == {"share_code": code, "sharer_id": sharer["user_id"],
                                  "product_id": product["product_id"], "channel": "wechat",
                                  "created_at": created[0]["data"]["created_at"]}
    for message in clicks() + created:
        assert set(message) == ENVELOPE_KEYS
        assert message["specversion"] == "1.0" and message["source"] == "/quanzi/social_feed"
        assert message["dataschema"] == f"urn:quanzi:events:{message['type']}:v1"
        no_personal_data(message, sharer, viewer)
    assert sorted((m["data"]["viewer_id"] or "") for m in clicks()) == ["", viewer["user_id"]]
    for message in clicks():
        assert set(message["data"]) == {"share_code", "sharer_id", "viewer_id", "product_id", "clicked_at"}
        assert message["data"]["sharer_id"] == sharer["user_id"]
        assert message["data"]["product_id"] == product["product_id"]


def _count(items, n):
    assert len(items) == n


def test_unknown_share_links_and_products(api, mongo):
    sharer = api.register_user()
    assert api.get("/s/0000000000").status_code == 404
    assert api.get("/s/$where").status_code == 404
    assert api.post("/shares", json={"product_id": "prd_doesnotexist"}, token=sharer["token"]).status_code == 404
    assert mongo[SOCIAL_DB].shares.count_documents({"sharer_id": sharer["user_id"]}) == 0
    assert api.post("/shares", json={"product_id": "prd_x"}).status_code == 401


def test_a_moment_with_a_product_card_carries_the_authors_share_code(api):
    _, _, product = published_product(api)
    author, other = api.register_user(), api.register_user()
    made = expect(api.post("/moments", json={"text": "好喝", "product_id": product["product_id"]},
                           token=author["token"]), 201)
    view = expect(api.get(f"/moments/{made['moment_id']}", token=author["token"]), 200)
    assert view["product"] == {"product_id": product["product_id"], "share_code": made["share_code"]}
    # the card's link works and points at the author
    assert expect(api.get(f"/s/{made['share_code']}"), 200)["sharer_id"] == author["user_id"]
    # an own share code may be given; someone else's may not
    own = share_of(api, author, product["product_id"])["share_code"]
    again = expect(api.post("/moments", json={"share_code": own}, token=author["token"]), 201)
    assert again["share_code"] == own
    refused = api.post("/moments", json={"text": "mine now", "share_code": own}, token=other["token"])
    assert refused.status_code == 422 and "share_code" in refused.json()["error"]["fields"]


def test_registering_through_a_share_link_makes_the_sharer_the_inviter(api, kombu_listener):
    events = kombu_listener("social_feed.events", ["user.joined"])
    _, _, product = published_product(api)
    sharer = api.register_user()
    code = share_of(api, sharer, product["product_id"])["share_code"]
    # when a newcomer registers through the link, and another with a link that does not exist
    invited = api.register_user(share_code=code)
    uninvited = api.register_user(share_code="ZZZZZZZZZZ")
    # then the first has the sharer as inviter; the unknown code was ignored (registration never blocked by it)
    assert expect(api.get("/profile", token=invited["token"]), 200)["inviter_id"] == sharer["user_id"]
    assert expect(api.get("/profile", token=uninvited["token"]), 200)["inviter_id"] is None
    # and every feature works at once: the newcomer posts and befriends
    post(api, invited, "hello")
    expect(api.post("/friends/requests", json={"user_id": sharer["user_id"]}, token=invited["token"]), 201)
    # and user.joined told other teams who invited whom, with ids only
    joined = events.wait_for(lambda e: e["data"]["user_id"] == invited["user_id"])
    assert joined["data"] == {"user_id": invited["user_id"], "inviter_id": sharer["user_id"], "share_code": code,
                              "joined_at": joined["data"]["joined_at"]}
    no_personal_data(joined, invited, sharer)
    assert events.wait_for(lambda e: e["data"]["user_id"] == uninvited["user_id"])["data"]["inviter_id"] is None


def test_an_inviter_is_set_once_never_oneself_and_never_in_a_cycle(api):
    _, _, product = published_product(api)
    a = api.register_user(nickname="A")
    code_a = share_of(api, a, product["product_id"])["share_code"]
    b = api.register_user(nickname="B", share_code=code_a)  # A invited B
    code_b = share_of(api, b, product["product_id"])["share_code"]
    c = api.register_user(nickname="C")
    # A cannot be their own inviter, nor be invited by B (A invited B)
    own = api.post("/profile/inviter", json={"share_code": code_a}, token=a["token"])
    assert own.status_code == 422 and "share_code" in own.json()["error"]["fields"]
    assert api.post("/profile/inviter", json={"share_code": code_b}, token=a["token"]).status_code == 422
    # C, who registered without a link, binds B's: fine, once
    bound = expect(api.post("/profile/inviter", json={"share_code": code_b}, token=c["token"]), 200)
    assert bound["inviter_id"] == b["user_id"]
    assert api.post("/profile/inviter", json={"share_code": code_a}, token=c["token"]).status_code == 409
    assert api.post("/profile/inviter", json={"share_code": code_b}, token=b["token"]).status_code == 409
    # nor can A be invited by C: A → B → C → A would be a cycle
    code_c = share_of(api, c, product["product_id"])["share_code"]
    assert api.post("/profile/inviter", json={"share_code": code_c}, token=a["token"]).status_code == 422
    assert expect(api.get("/profile", token=a["token"]), 200)["inviter_id"] is None
    assert api.post("/profile/inviter", json={"share_code": "NoSuchCode"}, token=a["token"]).status_code == 404


def test_two_users_binding_each_other_at_once_cannot_make_a_cycle(stack, api):
    _, _, product = published_product(api)
    clients = [Api(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"]) for _ in range(2)]
    for _ in range(3):
        a, b = api.register_user(), api.register_user()
        code_a = share_of(api, a, product["product_id"])["share_code"]
        code_b = share_of(api, b, product["product_id"])["share_code"]
        barrier = threading.Barrier(2)

        def bind(client, user, code):
            barrier.wait()
            return client.post("/profile/inviter", json={"share_code": code}, token=user["token"]).status_code
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(f.result() for f in [pool.submit(bind, clients[0], a, code_b),
                                                   pool.submit(bind, clients[1], b, code_a)])
        # then one binding won and the other saw it: exactly one of them has the other as inviter
        assert statuses == [200, 422]
        inviters = {u["user_id"]: expect(api.get("/profile", token=u["token"]), 200)["inviter_id"] for u in (a, b)}
        assert inviters in ({a["user_id"]: b["user_id"], b["user_id"]: None},
                            {a["user_id"]: None, b["user_id"]: a["user_id"]})
    for client in clients:
        client.session.close()


def test_registration_is_undone_when_the_profile_cannot_be_made(stack, api, mongo):
    social = stack.services["social_feed"]
    social.stop()
    try:
        # when someone registers while social-feed is down
        phone, nickname = api.new_phone(), f"nobody{time.time_ns() % 10**9}"
        refused = api.post("/auth/register", json={"phone": phone, "password": "Pw1-secret", "nickname": nickname},
                           timeout=30)
        # then they are told to try again, and no credentials are left behind
        assert refused.status_code == 503, refused.text
        assert api.post("/auth/login", json={"phone": phone, "password": "Pw1-secret"}).status_code == 401
    finally:
        social.start()
        social.wait_healthy()
    # and the request that waited in the queue meanwhile is refused as expired when the service is back
    eventually(lambda: _at_least(metric(social, "quanzi_rpc_errors_total", service="social_feed",
                                        method="create_profile", error="Conflict"), 1), timeout=15)
    assert mongo[SOCIAL_DB].profiles.count_documents({"nickname": nickname}) == 0
    # the same phone number registers fine now
    assert api.post("/auth/register", json={"phone": phone, "password": "Pw1-secret",
                                            "nickname": nickname}).status_code == 201


def _at_least(value, minimum):
    assert value >= minimum
