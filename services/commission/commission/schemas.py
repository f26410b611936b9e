"""RPC payload schemas of the commission service (the gateway reuses them for HTTP bodies and queries)."""
from marshmallow import fields, validate

from commission.domain import MIN_WITHDRAWAL_FEN
from kit.validation import Fen, Id, StrictSchema


class CommissionListQuery(StrictSchema):
    """limit and cursor of a newest-first list."""
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))


class UserListQuery(CommissionListQuery):
    user_id = Id(required=True)


class WithdrawalBody(StrictSchema):
    amount_fen = Fen(minimum=MIN_WITHDRAWAL_FEN, required=True,
                     metadata={"description": f"at least {MIN_WITHDRAWAL_FEN} fen, at most the withdrawable balance"})


class WithdrawalRequest(WithdrawalBody):
    user_id = Id(required=True)
    idempotency_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 100))


class UserRef(StrictSchema):
    user_id = Id(required=True)


class PreviewQuery(StrictSchema):
    prices = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$")),
                         values=Fen(), required=True, validate=validate.Length(max=60))
    level1_bp = fields.Integer(strict=True, required=True, validate=validate.Range(0, 10000))
    level2_bp = fields.Integer(strict=True, load_default=0, validate=validate.Range(0, 10000))
