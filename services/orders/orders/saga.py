"""The orders saga: the multi-step work of an order that spans the catalog, the payment provider and the clock.

Placing an order is a saga with the catalog: intent (our DB) → seat (group joins) → stock reserved by order id
(catalog) → confirmed order + order.created (one transaction). Any failure undoes what was done, in reverse; a
crash half-way leaves a `creating` intent that the sweep undoes after domain.INTENT_TTL. A hot SKU's plain orders
skip that saga: they are sold from stock the catalog lent us (orders.loans), in one transaction. The sweep also cancels
unpaid orders, confirms receipt, pays back approved refunds and fails unfilled group buys. Every step is
idempotent by its business key (order, refund or group id), so a retried or resumed step does no harm.

The service's entrypoints validate and check who may act, then call these steps."""
import logging
import time
from datetime import timedelta

import eventlet
from prometheus_client import Counter

from kit.amqp import is_transient
from kit.batching import ALONE, group_commit_of
from kit.errors import CallerError, Conflict, InProgress, InvalidInput, QuanziError, Unavailable, from_outcome
from kit.rpc import call as rpc_call
from kit.validation import as_stored, new_id, utcnow
from orders import domain, faults
from orders.loans import StockLoans
from orders.domain import ABANDONED, AWAITING_GROUP, CREATING, PENDING, SHIPPED

log = logging.getLogger(__name__)

RPC_TIMEOUT = 10.0
# How long a retry waits for the first request with its Idempotency-Key to finish: below the gateway's 10 s budget,
# so the client hears "in progress, retry" (409 in_progress) rather than a timeout (503).
IDEMPOTENT_WAIT = 7.0

ORDERS_PLACED = Counter("quanzi_orders_placed_total", "Orders placed, by kind", ["kind"])
TIMERS = Counter("quanzi_order_timers_total", "Due work handled by the sweep", ["kind"])
REFUNDS_AUTO_APPROVED = Counter("quanzi_refunds_auto_approved_total",
                                "Refund requests approved by the timers after REFUND_RESPONSE_WINDOW unanswered")
RETURNS_TIMED_OUT = Counter("quanzi_returns_timed_out_total", "Returns the timers ended: closed (goods never sent "
                            "back in RETURN_SHIP_WINDOW) or received (unconfirmed in RETURN_RECEIVE_WINDOW)",
                            ["outcome"])


def call(method, *args, timeout=RPC_TIMEOUT):
    return rpc_call(method, *args, timeout=timeout)


def _batcher_of(store):
    """The process's GroupCommit of plain orders. A batch is written with the saga of its first request (its
    worker's catalog proxy)."""
    return group_commit_of(store, "orders.placed", lambda batch: batch[0][0].place_together(
        [request[1:] for request in batch]))


def _payments_of(store):
    """The process's GroupCommit of payment notifications (OrdersStore.apply_payments)."""
    return group_commit_of(store, "orders.payments", lambda notes: store.apply_payments(notes, utcnow()))


