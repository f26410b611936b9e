"""Order rules: the status machine, totals, refunds, group-buy seats, payment amounts, views and event
data. Pure functions over plain dicts; no nameko, no pymongo, no I/O (unit-tested directly)."""
import hashlib
import json
from datetime import timedelta

from contracts.api.orders import MAX_QTY, REFUND_KINDS, REFUND_STATUSES  # noqa: F401 (views show the contract's lists)
from kit import claims
from kit.errors import Conflict, InvalidInput, RuleRefused

# -- statuses and transitions (docs/api.md "Order statuses") ----------------------------------------------
# `creating` and `abandoned` are internal: the order's intent, written before stock is reserved, and an intent
# being undone (never shown to anyone).
CREATING, ABANDONED = "creating", "abandoned"
PENDING, PAID, AWAITING_GROUP = "pending_payment", "paid", "awaiting_group"
SHIPPED, COMPLETED, CANCELLED = "shipped", "completed", "cancelled"
REFUND_REQUESTED, REFUNDED = "refund_requested", "refunded"

TRANSITIONS = {
    # action: (statuses it may start from, status it leads to; None = back where the refund started)
    "create": ({CREATING}, PENDING),
    "pay": ({PENDING}, PAID),
    "pay_group_seat": ({PENDING}, AWAITING_GROUP),
    "group_formed": ({AWAITING_GROUP}, PAID),
    "cancel": ({PENDING}, CANCELLED),
    "payment_timeout": ({PENDING}, CANCELLED),
    "group_failed": ({PENDING}, CANCELLED),  # an unpaid seat of a failed group
    "group_refund": ({AWAITING_GROUP}, REFUNDED),  # a paid seat of a failed group: the money goes back
    "late_payment_refund": ({CANCELLED}, REFUNDED),  # money that arrived after the cancellation went back
    "ship": ({PAID}, SHIPPED),
    "confirm_receipt": ({SHIPPED}, COMPLETED),
    "auto_confirm": ({SHIPPED}, COMPLETED),
    "request_refund": ({PAID, SHIPPED, COMPLETED}, REFUND_REQUESTED),
    "reject_refund": ({REFUND_REQUESTED}, None),
    "refund_partly": ({REFUND_REQUESTED}, None),
    "refund_fully": ({REFUND_REQUESTED}, REFUNDED),
}

HINTS = {
    ("cancel", PAID): "a paid order is not cancelled: request a refund (full and automatic before shipping)",
    ("ship", AWAITING_GROUP): "the group buy has not formed yet",
    ("request_refund", AWAITING_GROUP): "wait for the group buy: a failed group refunds every member",
}


def transition(order, action):
    """The status `action` leads to from the order's status; Conflict (409) when it is not allowed."""
    allowed, target = TRANSITIONS[action]
    status = order["status"]
    if status not in allowed:
        hint = HINTS.get((action, status))
        raise Conflict(f"cannot {action.replace('_', ' ')} an order that is {status}" + (f": {hint}" if hint else ""),
                       {"status": [status]})
    return order["refund_from"] if target is None else target


def paid_already(order):
    """A pay that finds its order paid is a retried tap whose first answer was lost (a timeout, an outage): it is
    answered with the paid order, as the first tap would have been, rather than a conflict. Nothing is charged
    again: the provider keeps one payment per order."""
    return order["status"] in {PAID, AWAITING_GROUP, SHIPPED, COMPLETED} and order.get("trade_no") is not None


CANCEL_REASONS = {"cancel": "buyer", "payment_timeout": "payment_timeout", "group_failed": "group_failed"}

# -- money -------------------------------------------------------------------------------------------------
# Shipping rule: a flat 800 fen (8 yuan) below 99 yuan of goods, free from 99 yuan ("满99包邮"); group-buy
# orders ship free (拼团包邮). Discounts are 0 until coupons exist; the formula already carries them.
SHIPPING_FEN = 800
FREE_SHIPPING_FROM_FEN = 9900


def shipping_fee(goods_fen, group):
    return 0 if group or goods_fen >= FREE_SHIPPING_FROM_FEN else SHIPPING_FEN


