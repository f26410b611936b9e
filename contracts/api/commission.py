"""RPC payloads of the commission service that the gateway takes as HTTP bodies and queries."""
from marshmallow import fields, validate

from kit.validation import Fen, StrictSchema

MIN_WITHDRAWAL_FEN = 100


class CommissionListQuery(StrictSchema):
    """limit and cursor of a newest-first list."""
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))


class WithdrawalBody(StrictSchema):
    amount_fen = Fen(minimum=MIN_WITHDRAWAL_FEN, required=True,
                     metadata={"description": f"at least {MIN_WITHDRAWAL_FEN} fen, at most the withdrawable balance"})
