"""RPC payload schemas the catalog service uses internally (what the gateway passes: contracts.api.catalog)."""
from marshmallow import fields, validate

from kit.validation import Id, StrictSchema, WholeNumber


class ReservationLine(StrictSchema):
    sku_id = Id(required=True)
    qty = WholeNumber(required=True, validate=validate.Range(1, 999))


class Reservation(StrictSchema):
    order_id = Id(required=True)
    lines = fields.List(fields.Nested(ReservationLine), required=True, validate=validate.Length(1, 50))
    group = fields.Boolean(load_default=False, metadata={"description": "price at the group-buy price"})


class Reservations(StrictSchema):
    """Several orders' reservations in one call (the orders service's group commit)."""
    requests = fields.List(fields.Nested(Reservation), required=True, validate=validate.Length(1, 64))


class StockLoan(StrictSchema):
    """A lot of a SKU's stock lent to the orders service, or given back; idempotent by loan_id."""
    loan_id = Id(required=True)
    sku_id = Id(required=True)
    qty = WholeNumber(required=True, validate=validate.Range(0, 10_000),
                      metadata={"description": "units; 0 when lending only refreshes the SKU's price"})
