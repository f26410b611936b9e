"""One marshmallow schema per event type. `data` carries ids and fen amounts, never phone numbers,
addresses, passwords or tokens: schemas reject unknown fields, so PII cannot slip in unnoticed."""
from dataclasses import dataclass

from marshmallow import RAISE, Schema, fields, validate


class Data(Schema):
    class Meta:
        unknown = RAISE


Id = fields.String
Fen = lambda **kw: fields.Integer(strict=True, validate=validate.Range(min=0), **kw)  # noqa: E731
Time = fields.String  # ISO 8601 UTC, e.g. 2026-11-22T08:00:00.123456+00:00
Bp = lambda **kw: fields.Integer(strict=True, validate=validate.Range(min=0, max=10000), **kw)  # noqa: E731


# --- catalog.events ---------------------------------------------------------------------------------
class MerchantStatusChanged(Data):
    merchant_id = Id(required=True)
    owner_id = Id(required=True)
    status = fields.String(required=True)
    reason = fields.String(allow_none=True, load_default=None)


class CommissionRates(Data):
    level1_bp = Bp(required=True)
    level2_bp = Bp(required=True)


class GroupBuyOffer(Data):
    size = fields.Integer(required=True)
    price_fen = Fen(required=True)
    window_seconds = fields.Integer(required=True)


class ProductSku(Data):
    sku_id = Id(required=True)
    price_fen = Fen(required=True)


class ProductPublished(Data):
    product_id = Id(required=True)
    merchant_id = Id(required=True)
    title = fields.String(required=True)
    category = fields.String(required=True)
    commission = fields.Nested(CommissionRates, required=True)
    group_buy = fields.Nested(GroupBuyOffer, allow_none=True, required=True)
    skus = fields.List(fields.Nested(ProductSku), required=True)


class ProductChanged(Data):
    product_id = Id(required=True)
    merchant_id = Id(required=True)
    reason = fields.String(allow_none=True, load_default=None)
    visible = fields.Boolean(load_default=None, allow_none=True,
                             metadata={"description": "whether shoppers see the product now (absent: unknown)"})


class StockDepleted(Data):
    product_id = Id(required=True)
    sku_id = Id(required=True)


class ReviewPosted(Data):
    product_id = Id(required=True)
    order_id = Id(required=True)
    buyer_id = Id(required=True)
    rating = fields.Integer(required=True, validate=validate.Range(1, 5))


# --- orders.events ----------------------------------------------------------------------------------
class OrderLine(Data):
    sku_id = Id(required=True)
    product_id = Id(required=True)
    qty = fields.Integer(required=True, validate=validate.Range(min=1))
    unit_price_fen = Fen(required=True)
    goods_fen = Fen(required=True, metadata={"description": "qty × unit price minus this line's discount"})
    level1_bp = Bp(required=True, metadata={"description": "commission rate captured when the order was made"})
    level2_bp = Bp(required=True)


class OrderFacts(Data):
    """What every order event says about the order (the state at the time of the event)."""
    order_id = Id(required=True)
    buyer_id = Id(required=True)
    merchant_id = Id(required=True)
    status = fields.String(required=True)
    lines = fields.List(fields.Nested(OrderLine), required=True)
    goods_fen = Fen(required=True)
    shipping_fen = Fen(required=True)
    discount_fen = Fen(required=True)
    total_fen = Fen(required=True)
    share_code = fields.String(allow_none=True, required=True)
    group_id = Id(allow_none=True, required=True)
    created_at = Time(required=True)


class OrderCreated(OrderFacts):
    pass


class OrderPaid(OrderFacts):
    trade_no = fields.String(required=True)
    paid_at = Time(required=True)


class OrderCancelled(OrderFacts):
    reason = fields.String(required=True, validate=validate.OneOf(
        ["buyer", "payment_timeout", "group_failed", "merchant_suspended"]))
    refunded_fen = Fen(load_default=0, metadata={
        "description": "always 0 now: money that goes back is announced by order.refunded (a failed group's paid "
                       "member ends refunded, not cancelled); kept for subscribers that read it"})


class OrderShipped(OrderFacts):
    carrier = fields.String(required=True)
    shipped_at = Time(required=True)


