"""HTTP schemas owned by the gateway (auth, responses, errors). Request bodies that are a service's RPC
payload are its RPC contract (e.g. contracts.api.catalog.ProductInput), so the edge, the service and the OpenAPI
document apply one rule; the gateway never imports a service's package."""
from marshmallow import Schema, fields, validate

from kit.validation import Id, StrictSchema

Phone = fields.String(required=True, validate=validate.Regexp(r"^1[3-9]\d{9}$", error="Not a mainland mobile number."))


class RegisterBody(StrictSchema):
    phone = Phone
    password = fields.String(required=True, load_only=True, validate=validate.Length(8, 128))
    nickname = fields.String(required=True, validate=validate.Length(1, 30))
    share_code = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{4,32}$"))


class LoginBody(StrictSchema):
    phone = Phone
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 128))


class Registered(Schema):
    user_id = Id(required=True)


class Token(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "bearer"})
    expires_in = fields.Integer(required=True)


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields = fields.Dict(required=True)


class ErrorResponse(Schema):
    error = fields.Nested(ErrorBody, required=True)


class Merchant(Schema):
    merchant_id = Id(required=True)
    owner_id = Id()
    name = fields.String()
    description = fields.String()
    status = fields.String(validate=validate.OneOf(["pending", "approved", "rejected", "suspended"]))
    reason = fields.String(allow_none=True)
    created_at = fields.String()


class Me(Schema):
    user_id = Id(required=True)
    phone = fields.String(required=True, metadata={"description": "whole, only to its owner"})
    nickname = fields.String()
    avatar_url = fields.String(allow_none=True)
    inviter_id = Id(allow_none=True, metadata={"description": "who invited you (first touch), if anyone"})
    roles = fields.List(fields.String())
    merchants = fields.List(fields.Nested(Merchant))


class Rating(Schema):
    average = fields.Float(allow_none=True, metadata={
        "description": "the reviews' mean, rounded half up to 2 decimals from the integer sum and count "
                       "(integer arithmetic; never an average of averages); null when nothing was reviewed"})
    count = fields.Integer()


class MerchantProfile(Schema):
    merchant_id = Id(required=True)
    name = fields.String()
    description = fields.String()
    status = fields.String(validate=validate.OneOf(["approved"]))
    rating = fields.Nested(Rating, metadata={"description": "over every review of every product of the merchant"})
    since = fields.String(metadata={"description": "when it was approved"})


class Sku(Schema):
    sku_id = Id()
    attrs = fields.Dict(keys=fields.String(), values=fields.String())
    price_fen = fields.Integer()
    stock = fields.Integer()


class Person(Schema):
    user_id = Id(required=True)
    nickname = fields.String(allow_none=True)


class SocialProof(Schema):
    friends_bought = fields.List(fields.Nested(Person))
    friends_bought_count = fields.Integer()
    friends_shared = fields.List(fields.Nested(Person))
    friends_shared_count = fields.Integer()


class CommissionPreview(Schema):
    level1_bp = fields.Integer()
    per_unit_fen = fields.Dict(keys=fields.String(), values=fields.Integer(),
                               metadata={"description": "per SKU id, and 'group' for the group price"})


class OpenGroup(Schema):
    group_id = Id(required=True)
    size = fields.Integer()
    seats_left = fields.Integer()
    price_fen = fields.Integer()
    leader_id = Id()
    expires_at = fields.String()


class Product(Schema):
    product_id = Id(required=True)
    merchant_id = Id()
    title = fields.String()
    description = fields.String()
    category = fields.String()
    images = fields.List(fields.String())
    skus = fields.List(fields.Nested(Sku))
    min_price_fen = fields.Integer()
    commission = fields.Dict()
    group_buy = fields.Dict(allow_none=True)
    status = fields.String()
    rating = fields.Nested(Rating)
    created_at = fields.String()
    open_groups = fields.List(fields.Nested(OpenGroup), allow_none=True,
                              metadata={"description": "groups of this product a viewer can still join"})
    social = fields.Nested(SocialProof, allow_none=True, metadata={"description": "signed-in viewers only"})
    commission_preview = fields.Nested(CommissionPreview, allow_none=True,
                                       metadata={"description": "signed-in viewers: level-1 earnings per unit"})
    degraded = fields.List(fields.String(), metadata={
        "description": "parts left null because their service was slow or down (groups, social, commission)"})


def page_of(item):
    """The `{items, next_cursor}` page of a list endpoint, named `<Item>Page` in the API document."""
    name = item.__name__.removesuffix("Summary").removesuffix("View").removesuffix("Entry")
    return type(f"{name}Page", (Schema,), {"items": fields.List(fields.Nested(item)),
                                            "next_cursor": fields.String(allow_none=True)})


class ProductSummary(Schema):
    product_id = Id(required=True)
    merchant_id = Id()
    title = fields.String()
    category = fields.String()
    image = fields.String(allow_none=True)
    min_price_fen = fields.Integer()
    group_buy = fields.Dict(allow_none=True)
    rating = fields.Nested(Rating)


ProductPage = page_of(ProductSummary)


class PendingFriendRequests(Schema):
    items = fields.List(fields.Nested("FriendRequest"))
    has_more = fields.Boolean()


class Overview(Schema):
    recent_orders = fields.List(fields.Nested("OrderSummary"), allow_none=True,
                                metadata={"description": "the latest 5, newest first"})
    commission = fields.Nested("CommissionSummary", allow_none=True)
    friend_requests = fields.Nested(PendingFriendRequests, allow_none=True,
                                    metadata={"description": "waiting for your answer, newest first"})
    degraded = fields.List(fields.String(), metadata={"description": "parts left null: orders, commission, "
                                                                   "friend_requests"})
