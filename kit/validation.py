"""Input validation shared by every RPC and HTTP entry: one marshmallow schema per payload, unknown fields
rejected, and no user-supplied key can become a Mongo operator or a dotted path."""
import functools
import re
import secrets
from datetime import datetime, timezone

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from kit.errors import InvalidInput

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def utcnow():
    return datetime.now(timezone.utc)


def as_stored(moment):
    """`moment` to the millisecond, as MongoDB keeps it: what a service answers from a document it just made then
    equals what it answers from the same document read back."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def new_id(prefix):
    """Unguessable, URL-safe id with a type prefix (ord_…, usr_…) so ids are recognisable in logs."""
    return f"{prefix}_{secrets.token_hex(10)}"


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class Pattern(validate.Regexp):
    """validate.Regexp where the WHOLE value must match: Python's `$` also matches before a final newline
    ("usr_1\n"), JSON Schema's does not. The pattern stays JSON-Schema-friendly for the API document (apispec
    publishes it as `pattern`), and the code accepts exactly what the document says."""

    def __call__(self, value):
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Id(fields.String):
    def __init__(self, **kwargs):
        kwargs.setdefault("validate", Pattern(ID_PATTERN, error="Not a valid id."))
        super().__init__(**kwargs)


class WholeNumber(fields.Integer):
    """A JSON integer (money, stock, quantities, rates). JSON and JSON Schema make no difference between 100 and
    100.0 (one number; `type: integer` matches both), so both load as the int 100, as the API document promises;
    100.5, "100", true and NaN are refused rather than coerced."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


class Fen(WholeNumber):
    """Money in integer fen (100.0 is 100; fractions, bools and strings are refused)."""

    def __init__(self, minimum=0, maximum=10**12, **kwargs):
        kwargs.setdefault("validate", validate.Range(min=minimum, max=maximum))
        super().__init__(**kwargs)


class SafeDict(fields.Dict):
    """A free-form string map (e.g. SKU attributes) whose keys can never act as Mongo operators or paths."""

    def __init__(self, max_items=20, **kwargs):
        super().__init__(
            keys=fields.String(validate=[validate.Length(1, 40),
                                         Pattern(r"^[^$.\x00]+$", error="Key may not contain '$' or '.'.")]),
            values=fields.String(validate=validate.Length(0, 200)),
            validate=validate.Length(max=max_items),
            **kwargs,
        )


@functools.lru_cache(maxsize=None)
def schema_instance(schema_cls):
    """One instance per schema class: building a marshmallow schema (deep-copying its fields, nested schemas
    included) costs several times what a load costs, and a schema keeps no per-call state."""
    return schema_cls()


def load(schema, payload, partial=False):
    """Validate `payload` with `schema` (class or instance); raise InvalidInput naming every bad field."""
    if isinstance(schema, type):
        schema = schema_instance(schema)
    if not isinstance(payload, dict):
        raise InvalidInput("request body must be a JSON object", {"_schema": ["Expected a JSON object."]})
    try:
        return schema.load(payload, partial=partial)
    except ValidationError as err:
        messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
        raise InvalidInput("invalid input", messages)
