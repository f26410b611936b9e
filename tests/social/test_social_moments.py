"""Moments (朋友圈) through the gateway: who sees what in timelines and detail views, the mutual-friends rule for
likes and comments, unfriending at once, new friends, deletion, likes once per user, pagination."""
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.flows import expect
from tests.helpers import Api, eventually
from tests.social.social_flows import (SOCIAL_DB, befriend, detail_status, post, timeline_ids, unfriend)


def wait_in_timeline(api, user, moment_id, timeout=10):
    def arrived():
        assert moment_id in timeline_ids(api, user)
    eventually(arrived, timeout=timeout)


def test_visibility_matrix_in_timelines_and_detail_views(api):
    author, friend, stranger, ex_friend = (api.register_user(nickname=n)
                                           for n in ("author", "friend", "stranger", "ex"))
    befriend(api, author, friend)
    befriend(api, ex_friend, author)
    # given one moment of each visibility, fanned out while the ex-friend was still a friend
    private = post(api, author, "only me", visibility="private")
    friends = post(api, author, "friends only", visibility="friends")
    public = post(api, author, "everyone", visibility="public")
    wait_in_timeline(api, ex_friend, friends)
    wait_in_timeline(api, ex_friend, public)
    wait_in_timeline(api, friend, public)
    wait_in_timeline(api, friend, friends)
    # when the ex-friend is unfriended
    unfriend(api, author, ex_friend)
    # then each sees exactly this, newest first: timelines carry own and friends' moments only
    assert timeline_ids(api, author) == [public, friends, private]
    assert timeline_ids(api, friend) == [public, friends]
    assert timeline_ids(api, stranger) == []
    assert timeline_ids(api, ex_friend) == []
    # and a detail view opens for whoever may see it; the rest get 404 (nothing revealed)
    can_open = {
        "author": {private, friends, public},
        "friend": {friends, public},
        "stranger": {public},
        "ex_friend": {public},
    }
    for name, viewer in (("author", author), ("friend", friend), ("stranger", stranger), ("ex_friend", ex_friend)):
        for moment_id in (private, friends, public):
            expected = 200 if moment_id in can_open[name] else 404
            assert detail_status(api, viewer, moment_id) == expected, (name, moment_id)
    # the author's album follows the same rule
    album = {name: [m["moment_id"] for m in expect(api.get(f"/users/{author['user_id']}/moments",
                                                           token=viewer["token"]), 200)["items"]]
             for name, viewer in (("author", author), ("friend", friend), ("stranger", stranger))}
    assert album == {"author": [public, friends, private], "friend": [public, friends], "stranger": [public]}


def test_mutual_friends_rule_for_comments_and_likes(api):
    a, b, c = (api.register_user(nickname=n) for n in ("A", "B", "C"))
    befriend(api, a, b)
    befriend(api, a, c)  # B and C are A's friends, not each other's
    moment = post(api, a, "周末爬山 hiking")
    # when B likes and comments
    expect(api.post(f"/moments/{moment}/likes", token=b["token"]), 201)
    expect(api.post(f"/moments/{moment}/comments", json={"text": "带上我 take me"}, token=b["token"]), 201)

    def seen_by(user):
        view = expect(api.get(f"/moments/{moment}", token=user["token"]), 200)
        return [x["user_id"] for x in view["likes"]], [(x["author"]["user_id"], x["text"]) for x in view["comments"]]
    # then A and B see B's like and comment, C sees neither
    assert seen_by(a) == ([b["user_id"]], [(b["user_id"], "带上我 take me")])
    assert seen_by(b) == ([b["user_id"]], [(b["user_id"], "带上我 take me")])
    assert seen_by(c) == ([], [])
    # when C comments too: A sees both (in order), B and C each only their own
    expect(api.post(f"/moments/{moment}/comments", json={"text": "me too"}, token=c["token"]), 201)
    assert seen_by(a)[1] == [(b["user_id"], "带上我 take me"), (c["user_id"], "me too")]
    assert seen_by(b)[1] == [(b["user_id"], "带上我 take me")]
    assert seen_by(c)[1] == [(c["user_id"], "me too")]
    # and a stranger can neither open, like nor comment on a friends-only moment
    stranger = api.register_user()
    assert api.post(f"/moments/{moment}/likes", token=stranger["token"]).status_code == 404
    assert api.post(f"/moments/{moment}/comments", json={"text": "hi"}, token=stranger["token"]).status_code == 404


