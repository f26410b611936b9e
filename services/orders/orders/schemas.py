"""RPC payload schemas the orders service uses internally (what the gateway passes: contracts.api.orders)."""
from marshmallow import fields, validate

from kit.validation import Id, StrictSchema


class Viewer(StrictSchema):
    """Who asks: the gateway passes the signed-in user."""
    user_id = Id(required=True)
    is_admin = fields.Boolean(load_default=False)


class Ref(StrictSchema):
    id = Id(required=True)


class BatchedOrder(StrictSchema):
    """One order of a batch the gateway sends (its payload is validated on its own: contracts.api.orders)."""
    buyer_id = Id(required=True)
    payload = fields.Dict(required=True)
    idempotency_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 255))
    request_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200))


class OrderBatch(StrictSchema):
    orders = fields.List(fields.Nested(BatchedOrder), required=True, validate=validate.Length(1, 64))


class NotificationBatch(StrictSchema):
    """Payment notifications the gateway received together (each one is validated on its own:
    contracts.api.orders.PaymentNotification)."""
    notifications = fields.List(fields.Dict(), required=True, validate=validate.Length(1, 64))


class BatchedPay(StrictSchema):
    """One pay of a batch the gateway sends: who pays which order."""
    viewer = fields.Nested(Viewer, required=True)
    order_id = Id(required=True)


class PayBatch(StrictSchema):
    """Each pay is validated on its own (BatchedPay): one bad order id refuses that pay only."""
    pays = fields.List(fields.Dict(), required=True, validate=validate.Length(1, 64))