def total_of(goods_fen, shipping_fen, discount_fen):
    """goods + shipping − discounts, never negative (a discount cannot pay the buyer)."""
    return max(0, goods_fen + shipping_fen - discount_fen)


def price_lines(reserved):
    """Order lines from the catalog's reservation: the price and commission rates captured now, so later price
    changes never alter this order. One order belongs to one merchant."""
    merchants = {line["merchant_id"] for line in reserved}
    if len(merchants) != 1:
        raise InvalidInput("one order per merchant: split the cart",
                           {"items": ["all SKUs of one order must belong to one merchant"]})
    lines = [{"sku_id": r["sku_id"], "product_id": r["product_id"], "title": r["title"], "qty": r["qty"],
              "unit_price_fen": r["unit_price_fen"], "goods_fen": r["qty"] * r["unit_price_fen"],
              "level1_bp": r["level1_bp"], "level2_bp": r["level2_bp"]} for r in reserved]
    return merchants.pop(), lines


def totals(lines, group, discount_fen=0):
    goods = sum(line["goods_fen"] for line in lines)
    shipping = shipping_fee(goods, group)
    return {"goods_fen": goods, "shipping_fen": shipping, "discount_fen": discount_fen,
            "total_fen": total_of(goods, shipping, discount_fen)}


def merge_items(items):
    """The same SKU twice in one cart counts once, with the quantities added (at most MAX_QTY of one SKU: each
    item is valid on its own, so more in all is a rule refused, 422)."""
    qty = {}
    for item in items:
        qty[item["sku_id"]] = qty.get(item["sku_id"], 0) + item["qty"]
    too_many = sorted(sku for sku, n in qty.items() if n > MAX_QTY)
    if too_many:
        raise RuleRefused(f"at most {MAX_QTY} of one SKU per order",
                          {"items": [f"{sku}: more than {MAX_QTY} in all" for sku in too_many]})
    return [{"sku_id": sku, "qty": n} for sku, n in qty.items()]


# -- timers --------------------------------------------------------------------------------------------------
INTENT_TTL = 60  # seconds an order may stay `creating` before the sweep gives its stock and seat back
# A retry of the same Idempotency-Key that finds the intent still `creating` this long after it was written takes it
# over: longer than a live placing can take (its catalog call has a 10 s budget), so its owner died or gave up
# (an outage cut its undo short); the client retrying says it is no longer waiting for that attempt either.
RETRY_TAKES_OVER_AFTER = 20


def owner_gone(intent, now):
    """True when an unfinished intent can be undone by a retry rather than waited for."""
    return intent["status"] == ABANDONED or (
        intent["status"] == CREATING and now - intent["created_at"] > timedelta(seconds=RETRY_TAKES_OVER_AFTER))


def due_at(order, settings):
    """When the sweep must next look at an order in this status, or None."""
    status = order["status"]
    if status == CREATING:
        return order["created_at"] + timedelta(seconds=INTENT_TTL)
    if status == PENDING:
        return order["created_at"] + timedelta(seconds=settings.payment_timeout)
    if status == SHIPPED:
        return order["shipped_at"] + timedelta(seconds=settings.auto_confirm_after)
    return None


# -- stock on loan (orders.loans) ---------------------------------------------------------------------------
# A SKU this process sells often is sold from a loan: a lot of its stock the catalog lent us (the catalog keeps
# its last units, catalog.domain.LOAN_FLOOR), so its orders are placed in one transaction here, with no call to the
# catalog each. The loan keeps the SKU's line as the catalog priced it with its last lot, used while fresh.
LOAN_LOT = 128  # units borrowed at a time
LOAN_LOW = 64  # a loan is topped up once fewer remain, so the next lot arrives before it runs dry
# A loan's price is the catalog's as of its last lot. The catalog's product.updated / product.hidden make it stale at
# once (OrdersStore.reprice_product: the next hot batch asks again); these bound it when those events are late.
LOAN_PRICED_FOR = timedelta(seconds=60)  # a loan's price is used at most this long after the catalog gave it
LOAN_REFRESH = timedelta(seconds=30)  # a loan in use asks for the price again this often (with or without units)
LOAN_IDLE = timedelta(seconds=60)  # units unsold this long go back to the catalog
LOAN_SETTLE_AFTER = timedelta(seconds=10)  # a lot asked for or given back this long ago without an answer: done
# again by the sweep (both are idempotent by loan id); longer than the catalog call's budget
HOT_ORDERS, HOT_SECONDS = 3, 2.0  # a SKU is sold from a loan while a process sees this many of its orders in 2 s