def test_unfriending_hides_old_moments_at_once_and_refriending_shows_them_again(api):
    reader, writer = api.register_user(), api.register_user()
    befriend(api, reader, writer)
    old = post(api, writer, "before")
    wait_in_timeline(api, reader, old)
    # when the reader unfriends: gone from the very next read, no waiting
    unfriend(api, reader, writer)
    assert timeline_ids(api, reader) == []
    assert detail_status(api, reader, old) == 404
    # a moment posted in between reaches nobody's timeline but the writer's
    between = post(api, writer, "while apart")
    assert timeline_ids(api, writer) == [between, old]
    # when they are friends again: both moments, newest first (documented rule: friends see each other's older
    # non-private moments, the latest 50 are put into the timeline)
    befriend(api, writer, reader)
    eventually(lambda: _assert_equal(timeline_ids(api, reader), [between, old]), timeout=10)
    assert detail_status(api, reader, between) == 200


def _assert_equal(actual, expected):
    assert actual == expected


def test_new_friends_see_each_others_older_moments_but_never_private_ones(api):
    a, b = api.register_user(), api.register_user()
    older = post(api, a, "a year ago", visibility="friends")
    hidden = post(api, a, "diary", visibility="private")
    mine = post(api, b, "hello")
    befriend(api, a, b)
    eventually(lambda: _assert_equal(timeline_ids(api, b), [mine, older]), timeout=10)
    eventually(lambda: _assert_equal(timeline_ids(api, a), [mine, hidden, older]), timeout=10)
    assert detail_status(api, b, hidden) == 404


def test_a_deleted_moment_disappears_everywhere_and_only_its_author_may_delete(api):
    author, friend = api.register_user(), api.register_user()
    befriend(api, author, friend)
    moment = post(api, author, "oops")
    wait_in_timeline(api, friend, moment)
    assert api.delete(f"/moments/{moment}", token=friend["token"]).status_code == 404
    expect(api.delete(f"/moments/{moment}", token=author["token"]), 204)
    assert timeline_ids(api, friend) == [] and timeline_ids(api, author) == []
    assert detail_status(api, author, moment) == 404
    assert api.delete(f"/moments/{moment}", token=author["token"]).status_code == 404


def test_a_hundred_simultaneous_likes_by_one_user_make_one_like(stack, api, mongo):
    author, fan = api.register_user(), api.register_user()
    befriend(api, author, fan)
    moment = post(api, author, "like me")
    local = threading.local()

    def like(_):
        if not hasattr(local, "api"):
            local.api = Api(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"])
        return local.api.post(f"/moments/{moment}/likes", token=fan["token"]).status_code
    with ThreadPoolExecutor(25) as pool:
        statuses = list(pool.map(like, range(100)))
    assert statuses == [201] * 100
    assert mongo[SOCIAL_DB].likes.count_documents({"moment_id": moment}) == 1
    view = expect(api.get(f"/moments/{moment}", token=author["token"]), 200)
    assert [like["user_id"] for like in view["likes"]] == [fan["user_id"]]
    # taking it back removes it; the fan's timeline says whether they like it
    wait_in_timeline(api, fan, moment)
    assert expect(api.get("/timeline", token=fan["token"]), 200)["items"][0]["liked_by_me"] is True
    expect(api.delete(f"/moments/{moment}/likes", token=fan["token"]), 204)
    assert expect(api.get(f"/moments/{moment}", token=author["token"]), 200)["likes"] == []


def test_timeline_pages_newest_first_with_a_cursor(api):
    reader, writer = api.register_user(), api.register_user()
    befriend(api, reader, writer)
    posted = [post(api, writer, f"#{i}") for i in range(7)]
    wait_in_timeline(api, reader, posted[-1])
    deleted = posted[3]
    expect(api.delete(f"/moments/{deleted}", token=writer["token"]), 204)
    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = expect(api.get("/timeline", params=params, token=reader["token"]), 200)
        assert len(page["items"]) <= 2
        seen += [m["moment_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [m for m in reversed(posted) if m != deleted]
    assert cursor is None
    assert api.get("/timeline", params={"cursor": "garbage"}, token=reader["token"]).status_code == 400
