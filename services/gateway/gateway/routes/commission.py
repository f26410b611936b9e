"""Commissions: your balances, your ledger, withdrawals; for admins, anyone's ledger and the reconciliation."""

from contracts.api.commission import CommissionListQuery, WithdrawalBody
from gateway import schemas_commission as out
from gateway.http import api
from gateway.rpc import call
from kit.amqp import RpcProxy


class CommissionRoutes:
    commission = RpcProxy("commission")

    @api("GET", "/commissions/summary", response=out.CommissionSummary, tags=["commissions"],
         summary="Your commission balances: pending (paid orders), frozen (after-sales window), withdrawable, "
                 "withdrawing, withdrawn")
    def commission_summary(self, c):
        return call(self.commission.summary, c.user_id)

    @api("GET", "/commissions/ledger", query=CommissionListQuery, response=out.LedgerPage, tags=["commissions"],
         summary="Your ledger, newest first: every accrual, freeze, settlement, reversal and withdrawal")
    def commission_ledger(self, c):
        return call(self.commission.ledger, c.user_id, c.query)

    @api("POST", "/commissions/withdrawals", body=WithdrawalBody, response=out.Withdrawal, status=201,
         tags=["commissions"], errors=[409],
         summary="Withdraw settled commission (at least 100 fen) to your payout account. 409 above the "
                 "withdrawable balance. Send an Idempotency-Key header: a retry with the same key returns the "
                 "same withdrawal. A failed or rejected payout (status failed) returns the money")
    def request_withdrawal(self, c):
        return call(self.commission.request_withdrawal, c.user_id, c.body, c.idempotency_key)

    @api("GET", "/commissions/withdrawals", query=CommissionListQuery, response=out.WithdrawalPage,
         tags=["commissions"], summary="Your withdrawals, newest first")
    def list_withdrawals(self, c):
        return call(self.commission.withdrawals, c.user_id, c.query)

    # -- admin -------------------------------------------------------------------------------------------
    @api("GET", "/admin/commissions/users/<user_id>/summary", auth="admin", response=out.CommissionSummary,
         tags=["admin"], errors=[404], summary="A user's commission balances")
    def admin_commission_summary(self, c):
        return call(self.commission.summary, c.path["user_id"])

    @api("GET", "/admin/commissions/users/<user_id>/ledger", auth="admin", query=CommissionListQuery,
         response=out.LedgerPage, tags=["admin"], errors=[404], summary="A user's commission ledger, newest first")
    def admin_commission_ledger(self, c):
        return call(self.commission.ledger, c.path["user_id"], c.query)

    @api("GET", "/admin/commissions/reconciliation", auth="admin", response=out.ReconciliationReport,
         tags=["admin"], summary="Every balance and commission recomputed from the ledger; lists any difference")
    def commission_reconciliation(self, c):
        return call(self.commission.reconcile, timeout=60)