class HotSkus:
    """Which SKUs one process sees ordered often: HOT_ORDERS within a HOT_SECONDS window, this one or the last."""

    def __init__(self):
        self._windows = {}  # sku id: (window start, orders seen in it, orders seen in the window before)

    def saw(self, sku_id, count, clock):
        """Count `count` orders of the SKU seen at `clock` (seconds); True when the SKU is hot."""
        start, seen, before = self._windows.get(sku_id, (clock, 0, 0))
        if clock - start >= HOT_SECONDS:
            start, seen, before = clock, 0, (seen if clock - start < 2 * HOT_SECONDS else 0)
        seen += count
        self._windows[sku_id] = start, seen, before
        if len(self._windows) > 10_000:  # forget SKUs not seen for two windows
            self._windows = {k: w for k, w in self._windows.items() if clock - w[0] < 2 * HOT_SECONDS}
        return max(seen, before) >= HOT_ORDERS


def loan_covers(loan, qty, now):
    """True when the loan can sell `qty` units now: priced (on sale), its price fresh, enough units."""
    return bool(loan and loan.get("line")) and loan["units"] >= qty and now - loan["priced_at"] < LOAN_PRICED_FOR


def lot_to_ask(loan, now):
    """Units to ask the catalog for (0: the price again only), or None when the loan needs nothing now. A SKU the
    catalog lent nothing last time (its last units, or not on sale) is asked again after LOAN_REFRESH only."""
    if loan is None:
        return LOAN_LOT
    since = now - loan["priced_at"]
    if loan["units"] < LOAN_LOW and (loan.get("last_lent") or since >= LOAN_REFRESH):
        return LOAN_LOT
    return 0 if since >= LOAN_REFRESH else None


def loan_line(loan, qty):
    """The order line (as the catalog reserves it) of `qty` units sold from the loan."""
    return dict(loan["line"], qty=qty)


def placed_order(intent, merchant_id, lines, data, group, settings):
    """The order an intent becomes once its stock is reserved and priced (single and batch paths alike)."""
    order = dict(intent, merchant_id=merchant_id, lines=lines, **totals(lines, group), address=data["address"],
                 share_code=data.get("share_code"), refunded_fen=0, status=transition(intent, "create"))
    order["due_at"] = due_at(order, settings)
    return order


# -- refunds -------------------------------------------------------------------------------------------------
def refund_terms(order, amount_fen, now):
    """(amount, automatic) of a refund the buyer asks for, or the reason it is refused.

    Before shipping: the whole order, approved automatically. Shipped, or completed within the after-sales
    window: at most the goods amount still unrefunded (shipping excluded), for the merchant to decide."""
    status = order["status"]
    transition(order, "request_refund")
    if status == PAID:
        if amount_fen is not None and amount_fen != order["total_fen"]:
            raise InvalidInput("before shipping a refund is always the whole order",
                               {"amount_fen": [f"must be {order['total_fen']} or left out"]})
        return order["total_fen"], True
    if status == COMPLETED and now > order["after_sales_until"]:
        raise RuleRefused("the after-sales window of this order has closed",
                          {"after_sales_until": [order["after_sales_until"].isoformat()]})
    left = order["goods_fen"] - order.get("refunded_fen", 0)
    if left <= 0:
        raise Conflict("nothing left to refund on this order")
    amount = left if amount_fen is None else amount_fen
    if not 1 <= amount <= left:
        raise InvalidInput("refund above what was paid for the goods",
                           {"amount_fen": [f"must be between 1 and {left} fen"]})
    return amount, False


def refund_outcome(order, amount_fen):
    """The action that settles an approved refund: fully refunded once everything refundable went back."""
    refunded = order.get("refunded_fen", 0) + amount_fen
    ceiling = order["total_fen"] if order["refund_from"] == PAID else order["goods_fen"]
    return ("refund_fully" if refunded >= ceiling else "refund_partly"), refunded