class OrderSaga:
    """The saga's steps over the service's dependencies: its store, the catalog's RPC proxy, the payment
    provider and the settings."""

    def __init__(self, store, catalog, provider, config):
        self.store, self.catalog, self.provider, self.config = store, catalog, provider, config
        self.loans = StockLoans(store, catalog, config)

    def sweep(self):
        """Due work, claimed one item at a time (several replicas never handle one item twice; a crashed
        replica's claims expire and its items are handled again, every step being idempotent)."""
        self._drain(self.store.claim_due_order, self.order_due, "orders")
        self._drain(self.store.claim_due_refund, self.pay_back, "refunds")
        self._drain(self.store.claim_timed_out_refund, self.timed_out, "timed_out_refunds")
        self._drain(self.store.claim_expired_group, self.fail_group, "groups")
        self.provider.redeliver_due()
        try:
            self.loans.settle()
        except Exception:
            log.exception("sweep: stock on loan left for the next sweep")

    def give_back_stock(self, order_id, session):
        """A cancelled (or fully refunded, never shipped) order's stock goes back once (its consumer's
        transaction): to the loan it was sold from, or through the catalog, which releases its reservation."""
        if not self.store.back_to_loan(order_id, session):
            call(self.catalog.release_stock, order_id)

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

    def place(self, buyer_id, key, data, items, group=None):
        """group: None, "open" (a new group led by the buyer) or the id of the group to join. A plain order that
        arrives while others are being placed is placed together with them (place_together)."""
        if group is not None:
            return self.place_alone(buyer_id, key, data, items, group)
        return _batcher_of(self.store).submit((self, buyer_id, key, data, items),
                                              alone=lambda: self.place_lone(buyer_id, key, data, items))

    def place_lone(self, buyer_id, key, data, items):
        """A plain order that arrived on its own: from its SKU's loan when one covers it (orders.loans), else
        through place_alone."""
        from_loans, takes = self.loans.plan([(buyer_id, key, data, items)], self.store.new_intent)
        if from_loans and self.loans.commit(from_loans, takes):
            ORDERS_PLACED.labels("single").inc()
            return from_loans[0]
        return self.place_alone(buyer_id, key, data, items)

    def place_together(self, requests):
        """Group commit of plain orders [(buyer_id, key, data, items)] that arrived together: those that stock on
        loan covers are placed from it (orders.loans: one transaction, no catalog call), the others reserved
        (place_reserved). One outcome per request (see place_reserved)."""
        from_loans, takes = self.loans.plan(requests, self.store.new_intent)
        others = [i for i in range(len(requests)) if i not in from_loans]
        # the others are reserved meanwhile: a batch that mixes both waits for the slower, not for the sum
        reserving = eventlet.spawn(self._reserve_some, requests, others) if from_loans and others else None
        try:
            placed = dict(from_loans) if self.loans.commit(from_loans, takes) else {}
        except Exception as exc:  # its outcome unknown: those orders are answered with it (a key's retry finds them)
            placed = {i: exc for i in from_loans}
        placed.update(reserving.wait() if reserving is not None else self._reserve_some(requests, others))
        placed.update(self._reserve_some(requests, [i for i in from_loans if i not in placed]))  # loans refused
        outcomes = [placed[i] for i in range(len(requests))]
        for outcome in outcomes:
            if isinstance(outcome, dict):
                ORDERS_PLACED.labels("single").inc()
        return outcomes

    def _reserve_some(self, requests, indexes):
        """place_reserved of these requests: {index: outcome}."""
        return dict(zip(indexes, self.place_reserved([requests[i] for i in indexes]))) if indexes else {}

    def place_reserved(self, requests):
        """Plain orders [(buyer_id, key, data, items)] that arrived together, their stock reserved: the saga's steps,
        each once for the whole batch: one insert of the intents, one catalog call reserving every order's stock
        (catalog.reserve_stock_many, one outcome per order), one transaction confirming the reserved orders with
        their `order.created`. A crash between any two steps leaves `creating` intents, which the sweep undoes as
        for a single order (and a retry with the same Idempotency-Key takes over). One outcome per request: the
        order, the error to raise, or ALONE for a key that names an order already (placed through place_alone,
        which finds it)."""
        intents = self.store.insert_intents([(buyer_id, key, key and domain.request_fingerprint(data))
                                             for buyer_id, key, data, _ in requests], utcnow())
        outcomes = [ALONE if intent is None else None for intent in intents]
        live = [i for i, intent in enumerate(intents) if intent is not None]
        if not live:
            return outcomes
        try:
            reserved = call(self.catalog.reserve_stock_many, {"requests": [
                {"order_id": intents[i]["_id"], "lines": requests[i][3], "group": False} for i in live]})
        except Exception as exc:  # no answer: each reservation may or may not have happened
            self._undo_all([intents[i]["_id"] for i in live], release=True)
            for i in live:
                outcomes[i] = exc
            return outcomes
        faults.reached("batch_reserved")
        orders = {}
        for i, outcome in zip(live, reserved):
            try:
                lines = from_outcome(outcome)["lines"]
                merchant_id, lines = domain.price_lines(lines)
            except Exception as exc:
                # refused (nothing reserved), or reserved but not an order we take (a cart of two merchants),
                # or its outcome unknown (Unavailable): each given back as place_alone does
                self._undo_all([intents[i]["_id"]], release="result" in outcome or not isinstance(exc, QuanziError))
                outcomes[i] = exc
                continue
            orders[i] = domain.placed_order(intents[i], merchant_id, lines, requests[i][2], False, self.config)
        if orders:
            try:
                confirmed = self.store.confirm_many(list(orders.values()))
            except Exception as exc:
                self._undo_all([order["_id"] for order in orders.values()], release=True)
                for i in orders:
                    outcomes[i] = exc
                return outcomes
            for i, order in orders.items():
                if not confirmed:  # one was abandoned meanwhile: one by one, giving back the abandoned one's
                    try:
                        self.store.confirm(order)
                    except Exception as exc:
                        self._undo_all([order["_id"]], release=True)
                        outcomes[i] = exc
                        continue
                outcomes[i] = order
        return outcomes

    def place_batch(self, requests):
        """place_together, with every outcome final: the order, or the CallerError its request answers (a key
        that names an order already is placed through place_alone; a failure of the infrastructure is
        Unavailable, as kit.amqp answers it for a single order). A bug is raised."""
        outcomes = self.place_together(requests)
        for i, outcome in enumerate(outcomes):
            if outcome is ALONE:
                try:
                    outcomes[i] = self.place_alone(*requests[i])
                except CallerError as exc:
                    outcomes[i] = exc
            elif isinstance(outcome, BaseException) and not isinstance(outcome, CallerError):
                if not is_transient(outcome):
                    raise outcome
                outcomes[i] = Unavailable("a backing store is unreachable; retry shortly")
        return outcomes

    def _undo_all(self, order_ids, release):
        """undo_intent for each; one that cannot be undone now is left `creating`/`abandoned` for the sweep."""
        for order_id in order_ids:
            try:
                self.undo_intent(order_id, release=release)
            except Exception:
                log.exception("order %s: its undo is left to the sweep", order_id)

    def place_alone(self, buyer_id, key, data, items, group=None):
        """One order, placed on its own (group buys, and a plain order when nothing else is in flight)."""
        group_id = new_id("grp") if group == "open" else group
        fingerprint = key and domain.request_fingerprint(data)
        deadline = time.monotonic() + IDEMPOTENT_WAIT
        while True:
            intent, existing = self.store.insert_intent(buyer_id, key, group_id, utcnow(), fingerprint)
            if intent is not None:
                break
            if existing is not None and existing["status"] not in (CREATING, ABANDONED):
                if (existing.get("group_id") is None) != (group is None) or \
                        (group not in (None, "open") and existing["group_id"] != group):
                    raise Conflict("this Idempotency-Key was used for another request",
                                   {"Idempotency-Key": ["already used for another order"]})
                return domain.replay_of(existing, fingerprint)  # the same key again: the same order
            if existing is not None and domain.owner_gone(existing, utcnow()):
                # The first request gave up on it and could not finish undoing it (the broker, the catalog or
                # MongoDB was away), or died with it: finish that here (each step is idempotent; a live owner
                # would find its intent abandoned and give back what it took), then place the order afresh,
                # rather than answering "still being handled" until the sweep gets to it.
                self.undo_intent(existing["_id"])
                continue
            if time.monotonic() > deadline:
                raise InProgress("a request with this Idempotency-Key is still being handled; retry shortly")
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
            order = domain.placed_order(intent, merchant_id, lines, data, group is not None, self.config)
            new_group = None
            if group == "open":
                new_group = domain.new_group(group_id, buyer_id, order_id, lines[0],
                                             reserved["lines"][0]["group_buy"], now)
            self.store.confirm(order, new_group)
        except BaseException:
            self.undo_intent(order_id, release=maybe_reserved)
            raise
        ORDERS_PLACED.labels("group" if group else "single").inc()
        return order

    def undo_intent(self, order_id, release=True):
        """Give back what an unfinished order took, in reverse: stock, seat, then the intent itself."""
        intent = self.store.mark_abandoned(order_id)
        if intent is None:
            return  # it became an order after all
        if release:
            call(self.catalog.release_stock, order_id)  # also blocks a reservation still on its way
        if intent.get("group_id"):
            self.store.free_seat(intent["group_id"], order_id)
        self.store.drop_intent(order_id)

    def apply_payment(self, note):
        """A provider notification (see OrdersStore.apply_payment). One that arrives while others are being
        applied is applied together with them, in one transaction (OrdersStore.apply_payments)."""
        return _payments_of(self.store).submit(note, alone=lambda: self.store.apply_payment(note, utcnow()))

    def pay_together(self, orders):
        """The sandbox payments of orders paid together (a batch of pays, or one): one write of their payments
        at the provider; then the shop asks the provider how each went (`trade`, answered at once, as a shop
        queries Alipay / WeChat Pay when its buyer returns from paying) and applies the answers as it applies
        notifications (apply_payments, one transaction); the buyers' answers are the orders that transaction
        wrote (any other, e.g. a seat or a repeat decided alone, costs one read).
        The provider's signed notifications still go out, after, off the buyers' path (notify_later), and the
        shop answers each as a repeat. A crash between the steps loses nothing: a payment not yet applied is
        applied by its notification, which the sweep sends once the payment's hold ends.
        ({order id: order as it is now}, [(trade, what applying it gave)])."""
        payments = list(self.provider.create_payments([(order["_id"], order["total_fen"])
                                                       for order in orders]).values())
        faults.reached("pay_created")
        trades = [self.provider.trade(payment) for payment in payments]
        written = {}
        try:
            applied = self.apply_payments(trades, written)
            faults.reached("pay_applied")
        finally:  # also when the apply failed: then their notifications apply them, as soon as the shop can
            self.provider.notify_later(payments)
        others = [order["_id"] for order in orders if order["_id"] not in written]
        return {**(self.store.orders_of(others) if others else {}), **written}, list(zip(trades, applied))

    def apply_payments(self, notes, written=None):
        """Notifications that arrived together (the gateway's batch): applied in one transaction
        (OrdersStore.apply_payments, which fills `written`), and any note the batch hands back on its own. One
        outcome each: what apply_payment returns, or the QuanziError it raises (a wrong amount, an unknown
        order)."""
        # to the millisecond: a buyer's answer made from the orders written equals the orders read back
        outcomes = self.store.apply_payments(notes, as_stored(utcnow()), written)
        for i, (note, outcome) in enumerate(zip(notes, outcomes)):
            if outcome is ALONE:
                try:
                    outcomes[i] = self.store.apply_payment(note, utcnow())
                except QuanziError as refusal:
                    outcomes[i] = refusal
        return outcomes

    def apply_notifications(self, notes):
        """Notifications that arrived together (the gateway's batch): the repeats answered from one read (most
        notifications repeat the payment their pay applied already), the others applied (apply_payments)."""
        outcomes = self.store.repeats(notes)
        fresh = [i for i, outcome in enumerate(outcomes) if outcome is None]
        for i, outcome in zip(fresh, self.apply_payments([notes[i] for i in fresh]) if fresh else []):
            outcomes[i] = outcome
        return outcomes

    def complete(self, order_id, action):
        now = utcnow()
        until = now + timedelta(seconds=self.config.after_sales_window)
        return self.store.change(order_id, action, now, {"completed_at": now, "after_sales_until": until},
                                 "order.completed", completed_at=now.isoformat(), after_sales_until=until.isoformat())

    def pay_back(self, refund):
        """Return the money through the provider (idempotent by refund id), then record it. A crash in
        between leaves the refund `processing`: the sweep does both again, and the provider pays once."""
        self.provider.refund(refund["_id"], refund["trade_no"], refund["amount_fen"])
        return self.store.finish_refund(refund["_id"], utcnow())

    def approved(self, refund):
        """A refund that reached `processing` (approved, goods received, a dispute decided for the buyer) is paid
        back now; one still waiting for goods is left as it is."""
        if refund["status"] == domain.R_PROCESSING:
            self.pay_back(refund)
        return self.store.refund(refund["_id"])

    def timed_out(self, refund):
        """A refund one side left waiting past its window: approved, closed or counted as received, once (each a
        conditional transition from the status it was claimed in: the other side acting meanwhile wins)."""
        action = domain.TIMED_OUT[refund["status"]]
        try:
            if action == "auto_approve":
                return self.auto_approve(refund)
            if action == "close_unreturned":
                self.store.reject_refund(refund["_id"], domain.UNRETURNED_REASON, utcnow(), action=action)
                RETURNS_TIMED_OUT.labels("closed").inc()
                return None
            now = utcnow()
            received = self.store.step_refund(refund["_id"], action, now, {"received_at": now, "auto_received": True})
        except Conflict:
            return None
        RETURNS_TIMED_OUT.labels("received").inc()
        return self.approved(received)

    def auto_approve(self, refund):
        """A request the merchant left unanswered for REFUND_RESPONSE_WINDOW: approved, once (a conditional
        transition from `requested`: another replica, or the merchant answering meanwhile, makes it a no-op)."""
        try:
            approved = self.store.approve_refund(refund["_id"], utcnow(), auto=True)
        except Conflict:
            return
        REFUNDS_AUTO_APPROVED.inc()
        self.approved(approved)

    def order_due(self, order):
        status = order["status"]
        if status in (CREATING, ABANDONED):
            log.warning("order %s was never finished: giving its stock and seat back", order["_id"])
            self.undo_intent(order["_id"])
        elif status in (PENDING, SHIPPED):
            try:
                if status == PENDING:
                    self.store.cancel(order["_id"], "payment_timeout", utcnow())
                else:
                    self.complete(order["_id"], "auto_confirm")
            except Conflict:
                pass  # paid or confirmed just now: that change already re-armed (or cleared) the timer
        else:
            self.store.clear_due(order["_id"])

    def fail_group(self, group):
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
        if any(o["status"] not in (domain.CANCELLED, domain.REFUNDED) for o in members):
            self.store.release_claim("groups", group["_id"], retry_in=1)
            return
        placed = {o["_id"] for o in members}
        group["members"] = [m for m in group["members"] if m["order_id"] in placed]
        self.store.finish_failure(group, utcnow())
