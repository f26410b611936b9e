"""Commission entrypoints: event consumers (attribution facts, the order lifecycle), the settlement sweep, and
RPCs for balances, the ledger, withdrawals and reconciliation. Thin: validate, delegate to the store.

Compliance by construction: the social events (share.created, share.clicked, user.joined, inviter.bound) only
record who shared, clicked and invited; money moves on order events only, one order at a time (C2, C4, C8).
"""
from datetime import timedelta

from nameko.timer import timer
from prometheus_client import Counter

from commission import domain, schemas
from commission.payout import PayoutProvider
from commission.store import CommissionStore
from kit.amqp import rpc
from kit.config import load_settings
from kit.events import on_event
from kit.mongo import MongoStore
from kit.service import ServiceBase
from kit.validation import load, utcnow

# Read when the class is defined (nameko fixes a timer's interval there). A bad setting, such as
# COMMISSION_MAX_LEVELS=3, stops the process right here with a message naming the variable.
SWEEP_INTERVAL = load_settings().sweep_interval
CLAIM_LEASE = timedelta(seconds=30)  # a claim held by a replica that died expires after this
SWEEP_BATCH = 200  # most items one sweep handles per kind; the next tick continues
RECONCILE_INTERVAL = 900  # seconds between automatic checks (operators also run `make reconcile` / the CronJob)

SETTLED = Counter("quanzi_commissions_settled_total", "Commissions made withdrawable by the sweep")
WITHDRAWALS = Counter("quanzi_withdrawals_total", "Withdrawal payouts by outcome", ["outcome"])


class CommissionService(ServiceBase):
    name = "commission"
    store = MongoStore(CommissionStore)
    payouts = PayoutProvider()

    # -- who shared, clicked, invited: facts for attribution, never money ---------------------------------
    @on_event("social_feed", "share.created")
    def share_created(self, event, session):
        data = event["data"]
        self.store.record_share(session, data["share_code"], data["sharer_id"], data["product_id"],
                                domain.parse_time(data["created_at"]))

    @on_event("social_feed", "share.clicked")
    def share_clicked(self, event, session):
        self.store.record_click(session, event["id"], event["data"])

    @on_event("social_feed", "user.joined")
    def user_joined(self, event, session):
        data = event["data"]
        self.store.record_inviter(session, data["user_id"], data["inviter_id"], domain.parse_time(data["joined_at"]))

    @on_event("social_feed", "inviter.bound")
    def inviter_bound(self, event, session):
        data = event["data"]
        self.store.record_inviter(session, data["user_id"], data["inviter_id"], domain.parse_time(data["bound_at"]))

    # -- the order lifecycle: every event adds facts, then the commissions follow them --------------------
    @on_event("orders", "order.paid", together=True)
    def order_paid(self, event, session):
        self._order_event(event, session)

    @on_event("orders", "order.completed")
    def order_completed(self, event, session):
        self._order_event(event, session)

    @on_event("orders", "order.cancelled")
    def order_cancelled(self, event, session):
        self._order_event(event, session)

    @on_event("orders", "order.refund_requested")
    def order_refund_requested(self, event, session):
        self._order_event(event, session)

    @on_event("orders", "order.refund_rejected")
    def order_refund_rejected(self, event, session):
        self._order_event(event, session)

    @on_event("orders", "order.refunded")
    def order_refunded(self, event, session):
        self._order_event(event, session)

    @on_event("orders", "groupbuy.failed")
    def groupbuy_failed(self, event, session):
        for order_id in event["data"]["order_ids"]:
            self.store.apply_order_event(session, order_id, event["type"], event["data"])

    def _order_event(self, event, session):
        self.store.apply_order_event(session, event["data"]["order_id"], event["type"], event["data"])

    # -- timers ----------------------------------------------------------------------------------------
    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        """Settle what waited out its after-sales window; finish payouts a crash left unrecorded. Each item
        is claimed atomically, so any number of replicas can sweep at once."""
        margin = domain.settle_margin(self.config.sweep_interval)
        for _ in range(SWEEP_BATCH):
            claimed = self.store.claim_due_settlement(utcnow(), margin, CLAIM_LEASE)
            if claimed is None:
                break
            if self.store.settle(claimed["_id"], margin):
                SETTLED.inc()
        for _ in range(SWEEP_BATCH):
            withdrawal = self.store.claim_unfinished_withdrawal(utcnow(), CLAIM_LEASE)
            if withdrawal is None:
                break
            self._pay_out(withdrawal)

    @timer(interval=RECONCILE_INTERVAL)
    def reconcile_periodically(self):
        """Keeps quanzi_reconciliation_difference_fen current for the alert (a read-only snapshot pass)."""
        self.store.reconcile()

    # -- RPC -------------------------------------------------------------------------------------------
    @rpc
    def summary(self, user_id):
        user_id = load(schemas.UserRef, {"user_id": user_id})["user_id"]
        return domain.balance_view(self.store.balance(user_id))

    @rpc
    def ledger(self, user_id, params=None):
        query = load(schemas.UserListQuery, {**(params or {}), "user_id": user_id})
        rows, next_cursor = self.store.ledger_page(query["user_id"], query["limit"], query["cursor"])
        return {"items": [domain.ledger_view(entry, status) for entry, status in rows], "next_cursor": next_cursor}

    @rpc
    def withdrawals(self, user_id, params=None):
        query = load(schemas.UserListQuery, {**(params or {}), "user_id": user_id})
        docs, next_cursor = self.store.withdrawals_page(query["user_id"], query["limit"], query["cursor"])
        return {"items": [domain.withdrawal_view(w) for w in docs], "next_cursor": next_cursor}

    @rpc
    def request_withdrawal(self, user_id, payload, idempotency_key=None):
        """Take the amount from the withdrawable balance (409 if it is not there), pay it out through the
        provider, record the outcome; a failed or rejected payout returns the money."""
        data = load(schemas.WithdrawalRequest, {**payload, "user_id": user_id, "idempotency_key": idempotency_key})
        withdrawal, created = self.store.request_withdrawal(data["user_id"], data["amount_fen"],
                                                            data["idempotency_key"], CLAIM_LEASE)
        if created:
            withdrawal = self._pay_out(withdrawal)
        return domain.withdrawal_view(withdrawal)

    @rpc
    def preview(self, payload):
        """Per-unit level-1 commission for a product page (prices keyed by SKU id, or "group")."""
        data = load(schemas.PreviewQuery, payload)
        return domain.preview(data["prices"], data["level1_bp"], data["level2_bp"],
                              self.config.commission_max_total_bp)

    @rpc
    def reconcile(self):
        """Admin/operator: every balance and commission recomputed from the ledger; any difference listed."""
        return self.store.reconcile()

    def _pay_out(self, withdrawal):
        paid, reason = self.payouts.pay(withdrawal["_id"], withdrawal["user_id"], withdrawal["amount_fen"])
        finished = self.store.finish_withdrawal(withdrawal["_id"], paid, reason)
        WITHDRAWALS.labels("completed" if paid else "failed").inc()
        return finished