def money_back(order, refund):
    """How a refund the provider paid changes its order: (action or None when the status stays, the order's
    refunded_fen after it). Every return of money is one `order.refunded` (docs/api.md, "Trust").

    - a paid member of a failed group: the whole order, `refunded` (not `cancelled`: finance must tell it from an
      unpaid cancellation);
    - a payment that arrived after the cancellation: the cancelled order becomes `refunded`; a payment an order
      could not take for another reason (paid twice, its group closed) goes back and the order stays as it is:
      that money never counted for it;
    - after-sales and disputes: partial keeps the status the refund started from, everything refundable →
      `refunded`."""
    kind, amount = refund["kind"], refund["amount_fen"]
    if kind == "group_failed":
        return "group_refund", order.get("refunded_fen", 0) + amount
    if kind == "late_payment":
        if order["status"] == CANCELLED:
            return "late_payment_refund", order.get("refunded_fen", 0) + amount
        return None, order.get("refunded_fen", 0)
    return refund_outcome(order, amount)


# -- the refund's own state machine ---------------------------------------------------------------------------
# requested ──approve──▶ processing ──(provider paid)──▶ succeeded              (no goods to send back)
#     │      ╰approve──▶ awaiting_return ──ship_back──▶ returning ──confirm_return──▶ processing
#     ╰──reject──▶ rejected ◀──reject── returning
#                  rejected ──escalate──▶ escalated  (+ a dispute: a refund of kind "dispute", status disputed)
# disputed ──decide_refund──▶ processing · disputed ──decide_reject──▶ rejected (final: a dispute is not escalated)
# Nothing waits forever on one side (the timers act, once, whatever the replicas):
# `requested` unanswered for REFUND_RESPONSE_WINDOW is approved (auto_approve); `awaiting_return` whose goods the
# buyer did not send within RETURN_SHIP_WINDOW closes (close_unreturned: the order goes back, as after a
# rejection); `returning` the merchant neither confirmed nor rejected within RETURN_RECEIVE_WINDOW of the
# shipment counts as received (auto_confirm_return: the money goes back).
R_REQUESTED, R_AWAITING_RETURN, R_RETURNING = "requested", "awaiting_return", "returning"
R_PROCESSING, R_SUCCEEDED, R_REJECTED = "processing", "succeeded", "rejected"
R_ESCALATED, R_DISPUTED, R_CLOSED = "escalated", "disputed", "closed"
REFUND_CAUSES = {"after_sales": "buyer_request", "group_failed": "group_failed", "late_payment": "late_payment",
                 "dispute": "dispute"}
REFUND_TRANSITIONS = {
    # action: (kinds, statuses it may start from, status it leads to; None = by return_goods)
    "approve": ({"after_sales"}, {R_REQUESTED}, None),
    "auto_approve": ({"after_sales"}, {R_REQUESTED}, None),
    "ship_back": ({"after_sales"}, {R_AWAITING_RETURN}, R_RETURNING),
    "confirm_return": ({"after_sales"}, {R_RETURNING}, R_PROCESSING),
    "auto_confirm_return": ({"after_sales"}, {R_RETURNING}, R_PROCESSING),
    "close_unreturned": ({"after_sales"}, {R_AWAITING_RETURN}, R_CLOSED),
    "reject": ({"after_sales"}, {R_REQUESTED, R_RETURNING}, R_REJECTED),
    "escalate": ({"after_sales"}, {R_REJECTED}, R_ESCALATED),
    "decide_refund": ({"dispute"}, {R_DISPUTED}, R_PROCESSING),
    "decide_reject": ({"dispute"}, {R_DISPUTED}, R_REJECTED),
}
REFUND_HINTS = {
    ("approve", R_AWAITING_RETURN): "approved already: the buyer sends the goods back",
    ("confirm_return", R_AWAITING_RETURN): "the buyer has not sent the goods back yet",
    ("escalate", R_REQUESTED): "only a rejected request can be escalated",
    ("escalate", R_ESCALATED): "this refund was escalated already",
}
OPEN_REFUND_STATUSES = {R_REQUESTED, R_AWAITING_RETURN, R_RETURNING, R_DISPUTED}


