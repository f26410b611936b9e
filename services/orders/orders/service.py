"""Orders entrypoints: validate, check who may act, run the saga steps, delegate state changes to the store.

Placing an order is a saga with the catalog: intent (our DB) → seat (group joins) → stock reserved by order id
(catalog) → confirmed order + order.created (one transaction). Any failure undoes what was done, in reverse; a
crash half-way leaves a `creating` intent that the sweep undoes after domain.INTENT_TTL. Stock goes back when an
order is cancelled or refunded before shipping, through this service's own consumers of those events (retried,
idempotent: the catalog releases an order's reservation once)."""
import logging
import time
from datetime import timedelta

import eventlet
from nameko.extensions import DependencyProvider
from kit.rpc import RpcProxy, rpc
from nameko.timer import timer
from prometheus_client import Counter

from kit.config import load_settings
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, QuanziError, RuleRefused
from kit.events import on_event
from kit.mongo import MongoStore
from kit.rpc import call as rpc_call
from kit.service import ServiceBase
from kit.validation import load, new_id, utcnow
from orders import domain, faults, schemas
from orders.domain import ABANDONED, AWAITING_GROUP, CREATING, PENDING, SHIPPED
from orders.provider import SandboxPay
from orders.store import OrdersStore

log = logging.getLogger(__name__)

RPC_TIMEOUT = 10.0
IDEMPOTENT_WAIT = 10.0  # how long a retry waits for the first request with its Idempotency-Key to finish

ORDERS_PLACED = Counter("quanzi_orders_placed_total", "Orders placed, by kind", ["kind"])
GMV_FEN = Counter("quanzi_gmv_fen_total", "Gross merchandise value: money of applied payments, in fen")
PAYMENTS = Counter("quanzi_payment_notifications_total", "Payment notifications, by outcome", ["outcome"])
TIMERS = Counter("quanzi_order_timers_total", "Due work handled by the sweep", ["kind"])


def call(method, *args, timeout=RPC_TIMEOUT):
    return rpc_call(method, *args, timeout=timeout)


class Memo(DependencyProvider):
    """A per-process dict for facts that never change (a merchant's owner)."""

    def setup(self):
        self.values = {}

    def get_dependency(self, worker_ctx):
        return self.values


