"""The friend graph through the gateway: request, accept, decline, remove; mutual; one friendship when two users
ask each other at the same moment."""
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.flows import expect
from tests.helpers import Api
from tests.social.social_flows import SOCIAL_DB, friend_ids, unfriend


def test_a_request_accepted_makes_both_friends_and_unfriending_undoes_both(api, kombu_listener):
    events = kombu_listener("social_feed.events", ["friendship.created", "friendship.removed"])
    lin, mei = api.register_user(nickname="Lin"), api.register_user(nickname="Mei")
    # when Lin asks Mei
    request = expect(api.post("/friends/requests", json={"user_id": mei["user_id"]}, token=lin["token"]), 201)
    assert request == {**request, "from_user_id": lin["user_id"], "to_user_id": mei["user_id"], "status": "pending"}
    # then Mei sees the request waiting, nobody is friends yet
    waiting = expect(api.get("/friends/requests", token=mei["token"]), 200)
    assert [r["request_id"] for r in waiting["items"]] == [request["request_id"]]
    assert friend_ids(api, lin) == [] and friend_ids(api, mei) == []
    # when Mei accepts: friends both ways, with nickname
    accepted = expect(api.post(f"/friends/requests/{request['request_id']}/accept", token=mei["token"]), 200)
    assert accepted["status"] == "accepted"
    assert friend_ids(api, lin) == [mei["user_id"]] and friend_ids(api, mei) == [lin["user_id"]]
    assert expect(api.get("/friends", token=lin["token"]), 200)["items"][0]["nickname"] == "Mei"
    assert expect(api.get("/profile", token=mei["token"]), 200)["friend_count"] == 1
    assert expect(api.get("/friends/requests", token=mei["token"]), 200)["items"] == []
    # when Mei unfriends Lin: gone for both
    unfriend(api, mei, lin)
    assert friend_ids(api, lin) == [] and friend_ids(api, mei) == []
    assert expect(api.get("/profile", token=lin["token"]), 200)["friend_count"] == 0
    assert api.delete(f"/friends/{lin['user_id']}", token=mei["token"]).status_code == 404
    # and other teams heard both, with ids only
    pair = sorted([lin["user_id"], mei["user_id"]])
    for event_type in ("friendship.created", "friendship.removed"):
        event = events.wait_for(lambda e: e["type"] == event_type and e["data"]["user_ids"] == pair)
        assert set(event["data"]) == {"user_ids", "at"}


def test_declined_duplicate_self_and_unknown_requests(api):
    lin, mei = api.register_user(), api.register_user()
    request = expect(api.post("/friends/requests", json={"user_id": mei["user_id"]}, token=lin["token"]), 201)
    # asking twice, accepting one's own request, or a stranger answering it: refused
    assert api.post("/friends/requests", json={"user_id": mei["user_id"]}, token=lin["token"]).status_code == 409
    assert api.post(f"/friends/requests/{request['request_id']}/accept", token=lin["token"]).status_code == 404
    stranger = api.register_user()
    assert api.post(f"/friends/requests/{request['request_id']}/decline",
                    token=stranger["token"]).status_code == 404
    # Mei declines: no friendship, the request can't be accepted afterwards, Lin may ask again
    declined = expect(api.post(f"/friends/requests/{request['request_id']}/decline", token=mei["token"]), 200)
    assert declined["status"] == "declined"
    assert api.post(f"/friends/requests/{request['request_id']}/accept", token=mei["token"]).status_code == 409
    assert friend_ids(api, mei) == []
    again = expect(api.post("/friends/requests", json={"user_id": mei["user_id"]}, token=lin["token"]), 201)
    assert again["request_id"] != request["request_id"] and again["status"] == "pending"
    # oneself and nobody
    assert api.post("/friends/requests", json={"user_id": lin["user_id"]}, token=lin["token"]).status_code == 422
    assert api.post("/friends/requests", json={"user_id": "usr_nobody"}, token=lin["token"]).status_code == 404
    assert api.post("/friends/requests", json={"user_id": mei["user_id"]}).status_code == 401


def test_asking_someone_who_already_asked_you_makes_you_friends(api):
    lin, mei = api.register_user(), api.register_user()
    expect(api.post("/friends/requests", json={"user_id": mei["user_id"]}, token=lin["token"]), 201)
    crossed = expect(api.post("/friends/requests", json={"user_id": lin["user_id"]}, token=mei["token"]), 201)
    assert crossed["status"] == "accepted"
    assert friend_ids(api, lin) == [mei["user_id"]]
    assert api.post("/friends/requests", json={"user_id": mei["user_id"]}, token=lin["token"]).status_code == 409


def test_two_users_asking_each_other_at_the_same_moment_become_friends_once(stack, api, mongo, kombu_listener):
    events = kombu_listener("social_feed.events", ["friendship.created"])
    db = mongo[SOCIAL_DB]
    clients = [Api(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"]) for _ in range(2)]
    for _ in range(5):  # a race: give it several chances to interleave
        a, b = api.register_user(), api.register_user()
        barrier = threading.Barrier(2)

        def ask(client, me, other):
            barrier.wait()
            return client.post("/friends/requests", json={"user_id": other["user_id"]}, token=me["token"])
        with ThreadPoolExecutor(2) as pool:
            answers = [f.result() for f in [pool.submit(ask, clients[0], a, b), pool.submit(ask, clients[1], b, a)]]
        # then one request waited and the other accepted it: one friendship, counted once on each side
        assert sorted(r.status_code for r in answers) == [201, 201], [r.text for r in answers]
        assert sorted(r.json()["status"] for r in answers) == ["accepted", "pending"]
        assert friend_ids(api, a) == [b["user_id"]] and friend_ids(api, b) == [a["user_id"]]
        assert db.friendships.count_documents({"owner": {"$in": [a["user_id"], b["user_id"]]}}) == 2
        assert [p["friend_count"] for p in db.profiles.find({"_id": {"$in": [a["user_id"], b["user_id"]]}})] == [1, 1]
        pair = sorted([a["user_id"], b["user_id"]])
        events.wait_for(lambda e: e["data"]["user_ids"] == pair)
    for client in clients:
        client.session.close()
    # and every pair was announced exactly once
    pairs = [tuple(e["data"]["user_ids"]) for e in events.messages]
    assert len(pairs) == len(set(pairs)) == 5