class OrderCompleted(OrderFacts):
    completed_at = Time(required=True)
    after_sales_until = Time(required=True)


class OrderRefundEvent(OrderFacts):
    refund_id = Id(required=True)
    amount_fen = Fen(required=True)
    reason = fields.String(allow_none=True, load_default=None)


REFUND_CAUSES = ["buyer_request", "group_failed", "late_payment", "dispute"]


class OrderRefunded(OrderRefundEvent):
    """Every return of money to a buyer is exactly one of these (docs/api.md, "Trust")."""
    full = fields.Boolean(required=True, metadata={
        "description": "true when the order is now `refunded` (everything it took went back)"})
    refunded_total_fen = Fen(required=True, metadata={
        "description": "all refunds of this order's payment so far (a late or duplicate payment's refund is not "
                       "part of it unless the order was cancelled)"})
    refunded_fen = Fen(load_default=None, metadata={
        "description": "the money this refund returned to the buyer (equals amount_fen)"})
    cause = fields.String(load_default="buyer_request", validate=validate.OneOf(REFUND_CAUSES), metadata={
        "description": "buyer_request (after-sales, also auto-approved), group_failed (a paid member of a "
                       "failed group buy), late_payment (a payment the order could no longer take), dispute "
                       "(an admin decided a dispute for the buyer)"})


class GroupBuyFacts(Data):
    group_id = Id(required=True)
    product_id = Id(required=True)
    sku_id = Id(required=True)
    leader_id = Id(required=True)
    size = fields.Integer(required=True)
    order_ids = fields.List(Id(), required=True)
    member_ids = fields.List(Id(), required=True)


class GroupBuyFormed(GroupBuyFacts):
    formed_at = Time(required=True)


class GroupBuyFailed(GroupBuyFacts):
    failed_at = Time(required=True)


# --- social_feed.events -----------------------------------------------------------------------------
class UserJoined(Data):
    user_id = Id(required=True)
    inviter_id = Id(allow_none=True, required=True)
    joined_at = Time(required=True)
    share_code = fields.String(allow_none=True, load_default=None,
                               metadata={"description": "the share link the user registered through, if any"})


class InviterBound(Data):
    """A user who registered without an inviter bound one later (first touch, once, never a cycle)."""
    user_id = Id(required=True)
    inviter_id = Id(required=True)
    share_code = fields.String(required=True)
    bound_at = Time(required=True)


class ShareCreated(Data):
    share_code = fields.String(required=True)
    sharer_id = Id(required=True)
    product_id = Id(required=True)
    channel = fields.String(required=True)
    created_at = Time(required=True)


class ShareClicked(Data):
    share_code = fields.String(required=True)
    sharer_id = Id(required=True)
    product_id = Id(required=True)
    viewer_id = Id(allow_none=True, required=True)
    clicked_at = Time(required=True)


class MomentPosted(Data):
    moment_id = Id(required=True)
    author_id = Id(required=True)
    visibility = fields.String(required=True, validate=validate.OneOf(["friends", "public", "private"]))
    product_id = Id(allow_none=True, load_default=None)
    share_code = fields.String(allow_none=True, load_default=None)
    posted_at = Time(required=True)


class UserDeleted(Data):
    user_id = Id(required=True)
    deleted_at = Time(required=True)


class Friendship(Data):
    user_ids = fields.List(Id(), required=True, validate=validate.Length(equal=2))
    at = Time(required=True)


# --- commission.events ------------------------------------------------------------------------------
class CommissionEntry(Data):
    order_id = Id(required=True)
    beneficiary_id = Id(required=True)
    level = fields.Integer(required=True, validate=validate.OneOf([1, 2]))
    amount_fen = Fen(required=True)


class CommissionFrozen(CommissionEntry):
    settle_after = Time(required=True)


class CommissionReversed(CommissionEntry):
    reason = fields.String(required=True)


class Withdrawal(Data):
    withdrawal_id = Id(required=True)
    user_id = Id(required=True)
    amount_fen = Fen(required=True)
    reason = fields.String(allow_none=True, load_default=None)


@dataclass(frozen=True)
class EventSpec:
    type: str
    exchange: str
    schema: type
    schema_version: int
    summary: str

    @property
    def source_service(self):
        return self.exchange.rsplit(".", 1)[0]

    @property
    def dataschema(self):
        return f"urn:quanzi:events:{self.type}:v{self.schema_version}"