def refund_transition(refund, action):
    """The status `action` leads a refund to; Conflict (409) when it is not allowed from where it is."""
    kinds, allowed, target = REFUND_TRANSITIONS[action]
    status = refund["status"]
    if refund["kind"] not in kinds or status not in allowed:
        hint = REFUND_HINTS.get((action, status))
        raise Conflict(f"cannot {action.replace('_', ' ')} a refund that is {status}" + (f": {hint}" if hint else ""),
                       {"status": [status]})
    if target is None:
        return R_AWAITING_RETURN if refund.get("return_goods") else R_PROCESSING
    return target


def respond_before(refund_created_at, settings):
    """When the timers approve a request the merchant left unanswered."""
    return refund_created_at + timedelta(seconds=settings.refund_response_window)


def waiting_deadline(status, since, settings):
    """When the timers act on a refund that entered `status` at `since` and is still there (None: no timer for
    that status; `processing` has its own retry timer in the store)."""
    window = {R_REQUESTED: settings.refund_response_window, R_AWAITING_RETURN: settings.return_ship_window,
              R_RETURNING: settings.return_receive_window}.get(status)
    return None if window is None else since + timedelta(seconds=window)


TIMED_OUT = {R_REQUESTED: "auto_approve", R_AWAITING_RETURN: "close_unreturned", R_RETURNING: "auto_confirm_return"}
UNRETURNED_REASON = "the goods were not sent back within the return window"


def dispute_terms(order, refund, now):
    """What a dispute about a rejected refund asks for: the rejected amount, at most what is still refundable.
    Like a refund request, within the after-sales window of a completed order: the commission on it settles only
    after that window (and is final then), so a dispute opened later could no longer take it back."""
    transition(order, "request_refund")  # the order is back where it was, with no other refund under way
    if order["status"] == COMPLETED and now > order["after_sales_until"]:
        raise RuleRefused("the after-sales window of this order has closed: escalate within it",
                          {"after_sales_until": [order["after_sales_until"].isoformat()]})
    left = order["goods_fen"] - order.get("refunded_fen", 0)  # rejected refunds are all after shipping
    if left <= 0:
        raise Conflict("nothing left to refund on this order")
    return min(refund["amount_fen"], left)


def decided_amount(dispute, amount_fen):
    """An admin refunds the amount in dispute or part of it (1..asked)."""
    asked = dispute["asked_fen"]
    amount = asked if amount_fen is None else amount_fen
    if not 1 <= amount <= asked:
        raise InvalidInput("the decision refunds at most what the dispute asks for",
                           {"amount_fen": [f"must be between 1 and {asked} fen"]})
    return amount


# -- group buys (拼团) ------------------------------------------------------------------------------------------
GROUP_OPEN, GROUP_FORMED, GROUP_FAILING, GROUP_FAILED = "open", "formed", "failing", "failed"


def new_group(group_id, leader_id, order_id, line, offer, now):
    return {"_id": group_id, "product_id": line["product_id"], "sku_id": line["sku_id"], "leader_id": leader_id,
            "size": offer["size"], "price_fen": offer["price_fen"], "status": GROUP_OPEN,
            # the leader's seat is held from the moment the order exists, paid or not
            "members": [{"user_id": leader_id, "order_id": order_id, "paid": False}],
            "free_seats": offer["size"] - 1, "paid": 0,
            "expires_at": now + timedelta(seconds=offer["window_seconds"]),
            "created_at": now, **claims.free()}


def join_refusal(group, user_id, now):
    """Why `user_id` cannot take a seat (Conflict), for a join whose atomic seat claim matched nothing."""
    if group["status"] != GROUP_OPEN or now >= group["expires_at"]:
        return Conflict("this group buy is closed", {"group_id": ["closed"]})
    if group["leader_id"] == user_id:
        return Conflict("you opened this group buy", {"group_id": ["you are its leader"]})
    if any(m["user_id"] == user_id for m in group["members"]):
        return Conflict("you already hold a seat in this group buy", {"group_id": ["already a member"]})
    return Conflict("this group buy is full", {"group_id": ["full"]})


