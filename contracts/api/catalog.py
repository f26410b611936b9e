"""RPC payloads of the catalog service that the gateway takes as HTTP bodies and queries."""
from marshmallow import fields, validate

from contracts.api.fields import https_url, text
from kit.validation import Fen, Id, SafeDict, StrictSchema


class MerchantApplication(StrictSchema):
    name = text(1, 60, required=True)
    description = text(0, 2000, load_default="")


class Reason(StrictSchema):
    reason = text(1, 500, required=True)


class CommissionRates(StrictSchema):
    level1_bp = fields.Integer(strict=True, required=True, validate=validate.Range(0, 10000))
    level2_bp = fields.Integer(strict=True, load_default=0, validate=validate.Range(0, 10000))


class GroupBuyOffer(StrictSchema):
    size = fields.Integer(strict=True, required=True, validate=validate.Range(2, 10))
    price_fen = Fen(minimum=1, required=True)
    window_seconds = fields.Integer(strict=True, load_default=86400, validate=validate.Range(1, 7 * 86400))


class SkuInput(StrictSchema):
    attrs = SafeDict(load_default=dict)
    price_fen = Fen(minimum=1, required=True)
    stock = fields.Integer(strict=True, required=True, validate=validate.Range(0, 10_000_000))


class ProductInput(StrictSchema):
    merchant_id = Id(required=True)
    title = text(1, 120, required=True)
    description = text(0, 5000, load_default="")
    category = fields.String(required=True, validate=[validate.Length(1, 40), validate.Regexp(r"^[^$.]+$")])
    images = fields.List(https_url(), load_default=list, validate=validate.Length(max=9))
    skus = fields.List(fields.Nested(SkuInput), required=True, validate=validate.Length(1, 50))
    commission = fields.Nested(CommissionRates, load_default=lambda: {"level1_bp": 0, "level2_bp": 0})
    group_buy = fields.Nested(GroupBuyOffer, allow_none=True, load_default=None)


class SkuUpdate(StrictSchema):
    sku_id = Id(required=True)
    price_fen = Fen(minimum=1)
    stock_delta = fields.Integer(strict=True, validate=validate.Range(-10_000_000, 10_000_000))


class ProductUpdate(StrictSchema):
    title = text(1, 120)
    description = text(0, 5000)
    category = fields.String(validate=[validate.Length(1, 40), validate.Regexp(r"^[^$.]+$")])
    images = fields.List(https_url(), validate=validate.Length(max=9))
    commission = fields.Nested(CommissionRates)
    group_buy = fields.Nested(GroupBuyOffer, allow_none=True)
    skus = fields.List(fields.Nested(SkuUpdate), validate=validate.Length(1, 50))


class ProductSearch(StrictSchema):
    q = fields.String(load_default="", validate=validate.Length(max=100))
    category = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    merchant_id = Id(load_default=None, allow_none=True)
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))


class ReviewInput(StrictSchema):
    order_id = Id(required=True, metadata={"description": "your completed order with this product"})
    rating = fields.Integer(strict=True, required=True, validate=validate.Range(1, 5))
    text = text(0, 1000, load_default="")


class MerchantQuery(StrictSchema):
    status = fields.String(load_default=None, allow_none=True,
                           validate=validate.OneOf(["pending", "approved", "rejected", "suspended"]),
                           metadata={"description": "only merchants in this status (all when absent)"})
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))


class ReplyInput(StrictSchema):
    text = text(1, 1000, required=True)


class ReviewPage(StrictSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
