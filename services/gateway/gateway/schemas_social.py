"""Response schemas of the social routes (profiles, friends, moments, timelines, shares). Request bodies and
queries are contracts.api.social_feed, so the edge and the service apply one rule."""
from marshmallow import Schema, fields, validate

from gateway.schemas import ProductSummary, page_of
from kit.validation import Id


class UserCard(Schema):
    user_id = Id(required=True)
    nickname = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)


class SocialProfile(UserCard):
    created_at = fields.String()
    inviter_id = Id(allow_none=True, metadata={"description": "only in your own profile"})
    friend_count = fields.Integer(metadata={"description": "only in your own profile"})


class FriendRequest(Schema):
    request_id = Id(required=True)
    from_user_id = Id()
    to_user_id = Id()
    status = fields.String(validate=validate.OneOf(["pending", "accepted", "declined"]),
                           metadata={"description": "accepted at once when the other had already asked you"})
    created_at = fields.String()


FriendRequestPage = page_of(FriendRequest)


class Friend(UserCard):
    since = fields.String()


FriendPage = page_of(Friend)


class ProductCard(Schema):
    product_id = Id(required=True)
    share_code = fields.String(allow_none=True, metadata={"description": "the author's share link for it"})


class Moment(Schema):
    moment_id = Id(required=True)
    author = fields.Nested(UserCard)
    text = fields.String()
    images = fields.List(fields.String())
    product = fields.Nested(ProductCard, allow_none=True)
    visibility = fields.String(validate=validate.OneOf(["friends", "public", "private"]))
    created_at = fields.String()
    liked_by_me = fields.Boolean()


class MomentLike(UserCard):
    liked_at = fields.String()


class MomentComment(Schema):
    comment_id = Id(required=True)
    author = fields.Nested(UserCard)
    text = fields.String()
    created_at = fields.String()


class CommentPosted(MomentComment):
    """(Its own name: MomentComment is also nested in MomentDetail, and OpenAPI names must be unique.)"""


class MomentDetail(Moment):
    likes = fields.List(fields.Nested(MomentLike), metadata={"description": "only likes by you and your friends"})
    comments = fields.List(fields.Nested(MomentComment), metadata={"description": "only by you and your friends"})


MomentPage = page_of(Moment)


class MomentCreated(Schema):
    moment_id = Id(required=True)
    share_code = fields.String(allow_none=True)


class Liked(Schema):
    moment_id = Id(required=True)
    liked = fields.Boolean()


class Share(Schema):
    share_code = fields.String(required=True, metadata={"example": "aZ3kP9qLm2"})
    url = fields.String(required=True)
    sharer_id = Id()
    product_id = Id()
    channel = fields.String()
    created_at = fields.String()


class ShareLanding(Schema):
    share_code = fields.String(required=True)
    sharer_id = Id()
    product = fields.Nested(ProductSummary)
