"""HTTP response schemas of the order, payment, refund, group-buy and review routes (request bodies are the
orders and catalog RPC contracts: contracts.api)."""
from marshmallow import Schema, fields, validate

from contracts.api.orders import ORDER_STATUSES, REFUND_KINDS, REFUND_STATUSES, Address
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
    kind = fields.String(validate=validate.OneOf(REFUND_KINDS), metadata={
        "description": "after_sales (the buyer asked), group_failed, late_payment, dispute (decided by an admin)"})
    status = fields.String(validate=validate.OneOf(REFUND_STATUSES), metadata={
        "description": "requested → (awaiting_return → returning →) processing → succeeded; or rejected → "
                       "escalated (a dispute); a dispute is disputed until an admin decides"})
    amount_fen = Fen()
    reason = fields.String(allow_none=True)
    reject_reason = fields.String(allow_none=True)
    created_at = Time()
    decided_at = Time(allow_none=True)
    return_goods = fields.Boolean(metadata={"description": "the goods go back before the money"})
    auto_approved = fields.Boolean(metadata={"description": "approved by the timers: unanswered in time"})
    respond_before = Time(allow_none=True, metadata={
        "description": "while requested: approved automatically after this (REFUND_RESPONSE_WINDOW)"})
    ship_back_before = Time(allow_none=True, metadata={
        "description": "while awaiting_return: the return closes unless the goods are sent back by then "
                       "(RETURN_SHIP_WINDOW)"})
    received_by = Time(allow_none=True, metadata={
        "description": "while returning: unless the merchant confirms or rejects by then, the goods count as "
                       "received and the money goes back (RETURN_RECEIVE_WINDOW)"})
    close_reason = fields.String(allow_none=True, metadata={
        "description": "why a return closed without money back (closed: the goods were not sent back in time)"})
    return_carrier = fields.String(allow_none=True)
    return_tracking_no = fields.String(allow_none=True)
    returned_at = Time(allow_none=True, metadata={"description": "when the buyer sent the goods back"})
    return_received_at = Time(allow_none=True, metadata={"description": "when the merchant confirmed receipt"})
    dispute_id = Id(allow_none=True, metadata={"description": "the dispute this rejected refund was escalated to"})
    refunded_at = Time(allow_none=True)


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
    address = fields.Nested(Address, allow_none=True,
                            metadata={"description": "to the buyer and the order's merchant only; null once the "
                                                     "buyer erased their account"})
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


class Reviewer(Schema):
    nickname = fields.String(allow_none=True, metadata={"description": "the reviewer's nickname when they reviewed"})


class ReviewReply(Schema):
    text = fields.String()
    created_at = Time()


class ReviewView(Schema):
    review_id = fields.String(required=True)
    product_id = Id()
    order_id = Id()
    rating = fields.Integer()
    text = fields.String()
    created_at = Time()
    reviewer = fields.Nested(Reviewer)
    reply = fields.Nested(ReviewReply, allow_none=True, metadata={"description": "the merchant's one reply"})


class PublicReview(Schema):
    """A review as anyone reads it on its product (no buyer or order id)."""
    review_id = fields.String(required=True)
    rating = fields.Integer()
    text = fields.String()
    created_at = Time()
    reviewer = fields.Nested(Reviewer)
    reply = fields.Nested(ReviewReply, allow_none=True)


PublicReviewPage = page_of(PublicReview)


class DisputeView(Schema):
    dispute_id = Id(required=True)
    order_id = Id()
    refund_id = Id(metadata={"description": "the rejected refund that was escalated"})
    buyer_id = Id()
    merchant_id = Id()
    status = fields.String(validate=validate.OneOf(["open", "decided"]))
    amount_fen = Fen(metadata={"description": "what the buyer disputes"})
    reason = fields.String(allow_none=True, metadata={"description": "the buyer's"})
    merchant_reason = fields.String(allow_none=True, metadata={"description": "why the merchant rejected"})
    outcome = fields.String(allow_none=True, validate=validate.OneOf(["refund", "reject"]))
    refunded_fen = Fen(metadata={"description": "what the decision gave back"})
    refund_status = fields.String(validate=validate.OneOf(REFUND_STATUSES))
    decided_by = Id(allow_none=True)
    decision_reason = fields.String(allow_none=True)
    decided_at = Time(allow_none=True)
    created_at = Time()


DisputePage = page_of(DisputeView)