def _specs():
    rows = [
        ("catalog.events", "merchant.approved", MerchantStatusChanged, "An admin approved a merchant; its products can be published."),
        ("catalog.events", "merchant.rejected", MerchantStatusChanged, "An admin rejected a merchant application, with a reason."),
        ("catalog.events", "merchant.suspended", MerchantStatusChanged, "An admin suspended a merchant; its products are hidden at once."),
        ("catalog.events", "product.published", ProductPublished, "A product of an approved merchant is visible and can be bought."),
        ("catalog.events", "product.updated", ProductChanged, "A published product changed (price, text, offer)."),
        ("catalog.events", "product.hidden", ProductChanged, "A product is no longer visible (merchant suspended, taken down by an admin: reason takedown)."),
        ("catalog.events", "stock.depleted", StockDepleted, "A SKU's stock reached zero."),
        ("catalog.events", "review.posted", ReviewPosted, "A buyer reviewed a product of a completed order."),
        ("orders.events", "order.created", OrderCreated, "An order was placed; its stock is reserved."),
        ("orders.events", "order.paid", OrderPaid, "An order's payment was confirmed by the provider."),
        ("orders.events", "order.cancelled", OrderCancelled, "An order was cancelled; its stock is released."),
        ("orders.events", "order.shipped", OrderShipped, "The merchant shipped the order."),
        ("orders.events", "order.completed", OrderCompleted, "The buyer confirmed receipt (or it auto-confirmed)."),
        ("orders.events", "order.refund_requested", OrderRefundEvent, "The buyer asked for a refund."),
        ("orders.events", "order.refund_rejected", OrderRefundEvent, "A refund request ended without money back: the merchant rejected it, an admin decided its dispute against the buyer, or the goods of an approved return were not sent back in time (`reason` says which)."),
        ("orders.events", "order.refunded", OrderRefunded, "Money went back to the buyer, whole or part: one per return of money, with its cause."),
        ("orders.events", "groupbuy.formed", GroupBuyFormed, "Every seat of a group buy is paid; its orders proceed."),
        ("orders.events", "groupbuy.failed", GroupBuyFailed, "A group buy's window ended unfilled; members are refunded."),
        ("social_feed.events", "user.joined", UserJoined, "A user registered, with the inviter (first touch) if any."),
        ("social_feed.events", "inviter.bound", InviterBound, "A user without an inviter bound one later through a share link."),
        ("social_feed.events", "share.created", ShareCreated, "A user created a share link for a product."),
        ("social_feed.events", "share.clicked", ShareClicked, "Someone opened a share link (viewer null when anonymous)."),
        ("social_feed.events", "moment.posted", MomentPosted, "A user posted a moment."),
        ("social_feed.events", "friendship.created", Friendship, "Two users became friends."),
        ("social_feed.events", "friendship.removed", Friendship, "Two users are no longer friends."),
        ("social_feed.events", "user.deleted", UserDeleted, "A user erased their account (PIPL): every service purges "
         "or de-identifies what it holds about them."),
        ("commission.events", "commission.accrued", CommissionEntry, "A commission became pending on a paid order."),
        ("commission.events", "commission.frozen", CommissionFrozen, "The order completed; the commission waits out the after-sales window."),
        ("commission.events", "commission.settled", CommissionEntry, "The commission is withdrawable."),
        ("commission.events", "commission.reversed", CommissionReversed, "A refund or cancellation took back (part of) a commission."),
        ("commission.events", "withdrawal.requested", Withdrawal, "A user asked to withdraw settled commission."),
        ("commission.events", "withdrawal.completed", Withdrawal, "The payout succeeded."),
        ("commission.events", "withdrawal.failed", Withdrawal, "The payout failed; the money is back in the balance."),
    ]
    return {t: EventSpec(t, ex, schema, 1, summary) for ex, t, schema, summary in rows}


EVENTS = _specs()
EXCHANGES = sorted({spec.exchange for spec in EVENTS.values()})


def spec_for(event_type):
    try:
        return EVENTS[event_type]
    except KeyError:
        raise ValueError(f"unknown event type {event_type!r}: add it to contracts/events.py first")
