"""Malformed social input at the edge: 400 naming the offending field, nothing written, never a 500."""
import pytest

from tests.flows import expect
from tests.social.social_flows import SOCIAL_DB, befriend, post

OPERATOR = {"$gt": ""}
GOOD = {"text": "今天天气不错", "images": ["https://img.example.com/a.jpg"], "visibility": "friends"}

MOMENT_CASES = [
    ("text", {"text": "字" * 2001}),
    ("text", {"text": OPERATOR}),
    ("text", {"text": 42}),
    ("images", {"images": ["javascript:alert(1)"]}),
    ("images", {"images": ["http://img.example.com/a.jpg"]}),
    ("images", {"images": ["data:image/png;base64,AAAA"]}),
    ("images", {"images": ["https://img.example.com/a.jpg"] * 10}),
    ("images", {"images": "https://img.example.com/a.jpg"}),
    ("visibility", {"visibility": "everyone"}),
    ("visibility", {"visibility": OPERATOR}),
    ("product_id", {"product_id": OPERATOR}),
    ("share_code", {"share_code": {"$ne": None}}),
    ("text", {"text": "", "images": []}),
    ("author_id", {"author_id": "usr_someone_else"}),
    ("$where", {"$where": "sleep(1000)"}),
]


@pytest.fixture(scope="module")
def author(api):
    return api.register_user(nickname="careful")


@pytest.mark.parametrize("field, change", MOMENT_CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(MOMENT_CASES)])
def test_bad_moments_are_refused_and_nothing_is_written(api, mongo, author, field, change):
    response = api.post("/moments", json={**GOOD, **change}, token=author["token"])
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["fields"]
    db = mongo[SOCIAL_DB]
    assert db.moments.count_documents({"author_id": author["user_id"]}) == 0
    assert db.timelines.count_documents({"owner": author["user_id"]}) == 0


def test_nine_https_images_are_fine(api, author):
    friend = api.register_user()
    moment = post(api, friend, images=["https://img.example.com/a.jpg"] * 9, visibility="public")
    assert len(expect(api.get(f"/moments/{moment}", token=author["token"]), 200)["images"]) == 9


@pytest.fixture(scope="module")
def moment_of_friend(api, author):
    friend = api.register_user()
    befriend(api, author, friend)
    return post(api, friend, "comment on me")


OTHER_CASES = [
    ("POST", "/moments/{moment}/comments", {"text": "x" * 501}, "text"),
    ("POST", "/moments/{moment}/comments", {"text": ""}, "text"),
    ("POST", "/moments/{moment}/comments", {"text": OPERATOR}, "text"),
    ("POST", "/friends/requests", {"user_id": OPERATOR}, "user_id"),
    ("POST", "/friends/requests", {"user_id": "usr_../../x"}, "user_id"),
    ("POST", "/shares", {"product_id": OPERATOR}, "product_id"),
    ("POST", "/shares", {"product_id": "prd_1", "channel": "carrier-pigeon"}, "channel"),
    ("PATCH", "/profile", {"avatar_url": "javascript:alert(1)"}, "avatar_url"),
    ("PATCH", "/profile", {"avatar_url": "http://img.example.com/me.jpg"}, "avatar_url"),
    ("PATCH", "/profile", {"nickname": "n" * 31}, "nickname"),
    ("PATCH", "/profile", {"inviter_id": "usr_me"}, "inviter_id"),
    ("POST", "/profile/inviter", {"share_code": OPERATOR}, "share_code"),
    ("GET", "/timeline?limit=0", None, "limit"),
    ("GET", "/timeline?limit=1000", None, "limit"),
    ("GET", "/friends?cursor=x", None, "cursor"),
]


@pytest.mark.parametrize("method, path, body, field", OTHER_CASES,
                         ids=[f"{m}{p.split('?')[0]}-{f}-{i}" for i, (m, p, _, f) in enumerate(OTHER_CASES)])
def test_other_bad_social_input_is_refused_and_nothing_is_written(api, mongo, author, moment_of_friend, method, path,
                                                                   body, field):
    db = mongo[SOCIAL_DB]
    before = {name: db[name].count_documents({}) for name in ("comments", "friend_requests", "shares")}
    profile = db.profiles.find_one({"_id": author["user_id"]})
    response = api.request(method, path.format(moment=moment_of_friend), json=body, token=author["token"])
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["fields"]
    assert {name: db[name].count_documents({}) for name in before} == before
    assert db.profiles.find_one({"_id": author["user_id"]}) == profile