class OrdersService(ServiceBase):
    name = "orders"
    store = MongoStore(OrdersStore)
    catalog = RpcProxy("catalog")
    provider = SandboxPay()
    merchant_owners = Memo()

    # -- placing orders ----------------------------------------------------------------------------------
    @rpc
    def create_order(self, buyer_id, payload, idempotency_key=None):
        data = load(schemas.OrderInput, payload)
        order = self._place(self._id(buyer_id), idempotency_key, data, domain.merge_items(data["items"]))
        return domain.order_view(order, with_address=True)

    @rpc
    def open_group(self, buyer_id, payload, idempotency_key=None):
        data = load(schemas.GroupOpenInput, payload)
        order = self._place(self._id(buyer_id), idempotency_key, data, [{"sku_id": data["sku_id"],
                                                                          "qty": data["qty"]}], group="open")
        return dict(domain.order_view(order, with_address=True),
                    group=domain.group_view(self.store.group(order["group_id"])))

    @rpc
    def join_group(self, buyer_id, group_id, payload, idempotency_key=None):
        data = load(schemas.GroupJoinInput, payload)
        group_id = self._id(group_id)
        self.store.group(group_id)  # 404 before anything is written
        order = self._place(self._id(buyer_id), idempotency_key, data, [{"sku_id": data["sku_id"],
                                                                          "qty": data["qty"]}], group=group_id)
        return domain.order_view(order, with_address=True)

    def _place(self, buyer_id, key, data, items, group=None):
        """group: None, "open" (a new group led by the buyer) or the id of the group to join."""
        group_id = new_id("grp") if group == "open" else group
        deadline = time.monotonic() + IDEMPOTENT_WAIT
        while True:
            intent, existing = self.store.insert_intent(buyer_id, key, group_id, utcnow())
            if intent is not None:
                break
            if existing is not None and existing["status"] not in (CREATING, ABANDONED):
                if (existing.get("group_id") is None) != (group is None) or \
                        (group not in (None, "open") and existing["group_id"] != group):
                    raise Conflict("this Idempotency-Key was used for another request",
                                   {"Idempotency-Key": ["already used for another order"]})
                return existing  # the same key again: the same order
            if time.monotonic() > deadline:
                raise Conflict("a request with this Idempotency-Key is still being handled; retry shortly")
            eventlet.sleep(0.05)  # the first request is still placing it (or undoing a failure)
        order_id, now = intent["_id"], intent["created_at"]
        maybe_reserved = False
        try:
            joined = None
            if group not in (None, "open"):
                joined = self.store.take_seat(group_id, buyer_id, order_id, now)
                if joined is None:
                    raise domain.join_refusal(self.store.group(group_id), buyer_id, now)
            maybe_reserved = True
            try:
                reserved = call(self.catalog.reserve_stock, {"order_id": order_id, "lines": items,
                                                             "group": group is not None})
            except QuanziError:
                maybe_reserved = False  # the catalog refused: all-or-nothing, nothing was reserved
                raise
            merchant_id, lines = domain.price_lines(reserved["lines"])
            if joined is not None and lines[0]["product_id"] != joined["product_id"]:
                raise InvalidInput("this group buy is for another product", {"sku_id": ["not this group's product"]})
            order = dict(intent, merchant_id=merchant_id, lines=lines, **domain.totals(lines, group is not None),
                         address=data["address"], share_code=data.get("share_code"), refunded_fen=0,
                         status=domain.transition(intent, "create"))
            order["due_at"] = domain.due_at(order, self.config)
            new_group = None
            if group == "open":
                new_group = domain.new_group(group_id, buyer_id, order_id, lines[0],
                                             reserved["lines"][0]["group_buy"], now)
            self.store.confirm(order, new_group)
        except BaseException:
            self._undo_intent(order_id, release=maybe_reserved)
            raise
        ORDERS_PLACED.labels("group" if group else "single").inc()
        return order

    def _undo_intent(self, order_id, release=True):
        """Give back what an unfinished order took, in reverse: stock, seat, then the intent itself."""
        intent = self.store.mark_abandoned(order_id)
        if intent is None:
            return  # it became an order after all
        if release:
            call(self.catalog.release_stock, order_id)  # also blocks a reservation still on its way
        if intent.get("group_id"):
            self.store.free_seat(intent["group_id"], order_id)
        self.store.drop_intent(order_id)

    # -- reading -------------------------------------------------------------------------------------------
    @rpc
    def get_order(self, viewer, order_id):
        viewer = load(schemas.Viewer, viewer)
        order = self.store.order(self._id(order_id))
        view = domain.order_view(order, with_address=self._role(order, viewer) != "admin")
        view["refunds"] = [domain.refund_view(r) for r in self.store.refunds_of(order["_id"])]
        return view

    @rpc
    def list_orders(self, viewer, params):
        viewer, query = load(schemas.Viewer, viewer), load(schemas.OrderQuery, params)
        if query["merchant_id"]:
            if not viewer["is_admin"] and self._owner_of(query["merchant_id"]) != viewer["user_id"]:
                raise NotFound("merchant not found")
            match = {"merchant_id": query["merchant_id"]}
        elif query["buyer_id"] and query["buyer_id"] != viewer["user_id"]:
            if not viewer["is_admin"]:
                raise Forbidden("only admins may list another user's orders")
            match = {"buyer_id": query["buyer_id"]}
        else:
            match = {"buyer_id": viewer["user_id"]}
        docs, next_cursor = self.store.list_orders(match, query["status"], query["limit"], query["cursor"])
        return {"items": [domain.order_view(d, with_address=False) for d in docs], "next_cursor": next_cursor}

    @rpc
    def get_group(self, group_id):
        return domain.group_view(self.store.group(self._id(group_id)))

    @rpc
    def open_groups(self, product_id, limit=10):
        """Groups of a product a shopper can still join (the product page shows them), closing soonest first."""
        limit = max(1, min(int(limit), 50))
        return [domain.open_group_view(g) for g in self.store.open_groups(self._id(product_id), utcnow(), limit)]

    # -- buyer and merchant actions ------------------------------------------------------------------------
    @rpc
    def pay(self, viewer, order_id):
        """Pay through the sandbox provider. It notifies the shop (POST /payments/notify through the gateway)
        before this returns, so the answer normally shows the order paid; if that notification could not be
        delivered, the provider sends it again later and the order is paid then."""
        order = self._acting(viewer, order_id, "buyer")
        domain.transition(order, "pay")  # 409 unless it waits for payment
        if order.get("group_id"):
            group = self.store.group(order["group_id"])
            if not domain.payment_applies(order, group, utcnow()):  # money for it would only be refunded
                raise Conflict("this group buy has closed", {"group_id": ["closed"]})
        payment = self.provider.create_payment(order["_id"], order["total_fen"])
        self.provider.notify(payment)
        return domain.order_view(self.store.order(order["_id"]), with_address=True)

    @rpc
    def cancel(self, viewer, order_id):
        order = self._acting(viewer, order_id, "buyer")
        return domain.order_view(self.store.cancel(order["_id"], "cancel", utcnow()), with_address=True)

    @rpc
    def ship(self, viewer, order_id, payload):
        data = load(schemas.ShipInput, payload)
        order = self._acting(viewer, order_id, "merchant")
        now = utcnow()
        shipped = self.store.change(order["_id"], "ship", now, dict(data, shipped_at=now), "order.shipped",
                                    carrier=data["carrier"], shipped_at=now.isoformat())
        return domain.order_view(shipped, with_address=True)

    @rpc
    def confirm_receipt(self, viewer, order_id):
        order = self._acting(viewer, order_id, "buyer")
        return domain.order_view(self._complete(order["_id"], "confirm_receipt"), with_address=True)

    def _complete(self, order_id, action):
        now = utcnow()
        until = now + timedelta(seconds=self.config.after_sales_window)
        return self.store.change(order_id, action, now, {"completed_at": now, "after_sales_until": until},
                                 "order.completed", completed_at=now.isoformat(), after_sales_until=until.isoformat())

    @rpc
    def request_refund(self, viewer, order_id, payload):
        data = load(schemas.RefundInput, payload)
        order = self._acting(viewer, order_id, "buyer")
        refund = self.store.request_refund(order["_id"], data["reason"], data["amount_fen"], utcnow())
        if refund["status"] == "processing":  # before shipping: approved automatically
            self._pay_back(refund)
        return domain.refund_view(self.store.refund(refund["_id"]))

    @rpc
    def approve_refund(self, viewer, refund_id):
        refund = self._refund_for_merchant(viewer, refund_id)
        self._pay_back(self.store.approve_refund(refund["_id"], utcnow()))
        return domain.refund_view(self.store.refund(refund["_id"]))

    @rpc
    def reject_refund(self, viewer, refund_id, payload):
        data = load(schemas.RejectInput, payload)
        refund = self._refund_for_merchant(viewer, refund_id)
        return domain.refund_view(self.store.reject_refund(refund["_id"], data["reason"], utcnow()))

    def _refund_for_merchant(self, viewer, refund_id):
        refund = self.store.refund(self._id(refund_id))
        self._acting(viewer, refund["order_id"], "merchant")
        return refund

    def _pay_back(self, refund):
        """Return the money through the provider (idempotent by refund id), then record it. A crash in
        between leaves the refund `processing`: the sweep does both again, and the provider pays once."""
        self.provider.refund(refund["_id"], refund["trade_no"], refund["amount_fen"])
        return self.store.finish_refund(refund["_id"], utcnow())

    # -- the payment provider's callback -------------------------------------------------------------------
    @rpc
    def payment_notified(self, notification):
        """A notification whose signature the gateway verified. Applied once per trade_no; a payment the order
        can no longer take (cancelled, group closed) is refunded at once; a wrong amount is refused."""
        note = load(schemas.PaymentNotification, notification)
        try:
            outcome, refund_id = self.store.apply_payment(note, utcnow())
        except RuleRefused:
            PAYMENTS.labels("amount_mismatch").inc()
            log.warning("payment %s for order %s refused: amount %s does not match the order",
                        note["trade_no"], note["order_id"], note["amount_fen"])
            raise
        PAYMENTS.labels(outcome).inc()
        if outcome == "applied":
            GMV_FEN.inc(note["amount_fen"])
        if refund_id is not None:
            log.info("payment %s for order %s arrived too late: refunding it", note["trade_no"], note["order_id"])
            self._pay_back(self.store.refund(refund_id))
        order = self.store.order(note["order_id"])
        return {"outcome": outcome, "order_id": order["_id"], "status": order["status"], "refund_id": refund_id}

    # -- timers --------------------------------------------------------------------------------------------
    @timer(interval=load_settings().sweep_interval)
    def sweep(self):
        """Due work, claimed one item at a time (several replicas never handle one item twice; a crashed
        replica's claims expire and its items are handled again, every step being idempotent)."""
        self._drain(self.store.claim_due_order, self._order_due, "orders")
        self._drain(self.store.claim_due_refund, self._pay_back, "refunds")
        self._drain(self.store.claim_expired_group, self._fail_group, "groups")
        self.provider.redeliver_due()

    def _drain(self, claim, handle, kind, limit=200):
        for _ in range(limit):
            item = claim(utcnow())
            if item is None:
                return
            try:
                handle(item)
                TIMERS.labels(kind).inc()
            except Exception:
                log.exception("sweep: %s %s failed; it is retried when its claim expires", kind, item["_id"])

    def _order_due(self, order):
        status = order["status"]
        if status in (CREATING, ABANDONED):
            log.warning("order %s was never finished: giving its stock and seat back", order["_id"])
            self._undo_intent(order["_id"])
        elif status in (PENDING, SHIPPED):
            try:
                if status == PENDING:
                    self.store.cancel(order["_id"], "payment_timeout", utcnow())
                else:
                    self._complete(order["_id"], "auto_confirm")
            except Conflict:
                pass  # paid or confirmed just now: that change already re-armed (or cleared) the timer
        else:
            self.store.clear_due(order["_id"])

    def _fail_group(self, group):
        """The window ended unfilled: cancel unpaid seats, refund paid ones, then announce the failure. Each
        member is handled by an idempotent step, so a crash half-way resumes where it stopped."""
        group = self.store.start_failing(group["_id"], utcnow())
        if group["status"] != domain.GROUP_FAILING:
            return  # formed just in time, or failed before
        unfinished = 0
        for order in self.store.member_orders(group):
            if order["status"] == PENDING:
                self.store.cancel(order["_id"], "group_failed", utcnow())
            elif order["status"] == AWAITING_GROUP:
                refund = self.store.group_failure_refund(order, utcnow())
                self.provider.refund(refund["_id"], refund["trade_no"], refund["amount_fen"])
                faults.reached(f"group_refund:{group['product_id']}")
                self.store.finish_refund(refund["_id"], utcnow())
            elif order["status"] in (CREATING, ABANDONED):
                unfinished += 1  # a join still being placed: look again shortly
        if unfinished:
            self.store.release_claim("groups", group["_id"], retry_in=1)
            return
        members = self.store.member_orders(group)
        if any(o["status"] != domain.CANCELLED for o in members):
            self.store.release_claim("groups", group["_id"], retry_in=1)
            return
        placed = {o["_id"] for o in members}
        group["members"] = [m for m in group["members"] if m["order_id"] in placed]
        self.store.finish_failure(group, utcnow())

    # -- stock goes back ----------------------------------------------------------------------------------
    @on_event("orders", "order.cancelled")
    def release_cancelled(self, event, session):
        call(self.catalog.release_stock, event["data"]["order_id"])

    @on_event("orders", "order.refunded")
    def release_refunded(self, event, session):
        data = event["data"]
        order = self.store.orders.find_one({"_id": data["order_id"]}, {"shipped_at": 1}, session=session)
        if data["full"] and order is not None and not order.get("shipped_at"):
            call(self.catalog.release_stock, data["order_id"])

    # -- who may act --------------------------------------------------------------------------------------
    def _owner_of(self, merchant_id):
        owner = self.merchant_owners.get(merchant_id)
        if owner is None:
            owner = call(self.catalog.get_merchant, merchant_id)["owner_id"]
            self.merchant_owners[merchant_id] = owner
        return owner

    def _is(self, role, order, viewer):
        if role == "buyer":
            return order["buyer_id"] == viewer["user_id"]
        if role == "merchant":
            return self._owner_of(order["merchant_id"]) == viewer["user_id"]
        return viewer["is_admin"]

    def _role(self, order, viewer):
        """The viewer's (first) role on this order; NotFound when none: another user's order does not exist
        for them."""
        for role in ("buyer", "merchant", "admin"):
            if self._is(role, order, viewer):
                return role
        raise NotFound("order not found")

    def _acting(self, viewer, order_id, role):
        """The order, when the viewer may act on it as `role`: 404 if they cannot see it, 403 if they can but
        not in that role (a buyer shipping their own order)."""
        order, viewer = self.store.order(self._id(order_id)), load(schemas.Viewer, viewer)
        if not self._is(role, order, viewer):
            self._role(order, viewer)
            raise Forbidden(f"only the order's {role} may do this")
        return order

    @staticmethod
    def _id(value):
        return load(schemas.Ref, {"id": value})["id"]
