"""Response schemas of the commission routes. Request bodies and queries are contracts.api.commission."""
from marshmallow import Schema, fields, validate

from gateway.schemas import page_of
from kit.validation import Id

BUCKETS = ["pending", "frozen", "withdrawable", "withdrawing", "withdrawn"]


class CommissionSummary(Schema):
    pending_fen = fields.Integer(required=True, metadata={"description": "orders paid, not yet completed"})
    frozen_fen = fields.Integer(required=True, metadata={"description": "completed, inside the after-sales window"})
    withdrawable_fen = fields.Integer(required=True)
    withdrawing_fen = fields.Integer(required=True, metadata={"description": "requested, payout in progress"})
    withdrawn_fen = fields.Integer(required=True)


class LedgerEntry(Schema):
    entry_id = Id(required=True)
    order_id = Id(allow_none=True)
    withdrawal_id = Id(allow_none=True)
    level = fields.Integer(metadata={"description": "1 or 2 for commissions, 0 for withdrawals"})
    kind = fields.String(validate=validate.OneOf(["accrual", "freeze", "settle", "reversal", "withdrawal",
                                                  "withdrawal_paid", "withdrawal_returned"]))
    amount_fen = fields.Integer()
    from_ = fields.String(data_key="from", allow_none=True, validate=validate.OneOf(BUCKETS),
                          metadata={"description": "bucket the amount left (null: new money)"})
    to = fields.String(allow_none=True, validate=validate.OneOf(BUCKETS),
                       metadata={"description": "bucket the amount went to (null: reversed)"})
    status = fields.String(allow_none=True, metadata={
        "description": "now: pending/frozen/settled/reversed (commission) or requested/completed/failed (withdrawal)"})
    at = fields.String()


LedgerPage = page_of(LedgerEntry)


class Withdrawal(Schema):
    withdrawal_id = Id(required=True)
    amount_fen = fields.Integer()
    status = fields.String(validate=validate.OneOf(["requested", "completed", "failed"]))
    reason = fields.String(allow_none=True, metadata={"description": "why the payout failed or was rejected"})
    created_at = fields.String()


WithdrawalPage = page_of(Withdrawal)


class BalanceDifference(Schema):
    user_id = Id()
    bucket = fields.String(validate=validate.OneOf(BUCKETS))
    ledger_fen = fields.Integer()
    balance_fen = fields.Integer()


class CommissionDifference(Schema):
    commission_id = fields.String()
    field = fields.String()
    stored = fields.Integer()
    ledger = fields.Integer()


class ReconciliationReport(Schema):
    ok = fields.Boolean(required=True, metadata={"description": "true when the ledger explains every balance"})
    ledger_entries = fields.Integer()
    users_checked = fields.Integer()
    commissions_checked = fields.Integer()
    differences = fields.List(fields.Nested(BalanceDifference))
    commission_differences = fields.List(fields.Nested(CommissionDifference))
