"""The CloudEvents 1.0 envelope every Quanzi event travels in (structured mode, JSON)."""
import functools
import uuid
from datetime import datetime, timezone

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from contracts.events import spec_for


class EnvelopeSchema(Schema):
    class Meta:
        unknown = RAISE

    specversion = fields.String(required=True, validate=validate.Equal("1.0"))
    id = fields.String(required=True, metadata={"description": "unique per event; consumers dedupe on it"})
    type = fields.String(required=True, metadata={"example": "order.paid"})
    source = fields.String(required=True, metadata={"example": "/quanzi/orders"})
    subject = fields.String(allow_none=True, metadata={"description": "the aggregate id (order, user, ...)"})
    time = fields.String(required=True, metadata={"description": "ISO 8601, UTC"})
    datacontenttype = fields.String(required=True, validate=validate.Equal("application/json"))
    dataschema = fields.String(required=True, metadata={"example": "urn:quanzi:events:order.paid:v1"})
    schemaversion = fields.Integer(required=True)
    data = fields.Dict(required=True)


@functools.lru_cache(maxsize=None)
def _schema(event_type):
    return spec_for(event_type).schema()  # built once: building a schema costs more than using it


def validate_data(event_type, data):
    """Return `data` checked against the type's schema; raise ValueError naming the bad fields."""
    try:
        return _schema(event_type).load(data)
    except ValidationError as err:
        raise ValueError(f"{event_type} data does not match its contract: {err.messages}")


def make_envelope(event_type, data, subject=None, event_id=None, time=None):
    spec = spec_for(event_type)
    checked = _schema(event_type).dump(validate_data(event_type, data))
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "source": f"/quanzi/{spec.source_service}",
        "subject": subject,
        "time": (time or datetime.now(timezone.utc)).isoformat(),
        "datacontenttype": "application/json",
        "dataschema": spec.dataschema,
        "schemaversion": spec.schema_version,
        "data": checked,
    }
