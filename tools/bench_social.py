"""`make bench` rows of the social feed (tools/bench.py calls run(ctx)).

- GET /timeline for a reader with 10 friends and for one with 5,000 (wrk), and the p50 ratio (target ≤ 1.5);
- the time from POST /moments by a 5,000-friend user until the moment is in all 5,000 timelines (target ≤ 2 s).

The 5,000-friend graph is seeded in bulk with the store's own document builders; posts, fan-out and reads go
through the running services."""
import os
import statistics
import sys
import threading
import time
import uuid

import pymongo
import requests

from tools.flows import SOCIAL_DB, befriend, expect, post
from tools.stack import SERVICES

FRIENDS = 5000
PAGE = 20
FAN_OUT_SAMPLES = 5


def _store_builders():
    sys.path.insert(0, str(next(s.path for s in SERVICES if s.name == "social_feed")))
    from social_feed import domain
    from social_feed.store import friend_edges, new_profile
    return domain, friend_edges, new_profile


def seed_star(api, db):
    """A registered user with FRIENDS friends (seeded ids), whose timeline holds a few pages of friends' moments."""
    domain, friend_edges, new_profile = _store_builders()
    star = api.register_user(nickname="bench star")
    tag = uuid.uuid4().hex[:8]
    friends = [f"usr_bench{tag}{i:04d}" for i in range(FRIENDS)]
    since = domain.now()
    db.profiles.insert_many([{**new_profile(f, f"fan{i}"), "friend_count": 1} for i, f in enumerate(friends)])
    db.friendships.insert_many([e for f in friends for e in friend_edges(star["user_id"], f, since)])
    db.profiles.update_one({"_id": star["user_id"]}, {"$inc": {"friend_count": FRIENDS}})
    return star, friends


def timeline_row(ctx, name, user, seconds):
    path = f"/api/v1/timeline?limit={PAGE}"
    headers = {"Authorization": f"Bearer {user['token']}"}
    try:
        row = ctx.wrk(name, [path], seconds=seconds, headers=headers)
    except RuntimeError:  # no wrk: Python clients, one session per thread
        local = threading.local()

        def read():
            if not hasattr(local, "session"):
                local.session = requests.Session()
                local.session.trust_env = False
            response = local.session.get(ctx.gateway_url + path, headers=headers, timeout=10)
            if response.status_code != 200 or len(response.json()["items"]) != PAGE:
                raise RuntimeError(response.status_code)
        row = ctx.measure(name, read, seconds=seconds)
    return row


def wait_full_page(api, user, timeout=30):
    deadline = time.monotonic() + timeout
    while len(expect(api.get("/timeline", params={"limit": PAGE}, token=user["token"]), 200)["items"]) < PAGE:
        if time.monotonic() > deadline:
            raise TimeoutError("timeline never filled")
        time.sleep(0.2)


def fan_out_time(api, db, star, friends):
    """Seconds from sending POST /moments until the moment is in every friend's timeline."""
    started = time.monotonic()
    moment = post(api, star, "bench fan-out", visibility="friends")
    entries = [f"{f}:{moment}" for f in friends]
    while db.timelines.count_documents({"_id": {"$in": entries}}) < len(entries):
        if time.monotonic() - started > 60:
            raise TimeoutError(f"fan-out of {moment} not done after 60 s")
        time.sleep(0.02)
    return time.monotonic() - started


def run(ctx):
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    api = ctx.api
    client = pymongo.MongoClient(ctx.mongo_uri)
    db = client[SOCIAL_DB]
    try:
        # a reader with 10 friends, each posting 3 moments (a full page and more)
        reader = api.register_user(nickname="bench reader")
        for i in range(10):
            friend = api.register_user()
            befriend(api, friend, reader)
            for n in range(3):
                post(api, friend, f"moment {n} of friend {i}")
        # a reader with 5,000 friends, 30 of whose friends post once (through the service: seeded users have no
        # password, the RPC is what the gateway would call for them)
        star, friends = seed_star(api, db)
        for friend in friends[:30]:
            ctx.rpc.social_feed.post_moment(friend, {"text": "hello star"})
        wait_full_page(api, reader)
        wait_full_page(api, star)

        small = timeline_row(ctx, "GET /timeline (reader with 10 friends)", reader, seconds)
        big = timeline_row(ctx, "GET /timeline (reader with 5,000 friends)", star, seconds)
        ratio = round(big["p50_ms"] / small["p50_ms"], 2) if small.get("p50_ms") and big.get("p50_ms") else None
        rows = [small, big, {"name": "GET /timeline p50 ratio 5,000 / 10 friends", "rps": None, "p50_ms": ratio,
                             "p99_ms": None, "errors": 0, "tool": "", "note": f"ratio {ratio} (target <= 1.5)"}]

        times = [fan_out_time(api, db, star, friends) for _ in range(FAN_OUT_SAMPLES)]
        rows.append({"name": "POST /moments -> in all 5,000 timelines", "rps": None,
                     "p50_ms": round(1000 * statistics.median(times), 1), "p99_ms": round(1000 * max(times), 1),
                     "errors": 0, "tool": f"{FAN_OUT_SAMPLES} posts, p99 = max",
                     "note": "target <= 2000 ms"})
        return rows
    finally:
        client.close()
