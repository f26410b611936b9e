"""Orders entrypoints: validate, check who may act, delegate: the saga's steps (placing an order with the
catalog, the timers, refunds paid back) to orders.saga, state changes to the store.

Stock goes back when an order is cancelled or refunded before shipping, through this service's own consumers of
those events (retried, idempotent: the catalog releases an order's reservation once; an order sold from stock on
loan gives its units back to its loan in the consumer's transaction, orders.loans)."""
import logging

from nameko.extensions import DependencyProvider
from nameko.timer import timer
from prometheus_client import Counter

from contracts.api import orders as api
from kit.amqp import RpcProxy, rpc
from kit.config import load_settings
from kit.errors import CallerError, Conflict, Forbidden, NotFound, QuanziError, RuleRefused, as_outcome
from kit.events import on_event
from kit.mongo import MongoStore
from kit.service import ServiceBase
from kit.validation import load, utcnow
from orders import domain, schemas
from orders.provider import SandboxPay
from orders.saga import OrderSaga, call
from orders.store import OrdersStore

log = logging.getLogger(__name__)

GMV_FEN = Counter("quanzi_gmv_fen_total", "Gross merchandise value: money of applied payments, in fen")
PAYMENTS = Counter("quanzi_payment_notifications_total", "Payments the shop heard of, by outcome: a pay's own "
                   "(the provider's answer to its trade query) and the provider's notifications (each pay's own "
                   "notification then counts as a duplicate)", ["outcome"])


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

    @property
    def saga(self):
        return OrderSaga(self.store, self.catalog, self.provider, self.config)

    # -- placing orders ----------------------------------------------------------------------------------
    @rpc
    def create_order(self, buyer_id, payload, idempotency_key=None):
        data = load(api.OrderInput, payload)
        order = self.saga.place(self._id(buyer_id), idempotency_key, data, domain.merge_items(data["items"]))
        return domain.placed_view(order)

    @rpc
    def create_orders(self, orders):
        """Plain orders that arrived at the gateway together (its group commit), placed as one batch
        (OrderSaga.place_together): one outcome each, {"result": view} or {"error": ...} (kit.errors.as_outcome).
        Each order is logged with the request id it came with."""
        batch = load(schemas.OrderBatch, {"orders": orders})["orders"]
        outcomes, valid = [None] * len(batch), []
        for i, order in enumerate(batch):
            try:
                data = load(api.OrderInput, order["payload"])
                valid.append((i, (self._id(order["buyer_id"]), order["idempotency_key"], data,
                                  domain.merge_items(data["items"]))))
            except CallerError as exc:
                outcomes[i] = exc
        placed = self.saga.place_batch([request for _, request in valid]) if valid else []
        for (i, _), outcome in zip(valid, placed):
            outcomes[i] = outcome
        for order, outcome in zip(batch, outcomes):
            extra = {"request_id": order["request_id"]} if order["request_id"] else {}
            if isinstance(outcome, CallerError):
                log.info("order refused (batch of %d): %s", len(batch), outcome, extra=extra)
            else:
                log.info("order %s placed (batch of %d)", outcome["_id"], len(batch),
                         extra=dict(extra, order_id=outcome["_id"]))
        return [as_outcome(o if isinstance(o, CallerError) else domain.placed_view(o)) for o in outcomes]

    @rpc
    def open_group(self, buyer_id, payload, idempotency_key=None):
        data = load(api.GroupOpenInput, payload)
        order = self.saga.place(self._id(buyer_id), idempotency_key, data, [{"sku_id": data["sku_id"],
                                                                            "qty": data["qty"]}], group="open")
        return dict(domain.order_view(order, with_address=True),
                    group=domain.group_view(self.store.group(order["group_id"])))

    @rpc
    def join_group(self, buyer_id, group_id, payload, idempotency_key=None):
        data = load(api.GroupJoinInput, payload)
        group_id = self._id(group_id)
        self.store.group(group_id)  # 404 before anything is written
        order = self.saga.place(self._id(buyer_id), idempotency_key, data, [{"sku_id": data["sku_id"],
                                                                            "qty": data["qty"]}], group=group_id)
        return domain.order_view(order, with_address=True)

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
        viewer, query = load(schemas.Viewer, viewer), load(api.OrderQuery, params)
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
        """Pay through the sandbox provider (OrderSaga.pay_together): the answer shows the order paid."""
        order = self._acting(viewer, order_id, "buyer")
        if self._payable(order):
            order = self._pay_together([order])[order["_id"]]
        return domain.order_view(order, with_address=True)

    @rpc
    def pay_many(self, pays):
        """Pays that arrived at the gateway together (its group commit), paid as one batch
        (OrderSaga.pay_together): one read of the orders, one outcome each, {"result": view} or {"error": ...}
        (kit.errors.as_outcome), as `pay` answers or refuses it."""
        batch = load(schemas.PayBatch, {"pays": pays})["pays"]
        outcomes, valid, paying = [None] * len(batch), {}, {}
        for i, pay in enumerate(batch):
            try:
                valid[i] = load(schemas.BatchedPay, pay)
            except CallerError as exc:
                outcomes[i] = exc
        orders = self.store.orders_of({pay["order_id"] for pay in valid.values()})
        for i, pay in valid.items():
            try:
                order = self._may_act(orders.get(pay["order_id"]), pay["viewer"], "buyer")
                if self._payable(order):
                    paying[order["_id"]] = order
                else:
                    outcomes[i] = domain.order_view(order, with_address=True)
            except CallerError as exc:
                outcomes[i] = exc
        after = self._pay_together(list(paying.values())) if paying else {}
        for i, pay in valid.items():
            if outcomes[i] is None:
                order = after.get(pay["order_id"], paying[pay["order_id"]])
                outcomes[i] = domain.order_view(order, with_address=True)
        return [as_outcome(outcome) for outcome in outcomes]

    def _pay_together(self, orders):
        """OrderSaga.pay_together, and each payment's outcome counted and handled as a notification's is (a
        payment that came too late for its order, cancelled meanwhile, is paid back). {order id: order}."""
        after, applied = self.saga.pay_together(orders)
        for trade, outcome in applied:
            try:
                self._payment_answer(trade, outcome)
            except QuanziError:  # the order's answer below says what became of it
                pass
        return after

    def _payable(self, order):
        """Whether the order still needs its payment: False when it was paid already (a retried tap, answered
        with the paid order); 409 unless it waits for payment, or when its group buy closed (money for it would
        only be refunded)."""
        if domain.paid_already(order):
            return False
        domain.transition(order, "pay")
        if order.get("group_id"):
            group = self.store.group(order["group_id"])
            if not domain.payment_applies(order, group, utcnow()):
                raise Conflict("this group buy has closed", {"group_id": ["closed"]})
        return True

    @rpc
    def cancel(self, viewer, order_id):
        order = self._acting(viewer, order_id, "buyer")
        return domain.order_view(self.store.cancel(order["_id"], "cancel", utcnow()), with_address=True)

    @rpc
    def ship(self, viewer, order_id, payload):
        data = load(api.ShipInput, payload)
        order = self._acting(viewer, order_id, "merchant")
        now = utcnow()
        shipped = self.store.change(order["_id"], "ship", now, dict(data, shipped_at=now), "order.shipped",
                                    carrier=data["carrier"], shipped_at=now.isoformat())
        return domain.order_view(shipped, with_address=True)

    @rpc
    def confirm_receipt(self, viewer, order_id):
        order = self._acting(viewer, order_id, "buyer")
        return domain.order_view(self.saga.complete(order["_id"], "confirm_receipt"), with_address=True)

    @rpc
    def request_refund(self, viewer, order_id, payload):
        data = load(api.RefundInput, payload)
        order = self._acting(viewer, order_id, "buyer")
        refund = self.store.request_refund(order["_id"], data["reason"], data["amount_fen"], data["return_goods"],
                                           utcnow())
        if refund["status"] == domain.R_PROCESSING:  # before shipping: approved automatically
            self.saga.pay_back(refund)
        return domain.refund_view(self.store.refund(refund["_id"]))

    @rpc
    def approve_refund(self, viewer, refund_id):
        """The merchant agrees: the money goes back now, or, for a return with goods, once they are back."""
        refund = self._refund_for(viewer, refund_id, "merchant")
        return domain.refund_view(self.saga.approved(self.store.approve_refund(refund["_id"], utcnow())))

    @rpc
    def reject_refund(self, viewer, refund_id, payload):
        data = load(api.RejectInput, payload)
        refund = self._refund_for(viewer, refund_id, "merchant")
        return domain.refund_view(self.store.reject_refund(refund["_id"], data["reason"], utcnow()))

    @rpc
    def return_shipment(self, viewer, refund_id, payload):
        """The buyer sent the goods of an approved return back, with the carrier's tracking number."""
        data = load(api.ShipInput, payload)
        refund = self._refund_for(viewer, refund_id, "buyer")
        now = utcnow()
        return domain.refund_view(self.store.step_refund(refund["_id"], "ship_back", now, {
            "return_carrier": data["carrier"], "return_tracking_no": data["tracking_no"], "returned_at": now}))

    @rpc
    def confirm_return(self, viewer, refund_id):
        """The merchant received the goods back: the money goes back."""
        refund = self._refund_for(viewer, refund_id, "merchant")
        now = utcnow()
        return domain.refund_view(self.saga.approved(
            self.store.step_refund(refund["_id"], "confirm_return", now, {"received_at": now})))

    @rpc
    def escalate_refund(self, viewer, refund_id, payload):
        """A buyer whose request was rejected asks the platform to decide: a dispute, once per refund."""
        data = load(api.EscalateInput, payload)
        refund = self._refund_for(viewer, refund_id, "buyer")
        return domain.dispute_view(self.store.escalate(refund["_id"], data["reason"], utcnow()))

    # -- disputes (admins) ---------------------------------------------------------------------------------
    @rpc
    def list_disputes(self, viewer, params):
        self._admin(viewer)
        query = load(api.DisputeQuery, params)
        docs, next_cursor = self.store.disputes(query["status"], query["limit"], query["cursor"])
        return {"items": [domain.dispute_view(d) for d in docs], "next_cursor": next_cursor}

    @rpc
    def decide_dispute(self, viewer, dispute_id, payload):
        """Final: refund (all that is disputed, or `amount_fen` of it) or reject; who, why and when are kept."""
        admin_id = self._admin(viewer)
        data = load(api.DisputeDecision, payload)
        dispute = self.store.dispute(self._id(dispute_id))
        now = utcnow()
        if data["outcome"] == "reject":
            self.store.reject_refund(dispute["_id"], data["reason"], now, "decide_reject", decided_by=admin_id)
        else:
            self.saga.pay_back(self.store.decide_for_buyer(dispute["_id"], data["amount_fen"], data["reason"],
                                                           admin_id, now))
        return domain.dispute_view(self.store.refund(dispute["_id"]))

    def _admin(self, viewer):
        viewer = load(schemas.Viewer, viewer)
        if not viewer["is_admin"]:
            raise Forbidden("admins only")
        return viewer["user_id"]

    def _refund_for(self, viewer, refund_id, role):
        """The refund, when the viewer may act on its order as `role` (404 / 403 as for the order)."""
        refund = self.store.refund(self._id(refund_id))
        self._acting(viewer, refund["order_id"], role)
        return refund

    # -- the payment provider's callback -------------------------------------------------------------------
    @rpc
    def payment_notified(self, notification):
        """A notification whose signature the gateway verified. Applied once per trade_no; a payment the order
        can no longer take (cancelled, group closed) is refunded at once; a wrong amount is refused."""
        note = load(api.PaymentNotification, notification)
        try:
            applied = self.saga.apply_payment(note)
        except RuleRefused as refusal:
            applied = refusal
        return self._payment_answer(note, applied)

    @rpc
    def payments_notified(self, notifications):
        """Notifications that arrived at the gateway together (its group commit), applied as one batch
        (OrderSaga.apply_payments): one outcome each, {"result": answer} or {"error": ...}
        (kit.errors.as_outcome), as payment_notified answers or refuses it."""
        batch = load(schemas.NotificationBatch, {"notifications": notifications})["notifications"]
        outcomes, valid = [None] * len(batch), []
        for i, notification in enumerate(batch):
            try:
                valid.append((i, load(api.PaymentNotification, notification)))
            except CallerError as exc:
                outcomes[i] = exc
        applied = self.saga.apply_notifications([note for _, note in valid]) if valid else []
        for (i, note), outcome in zip(valid, applied):
            try:
                outcomes[i] = self._payment_answer(note, outcome)
            except CallerError as exc:
                outcomes[i] = exc
        return [as_outcome(outcome) for outcome in outcomes]

    def _payment_answer(self, note, applied):
        """The answer to a notification, from what applying it gave ((outcome, refund_id, status), or the
        error it raises): metrics, a late payment paid back, the order's status."""
        if isinstance(applied, RuleRefused):
            PAYMENTS.labels("amount_mismatch").inc()
            log.warning("payment %s for order %s refused: amount %s does not match the order",
                        note["trade_no"], note["order_id"], note["amount_fen"])
        if isinstance(applied, Exception):
            raise applied
        outcome, refund_id, status = applied
        PAYMENTS.labels(outcome).inc()
        if outcome == "applied":
            GMV_FEN.inc(note["amount_fen"])
        if refund_id is not None:
            log.info("payment %s for order %s arrived too late: refunding it", note["trade_no"], note["order_id"])
            self.saga.pay_back(self.store.refund(refund_id))
        if status is None or refund_id is not None:  # a repeat, or a refund paid back since: as the order is now
            status = self.store.order(note["order_id"])["status"]
        return {"outcome": outcome, "order_id": note["order_id"], "status": status, "refund_id": refund_id}

    # -- timers --------------------------------------------------------------------------------------------
    @timer(interval=load_settings().sweep_interval)
    def sweep(self):
        """Due work: unpaid orders cancelled, receipts confirmed, refunds paid back, unfilled groups failed,
        undelivered payment notifications sent again (orders.saga)."""
        self.saga.sweep()

    # -- stock goes back ----------------------------------------------------------------------------------
    @on_event("orders", "order.cancelled")
    def release_cancelled(self, event, session):
        self.saga.give_back_stock(event["data"]["order_id"], session)

    @on_event("orders", "order.refunded")
    def release_refunded(self, event, session):
        data = event["data"]
        if data["full"] and self.store.unshipped(data["order_id"], session):
            self.saga.give_back_stock(data["order_id"], session)

    # -- stock on loan: a product's change reprices it (orders.loans) ----------------------------------------
    @on_event("catalog", "product.updated")
    def reprice_updated(self, event, session):
        self.store.reprice_product(event["data"]["product_id"], session)

    @on_event("catalog", "product.hidden")
    def reprice_hidden(self, event, session):
        self.store.reprice_product(event["data"]["product_id"], session)

    # -- erasure (PIPL) -----------------------------------------------------------------------------------
    @on_event("social_feed", "user.deleted")
    def deidentify_orders(self, event, session):
        self.store.deidentify_buyer(event["data"]["user_id"], utcnow(), session)

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
        return self._may_act(self.store.order(self._id(order_id)), viewer, role)

    def _may_act(self, order, viewer, role):
        """_acting of an order read already (None: not found)."""
        if order is None:
            raise NotFound("order not found")
        viewer = load(schemas.Viewer, viewer)
        if not self._is(role, order, viewer):
            self._role(order, viewer)
            raise Forbidden(f"only the order's {role} may do this")
        return order

    @staticmethod
    def _id(value):
        return load(schemas.Ref, {"id": value})["id"]
