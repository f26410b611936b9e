"""HTTP response schemas of the order, payment, refund, group-buy and review routes (request bodies are the
orders and catalog RPC contracts: contracts.api)."""
from marshmallow import Schema, fields, validate

from contracts.api.orders import ORDER_STATUSES, Address
from gateway.schemas import page_of
from kit.validation import Id

Fen = fields.Integer
Time = fields.String  # ISO 8601, UTC


class OrderLineView(Schema):
    sku_id = Id()
    product_id = Id()
    title = fields.String()
    qty = fields.Integer()
    unit_price_fen = Fen(metadata={"description": "the price when the order was placed"})
    goods_fen = Fen()


class RefundView(Schema):
    refund_id = Id(required=True)
    order_id = Id()
    kind = fields.String(validate=validate.OneOf(["after_sales", "group_failed", "late_payment"]))
    status = fields.String(validate=validate.OneOf(["requested", "processing", "succeeded", "rejected"]))
    amount_fen = Fen()
    reason = fields.String(allow_none=True)
    reject_reason = fields.String(allow_none=True)
    created_at = Time()
    decided_at = Time(allow_none=True)


class OrderRefund(RefundView):
    """A refund as listed in its order (its own name: the OpenAPI document names each schema once)."""


class OrderView(Schema):
    order_id = Id(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ORDER_STATUSES))
    buyer_id = Id()
    merchant_id = Id()
    group_id = Id(allow_none=True)
    share_code = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(OrderLineView))
    goods_fen = Fen()
    shipping_fen = Fen(metadata={"description": "800 below 9900 fen of goods, else 0; group buys ship free"})
    discount_fen = Fen()
    total_fen = Fen(required=True, metadata={"description": "goods + shipping − discounts"})
    refunded_fen = Fen()
    refund_id = Id(allow_none=True, metadata={"description": "the refund under way, if any"})
    trade_no = fields.String(allow_none=True)
    carrier = fields.String(allow_none=True)
    tracking_no = fields.String(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    created_at = Time()
    paid_at = Time(allow_none=True)
    shipped_at = Time(allow_none=True)
    completed_at = Time(allow_none=True)
    cancelled_at = Time(allow_none=True)
    after_sales_until = Time(allow_none=True)
    pay_before = Time(allow_none=True, metadata={"description": "unpaid orders are cancelled after this"})
    address = fields.Nested(Address, metadata={"description": "to the buyer and the order's merchant only"})
    refunds = fields.List(fields.Nested(OrderRefund), metadata={"description": "GET /orders/{id} only"})


class OrderSummary(OrderView):
    """An order in a list (no address, no refunds)."""


OrderPage = page_of(OrderSummary)


class GroupMemberView(Schema):
    user_id = Id()
    paid = fields.Boolean()


class GroupBuyView(Schema):
    group_id = Id(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["open", "formed", "failed"]))
    size = fields.Integer(required=True)
    product_id = Id()
    sku_id = Id()
    price_fen = Fen()
    leader_id = Id()
    seats_left = fields.Integer()
    members = fields.List(fields.Nested(GroupMemberView))
    expires_at = Time(required=True)
    formed_at = Time(allow_none=True)


class OrderGroup(GroupBuyView):
    """The group an order holds a seat in."""


class GroupOpened(OrderView):
    group = fields.Nested(OrderGroup)


class PaymentAck(Schema):
    outcome = fields.String(validate=validate.OneOf(["applied", "duplicate", "refund"]),
                            metadata={"description": "refund: the order could not take it; the money went back"})
    order_id = Id()
    status = fields.String()
    refund_id = Id(allow_none=True)


class ReviewView(Schema):
    review_id = fields.String(required=True)
    product_id = Id()
    order_id = Id()
    rating = fields.Integer()
    text = fields.String()
    created_at = Time()