def payment_applies(order, group, now):
    """A payment counts only for an order still waiting for it (and, for a group seat, a group still open);
    anything else (late, cancelled, closed group) is refunded automatically."""
    if order["status"] != PENDING:
        return False
    return group is None or (group["status"] == GROUP_OPEN and now < group["expires_at"])


def public_group_status(status):
    # `failing` is a failed group whose refunds are still being paid out: to the outside it has failed.
    return GROUP_FAILED if status == GROUP_FAILING else status


# -- payment notifications (signed by the provider, verified by the gateway: contracts.payment) -----------------
def pays_plainly(order, notification):
    """The common notification, which a batch applies with others (OrdersStore.apply_payments): the right
    amount for a plain order (no group seat) still waiting for its payment. Any other is decided on its own."""
    return (order["status"] == PENDING and not order.get("group_id")
            and notification["amount_fen"] == order["total_fen"])


def repeats_payment(order, notification):
    """A notification of the payment that paid the order (each pay's own, which follows the pay's trade query):
    answered as a repeat. An order's trade_no is written once, with the payment that paid it."""
    return order.get("trade_no") is not None and order["trade_no"] == notification["trade_no"]


def check_amount(order, notification):
    if notification["amount_fen"] != order["total_fen"]:
        raise RuleRefused("payment amount does not match the order",
                          {"amount_fen": [f"expected {order['total_fen']}"]})


# -- views and event data --------------------------------------------------------------------------------------
EVENT_LINE_FIELDS = ("sku_id", "product_id", "qty", "unit_price_fen", "goods_fen", "level1_bp", "level2_bp")


def _iso(value):
    return value.isoformat() if value else None


def event_data(order, **extra):
    """OrderFacts of contracts/events.py: ids and fen amounts only (never the address)."""
    return {
        "order_id": order["_id"], "buyer_id": order["buyer_id"], "merchant_id": order["merchant_id"],
        "status": order["status"], "lines": [{k: line[k] for k in EVENT_LINE_FIELDS} for line in order["lines"]],
        "goods_fen": order["goods_fen"], "shipping_fen": order["shipping_fen"],
        "discount_fen": order["discount_fen"], "total_fen": order["total_fen"],
        "share_code": order.get("share_code"), "group_id": order.get("group_id"),
        "created_at": order["created_at"].isoformat(), **extra,
    }


def request_fingerprint(data):
    """A digest of a validated order request, kept with the order its Idempotency-Key made (the key is this
    service's to keep: the gateway records nothing for POST /orders). Field order and spacing do not count."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def replay_of(order, fingerprint):
    """The order an Idempotency-Key made, answered again to a repeat of its request (marked `replayed`); the same
    key with another request is a client's bug, refused (422). An order kept without a digest matches any."""
    if order.get("request_hash", fingerprint) != fingerprint:
        raise RuleRefused("this Idempotency-Key was already used with a different request",
                          {"Idempotency-Key": ["reused with a different body"]})
    return dict(order, replayed=True)


def placed_view(order):
    """What placing an order answers: its view (with the address: the buyer's own), and `replayed: true` when
    the order was made before, under the same Idempotency-Key (the gateway turns it into Idempotent-Replayed)."""
    view = order_view(order, with_address=True)
    if order.get("replayed"):
        view["replayed"] = True
    return view


