"""A user with 5,000 friends: the post reaches every timeline, redelivered fan-out work duplicates nothing, a
timeline page costs the same as with 10 friends, and nobody gets past 5,000.

The graph is seeded in bulk with the store's own document builders (5,000 HTTP round trips would test nothing
more); the post, the fan-out and the reads go through the running service."""
import time
import uuid

import pytest

from social_feed import domain
from social_feed.store import TIMELINE_QUERY, friend_edges, new_profile
from tests.flows import expect
from tests.helpers import eventually
from tests.social.social_flows import SOCIAL_DB, befriend, metric, post, publish_event, timeline_ids

FRIENDS = 5000


@pytest.fixture(scope="module")
def star(api, mongo):
    """A registered user with 5,000 friends: one registered fan (made friends through the API) and 4,999 seeded."""
    db = mongo[SOCIAL_DB]
    star, fan = api.register_user(nickname="star"), api.register_user(nickname="fan")
    befriend(api, fan, star)
    tag = uuid.uuid4().hex[:8]
    seeded = [f"usr_seed{tag}{i:04d}" for i in range(FRIENDS - 1)]
    since = domain.now()
    db.profiles.insert_many([{**new_profile(user_id, f"seed{i}"), "friend_count": 1}
                             for i, user_id in enumerate(seeded)])
    db.friendships.insert_many([edge for user_id in seeded for edge in friend_edges(star["user_id"], user_id, since)])
    db.profiles.update_one({"_id": star["user_id"]}, {"$inc": {"friend_count": len(seeded)}})
    assert expect(api.get("/profile", token=star["token"]), 200)["friend_count"] == FRIENDS
    return {"user": star, "fan": fan, "seeded": seeded}


def test_a_post_by_a_user_with_5000_friends_reaches_every_timeline_once(api, rpc, mongo, stack, star):
    db = mongo[SOCIAL_DB]
    # when the star posts
    started = time.monotonic()
    moment = post(api, star["user"], "新品上市 new arrivals", visibility="public")

    def everywhere():
        assert db.timelines.count_documents({"moment_id": moment}) == FRIENDS + 1  # + the star's own
    eventually(everywhere, timeout=30, interval=0.2)
    took = time.monotonic() - started
    # then the registered fan sees it through the gateway, and seeded friends through the service
    assert timeline_ids(api, star["fan"])[0] == moment
    for friend in (star["seeded"][0], star["seeded"][2500], star["seeded"][-1]):
        assert [m["moment_id"] for m in rpc.social_feed.timeline(friend, {})["items"]] == [moment]
    print(f"fan-out to {FRIENDS} timelines done {took:.2f}s after the POST")

    # when the fan-out work is delivered again: the same event (an outbox relay re-publishing after a crash) and
    # a copy under a new id (as a retry after a partial write would run it: the dedupe marker cannot help)
    social = stack.services["social_feed"]
    labels = {"service": "social_feed", "type": "moment.posted"}
    duplicates_before = metric(social, "quanzi_events_consumed_total", outcome="duplicate", **labels)
    envelope = db.outbox.find_one({"type": "moment.posted", "subject": moment})["envelope"]
    copy_id = str(uuid.uuid4())
    publish_event(stack.amqp_uri, envelope)
    publish_event(stack.amqp_uri, {**envelope, "id": copy_id})

    def both_handled():
        assert db.processed_events.find_one({"_id": f"social_feed.fan_out_moment:{copy_id}"})
        assert metric(social, "quanzi_events_consumed_total", outcome="duplicate", **labels) == duplicates_before + 1
    eventually(both_handled, timeout=20)
    # then every timeline still has it exactly once
    assert db.timelines.count_documents({"moment_id": moment}) == FRIENDS + 1
    owners = db.timelines.aggregate([{"$match": {"moment_id": moment}}, {"$group": {"_id": "$owner", "n": {"$sum": 1}}},
                                     {"$match": {"n": {"$gt": 1}}}])
    assert list(owners) == []
    assert timeline_ids(api, star["fan"]).count(moment) == 1
    assert metric(social, "quanzi_events_consumed_total", outcome="dead_lettered", **labels) == 0


def page_cost(db, read):
    """(queries, documents examined, index keys examined) of one timeline page, from MongoDB's profiler."""
    since = db.command("isMaster")["localTime"]
    db.command("profile", 2)
    try:
        read()
    finally:
        db.command("profile", 0)
    ops = list(db["system.profile"].find({"command.comment": TIMELINE_QUERY, "ts": {"$gte": since}}))
    return len(ops), sum(op.get("docsExamined", 0) for op in ops), sum(op.get("keysExamined", 0) for op in ops)


def test_a_timeline_page_costs_the_same_with_10_and_5000_friends(api, rpc, mongo, star):
    db = mongo[SOCIAL_DB]
    limit = 10
    # given a reader with 10 friends, each posting twice
    reader = api.register_user(nickname="reader")
    friends = [api.register_user() for _ in range(10)]
    for friend in friends:
        befriend(api, friend, reader)
    last = [post(api, friend, f"{n} from {i}") for n in range(2) for i, friend in enumerate(friends)][-1]
    # and the star's 5,000-friend timeline, topped with two moments from each of 10 seeded friends
    star_last = [rpc.social_feed.post_moment(friend, {"text": f"{n} from seed"})["moment_id"]
                 for n in range(2) for friend in star["seeded"][:10]][-1]
    eventually(lambda: _first(timeline_ids(api, reader), last), timeout=15)
    eventually(lambda: _first(timeline_ids(api, star["user"]), star_last), timeout=15)
    # when each reads a page
    small = page_cost(db, lambda: rpc.social_feed.timeline(reader["user_id"], {"limit": limit}))
    big = page_cost(db, lambda: rpc.social_feed.timeline(star["user"]["user_id"], {"limit": limit}))
    # then the database does the same work for both: same queries and documents examined, about the same index
    # keys (a point lookup that misses may or may not step on neighbouring keys: seen to differ by up to 12 for a
    # page of 10), all bounded by the page size, never by the number of friends (5,000 here)
    assert small[:2] == big[:2] and abs(small[2] - big[2]) <= 2 * limit, (small, big)
    for queries, docs, keys in (small, big):
        assert queries == 5  # timeline entries, moments, friendships, author profiles, own likes
        assert docs <= 4 * 2 * limit and keys <= 6 * 2 * limit


def _first(ids, moment_id):
    assert ids and ids[0] == moment_id


def test_nobody_gets_past_5000_friends(api, star):
    newcomer = api.register_user()
    # the star can ask nobody more
    assert api.post("/friends/requests", json={"user_id": newcomer["user_id"]},
                    token=star["user"]["token"]).status_code == 409
    # a newcomer may ask, but accepting would make 5,001
    request = expect(api.post("/friends/requests", json={"user_id": star["user"]["user_id"]},
                              token=newcomer["token"]), 201)
    refused = api.post(f"/friends/requests/{request['request_id']}/accept", token=star["user"]["token"])
    assert refused.status_code == 409 and "5000" in refused.json()["error"]["message"]
    assert expect(api.get("/profile", token=star["user"]["token"]), 200)["friend_count"] == FRIENDS
    assert expect(api.get("/profile", token=newcomer["token"]), 200)["friend_count"] == 0
    # after one unfriending there is room again
    expect(api.delete(f"/friends/{star['seeded'][-1]}", token=star["user"]["token"]), 204)
    expect(api.post(f"/friends/requests/{request['request_id']}/accept", token=star["user"]["token"]), 200)
    assert expect(api.get("/profile", token=star["user"]["token"]), 200)["friend_count"] == FRIENDS
