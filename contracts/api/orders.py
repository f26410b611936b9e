"""RPC payloads of the orders service that the gateway takes as HTTP bodies and queries (and the order statuses
and address its views show)."""
from marshmallow import ValidationError, fields, validate, validates_schema

from contracts.api.fields import cursor_param, text
from kit.validation import Fen, Id, Pattern, StrictSchema, WholeNumber

MAX_QTY = 999  # of one SKU in one order (also once the same SKU's items are added up: orders.domain.merge_items)
Qty = lambda **kw: WholeNumber(validate=validate.Range(1, MAX_QTY), **kw)  # noqa: E731
ShareCode = fields.String(load_default=None, allow_none=True, validate=Pattern(r"^[A-Za-z0-9_-]{4,32}$"))
ORDER_STATUSES = ["pending_payment", "paid", "awaiting_group", "shipped", "completed", "cancelled",
                  "refund_requested", "refunded"]
# a refund's kinds and statuses (its state machine: orders.domain.REFUND_TRANSITIONS)
REFUND_KINDS = ["after_sales", "group_failed", "late_payment", "dispute"]
REFUND_STATUSES = ["requested", "awaiting_return", "returning", "processing", "succeeded", "rejected", "escalated",
                   "disputed", "closed"]


class Address(StrictSchema):
    """Where the goods go. Shown to the buyer and the order's merchant only; never in events or logs."""
    recipient = text(1, 40, required=True)
    phone = fields.String(required=True, validate=Pattern(r"^1[3-9][0-9]{9}$",
                                                                  error="Not a mainland mobile number."))
    region = text(1, 100, required=True, metadata={"example": "浙江省 杭州市 西湖区"})
    detail = text(1, 200, required=True)


class Item(StrictSchema):
    sku_id = Id(required=True)
    qty = Qty(required=True)


class OrderInput(StrictSchema):
    items = fields.List(fields.Nested(Item), required=True, validate=validate.Length(1, 50))
    address = fields.Nested(Address, required=True)
    share_code = ShareCode


class GroupOpenInput(StrictSchema):
    sku_id = Id(required=True)
    qty = Qty(load_default=1)
    address = fields.Nested(Address, required=True)
    share_code = ShareCode


class GroupJoinInput(StrictSchema):
    sku_id = Id(required=True)
    qty = Qty(load_default=1)
    address = fields.Nested(Address, required=True)
    share_code = ShareCode


class ShipInput(StrictSchema):
    carrier = text(1, 40, required=True)
    tracking_no = fields.String(required=True, validate=[validate.Length(1, 40),
                                                          Pattern(r"^[A-Za-z0-9-]+$")])


class RefundInput(StrictSchema):
    reason = text(1, 500, required=True)
    amount_fen = Fen(minimum=1, load_default=None, allow_none=True,
                     metadata={"description": "leave out for everything refundable"})
    return_goods = fields.Boolean(load_default=False, metadata={
        "description": "after shipping: the goods go back first (approve → return-shipment → confirm-return → "
                       "money back); before shipping a refund is always whole and automatic, nothing to send"})


class RejectInput(StrictSchema):
    reason = text(1, 500, required=True)


class EscalateInput(StrictSchema):
    reason = text(1, 500, required=True, metadata={"description": "why the merchant's rejection is wrong"})


class DisputeQuery(StrictSchema):
    status = fields.String(load_default="open", validate=validate.OneOf(["open", "decided", "all"]))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = cursor_param()


class DisputeDecision(StrictSchema):
    # _nothing_refunded_by_a_rejection, in the API document: a refund, or no amount
    OPENAPI = {"anyOf": [{"properties": {"outcome": {"const": "refund"}}},
                         {"properties": {"amount_fen": {"type": "null"}}}]}
    outcome = fields.String(required=True, validate=validate.OneOf(["refund", "reject"]))
    amount_fen = Fen(minimum=1, load_default=None, allow_none=True, metadata={
        "description": "refund: part of the disputed amount (leave out for all of it); reject: leave out"})
    reason = text(1, 500, required=True)

    @validates_schema
    def _nothing_refunded_by_a_rejection(self, data, **kwargs):
        if data.get("outcome") == "reject" and data.get("amount_fen") is not None:
            raise ValidationError("a rejection refunds nothing: leave out when rejecting", "amount_fen")


class OrderQuery(StrictSchema):
    merchant_id = Id(load_default=None, allow_none=True,
                     metadata={"description": "a merchant you own: its orders instead of your purchases"})
    buyer_id = Id(load_default=None, allow_none=True, metadata={"description": "admins only"})
    status = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(ORDER_STATUSES))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = cursor_param()


class PaymentNotification(StrictSchema):
    """What the payment provider posts to /payments/notify, signed (HMAC-SHA256 of the raw body)."""
    trade_no = fields.String(required=True, validate=Pattern(r"^[A-Za-z0-9_-]{6,64}$"))
    order_id = Id(required=True)
    amount_fen = Fen(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["success"]))
    paid_at = fields.String(required=True, validate=validate.Length(1, 40))