def order_view(order, with_address):
    view = {
        "order_id": order["_id"], "status": order["status"], "buyer_id": order["buyer_id"],
        "merchant_id": order["merchant_id"], "group_id": order.get("group_id"), "share_code": order.get("share_code"),
        "lines": [{k: line[k] for k in ("sku_id", "product_id", "title", "qty", "unit_price_fen", "goods_fen")}
                  for line in order["lines"]],
        "goods_fen": order["goods_fen"], "shipping_fen": order["shipping_fen"],
        "discount_fen": order["discount_fen"], "total_fen": order["total_fen"],
        "refunded_fen": order.get("refunded_fen", 0), "refund_id": order.get("refund_id"),
        "trade_no": order.get("trade_no"), "carrier": order.get("carrier"), "tracking_no": order.get("tracking_no"),
        "cancel_reason": order.get("cancel_reason"),
        "created_at": _iso(order["created_at"]), "paid_at": _iso(order.get("paid_at")),
        "shipped_at": _iso(order.get("shipped_at")), "completed_at": _iso(order.get("completed_at")),
        "cancelled_at": _iso(order.get("cancelled_at")), "after_sales_until": _iso(order.get("after_sales_until")),
        "pay_before": _iso(order.get("due_at")) if order["status"] == PENDING else None,
    }
    if with_address:  # the buyer and the order's merchant only (docs/rules.md, Privacy)
        view["address"] = order["address"]
    return view


def refund_view(refund):
    return {"refund_id": refund["_id"], "order_id": refund["order_id"], "kind": refund["kind"],
            "status": refund["status"], "amount_fen": refund["amount_fen"], "reason": refund.get("reason"),
            "reject_reason": refund.get("reject_reason"), "created_at": _iso(refund["created_at"]),
            "decided_at": _iso(refund.get("decided_at")), "return_goods": bool(refund.get("return_goods")),
            "auto_approved": bool(refund.get("auto_approved")),
            "respond_before": _iso(refund.get("due_at")) if refund["status"] == R_REQUESTED else None,
            "ship_back_before": _iso(refund.get("due_at")) if refund["status"] == R_AWAITING_RETURN else None,
            "received_by": _iso(refund.get("due_at")) if refund["status"] == R_RETURNING else None,
            "close_reason": refund.get("close_reason"),
            "return_carrier": refund.get("return_carrier"), "return_tracking_no": refund.get("return_tracking_no"),
            "returned_at": _iso(refund.get("returned_at")), "return_received_at": _iso(refund.get("received_at")),
            "dispute_id": refund.get("dispute_id"), "decision_reason": refund.get("decision_reason"),
            "refunded_at": _iso(refund.get("refunded_at"))}


def dispute_view(dispute):
    """A dispute (a refund of kind "dispute") as the admin queue shows it."""
    decided = dispute["status"] != R_DISPUTED
    outcome = None
    if decided:
        outcome = "reject" if dispute["status"] == R_REJECTED else "refund"
    return {"dispute_id": dispute["_id"], "order_id": dispute["order_id"], "refund_id": dispute["escalated_from"],
            "buyer_id": dispute["buyer_id"], "merchant_id": dispute["merchant_id"],
            "status": "decided" if decided else "open", "amount_fen": dispute["asked_fen"],
            "reason": dispute.get("reason"), "merchant_reason": dispute.get("merchant_reason"),
            "outcome": outcome, "refunded_fen": dispute["amount_fen"] if outcome == "refund" else 0,
            "refund_status": dispute["status"], "decided_by": dispute.get("decided_by"),
            "decision_reason": dispute.get("decision_reason"), "decided_at": _iso(dispute.get("decided_at")),
            "created_at": _iso(dispute["created_at"])}


def group_view(group):
    return {"group_id": group["_id"], "status": public_group_status(group["status"]), "size": group["size"],
            "product_id": group["product_id"], "sku_id": group["sku_id"], "price_fen": group["price_fen"],
            "leader_id": group["leader_id"], "seats_left": group["free_seats"],
            "members": [{"user_id": m["user_id"], "paid": m["paid"]} for m in group["members"]],
            "expires_at": group["expires_at"].isoformat(), "formed_at": _iso(group.get("formed_at"))}


def open_group_view(group):
    """A group shown on its product's page, for shoppers to join."""
    return {"group_id": group["_id"], "size": group["size"], "seats_left": group["free_seats"],
            "price_fen": group["price_fen"], "leader_id": group["leader_id"],
            "expires_at": group["expires_at"].isoformat()}


def group_event_data(group, members, **extra):
    return {"group_id": group["_id"], "product_id": group["product_id"], "sku_id": group["sku_id"],
            "leader_id": group["leader_id"], "size": group["size"],
            "order_ids": [m["order_id"] for m in members], "member_ids": [m["user_id"] for m in members], **extra}
