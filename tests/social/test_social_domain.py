"""Social-feed rules without I/O: visibility, the mutual-friends rule, inviters, friend requests, share codes,
cursors and input schemas."""
from datetime import datetime, timezone

import pytest

from contracts.api import social_feed as api
from kit.errors import Conflict, InvalidInput, NotFound, RuleRefused
from kit.validation import load
from social_feed import domain

AUTHOR, FRIEND, STRANGER = "usr_author", "usr_friend", "usr_stranger"


def moment(visibility, deleted=False):
    return {"_id": "mom_1", "author_id": AUTHOR, "visibility": visibility, "deleted": deleted}


# Who may open (detail view) and who finds it in their timeline, for every visibility.
# (viewer, is the viewer the author's friend now, visibility) -> (opens, in timeline)
MATRIX = [
    (AUTHOR, False, "friends", True, True), (AUTHOR, False, "public", True, True),
    (AUTHOR, False, "private", True, True),
    (FRIEND, True, "friends", True, True), (FRIEND, True, "public", True, True),
    (FRIEND, True, "private", False, False),
    (STRANGER, False, "friends", False, False), (STRANGER, False, "public", True, False),
    (STRANGER, False, "private", False, False),
]


@pytest.mark.parametrize("viewer, is_friend, visibility, opens, in_timeline", MATRIX)
def test_visibility_matrix(viewer, is_friend, visibility, opens, in_timeline):
    assert domain.can_open(viewer, moment(visibility), is_friend) is opens
    assert domain.in_timeline(viewer, moment(visibility), is_friend) is in_timeline


@pytest.mark.parametrize("viewer", [AUTHOR, FRIEND, STRANGER])
def test_a_deleted_moment_is_gone_for_everyone(viewer):
    assert not domain.can_open(viewer, moment("public", deleted=True), True)
    assert not domain.in_timeline(viewer, moment("public", deleted=True), True)
    assert not domain.in_timeline(viewer, None, True)  # an entry whose moment is missing


def test_album_shows_what_the_relationship_allows():
    assert domain.album_visibilities(AUTHOR, AUTHOR, False) == ["friends", "public", "private"]
    assert domain.album_visibilities(FRIEND, AUTHOR, True) == ["friends", "public"]
    assert domain.album_visibilities(STRANGER, AUTHOR, False) == ["public"]


def test_only_non_private_moments_fan_out():
    assert domain.fans_out(moment("friends")) and domain.fans_out(moment("public"))
    assert not domain.fans_out(moment("private"))


def test_mutual_friends_rule_keeps_the_viewers_own_and_their_friends_comments():
    comments = [{"user_id": "usr_a"}, {"user_id": "usr_b"}, {"user_id": "usr_c"}]
    # viewer c is friends with a only: sees a's and their own, not b's
    assert domain.shown_to("usr_c", comments, {"usr_a"}) == [{"user_id": "usr_a"}, {"user_id": "usr_c"}]
    assert domain.shown_to("usr_z", comments, set()) == []


def test_nobody_is_their_own_inviter():
    with pytest.raises(RuleRefused) as refused:
        domain.check_inviter("usr_a", "usr_a", [])
    assert "share_code" in refused.value.fields


def test_no_invitation_cycles_however_long():
    # a invited b, b invited c: neither c nor b may become a's inviter
    domain.check_inviter("usr_a", "usr_x", ["usr_y"])  # unrelated: fine
    with pytest.raises(RuleRefused):
        domain.check_inviter("usr_a", "usr_b", ["usr_a"])
    with pytest.raises(RuleRefused):
        domain.check_inviter("usr_a", "usr_c", ["usr_b", "usr_a"])


def test_friend_requests_are_answered_by_their_recipient_once():
    request = {"_id": "frq_1", "from_id": "usr_a", "to_id": "usr_b", "status": "pending"}
    assert domain.request_decision(request, "usr_b", "accept") == "accepted"
    assert domain.request_decision(request, "usr_b", "decline") == "declined"
    with pytest.raises(NotFound):
        domain.request_decision(request, "usr_a", "accept")  # the sender cannot accept their own
    with pytest.raises(NotFound):
        domain.request_decision(None, "usr_b", "accept")
    with pytest.raises(Conflict):
        domain.request_decision({**request, "status": "accepted"}, "usr_b", "accept")


def test_befriending_oneself_and_the_friend_cap():
    with pytest.raises(RuleRefused):
        domain.check_befriend("usr_a", "usr_a")
    domain.check_capacity(domain.MAX_FRIENDS - 1)
    with pytest.raises(Conflict):
        domain.check_capacity(domain.MAX_FRIENDS)


def test_pairs_and_edges():
    assert domain.pair_key("usr_b", "usr_a") == domain.pair_key("usr_a", "usr_b") == "usr_a:usr_b"
    assert domain.edge_id("usr_a", "usr_b") != domain.edge_id("usr_b", "usr_a")


def test_share_codes_are_short_base62_and_do_not_repeat():
    codes = {domain.new_share_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(domain.is_share_code(c) and len(c) == 10 for c in codes)
    assert not domain.is_share_code("short") and not domain.is_share_code("abc$%^&*()")


def test_a_product_card_carries_the_authors_own_share_code_for_that_product():
    share = {"_id": "Ab12Cd34Ef", "sharer_id": AUTHOR, "product_id": "prd_1"}
    domain.check_product_card(AUTHOR, share, "prd_1")
    domain.check_product_card(AUTHOR, share, None)
    for author, product_id, shared in ((STRANGER, "prd_1", share), (AUTHOR, "prd_2", share), (AUTHOR, None, None)):
        with pytest.raises(InvalidInput) as bad:
            domain.check_product_card(author, shared, product_id)
        assert "share_code" in bad.value.fields


def test_cursor_round_trip_and_refusal():
    at = datetime(2026, 11, 22, 8, 0, 0, 123000, tzinfo=timezone.utc)
    assert domain.decode_cursor(domain.encode_cursor(at, "mom_ab_12")) == (at, "mom_ab_12")
    assert domain.decode_cursor(None) is None
    for bad in ("", "abc", "12", "x_mom", "1_$gt", "1_a:b"):
        with pytest.raises(InvalidInput):
            domain.decode_cursor(bad)


def test_now_is_truncated_to_what_mongo_stores():
    assert domain.now().microsecond % 1000 == 0


GOOD_MOMENT = {"text": "新茶到了", "images": ["https://img.example.com/a.jpg"], "visibility": "public"}


@pytest.mark.parametrize("field, change", [
    ("text", {"text": "x" * 2001}),
    ("images", {"images": ["javascript:alert(1)"]}),
    ("images", {"images": ["http://img.example.com/a.jpg"]}),
    ("images", {"images": ["https://img.example.com/a.jpg"] * 10}),
    ("visibility", {"visibility": "everyone"}),
    ("text", {"text": {"$gt": ""}}),
    ("product_id", {"product_id": {"$ne": None}}),
    ("share_code", {"share_code": "../../etc"}),
    ("text", {"text": "  ", "images": []}),
    ("author_id", {"author_id": "usr_someone_else"}),
])
def test_bad_moments_name_the_field(field, change):
    with pytest.raises(InvalidInput) as bad:
        load(api.MomentInput, {**GOOD_MOMENT, **change})
    assert field in bad.value.fields


def test_a_moment_defaults_to_friends_and_nine_images_are_fine():
    loaded = load(api.MomentInput, {"images": ["https://img.example.com/a.jpg"] * 9})
    assert loaded["visibility"] == "friends" and loaded["text"] == "" and len(loaded["images"]) == 9
