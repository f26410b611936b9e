"""RPC payload schemas the commission service uses internally (what the gateway passes: contracts.api.commission)."""
from marshmallow import fields, validate

from contracts.api.commission import CommissionListQuery, WithdrawalBody
from kit.validation import Fen, Id, StrictSchema


class UserListQuery(CommissionListQuery):
    user_id = Id(required=True)


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
