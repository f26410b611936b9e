"""Errors a service raises on purpose. Plain classes (domain code raises them without importing nameko);
`register_with_nameko()` makes an RPC caller get the same class back with its arguments, and the gateway maps
each class to one HTTP status in a single table."""


class CallerError(Exception):
    """An error meant for the caller: a message and per-field messages; crosses RPC with its arguments."""
    code = "error"

    def __init__(self, message="", fields=None):
        super().__init__(message, fields or {})
        self.message = message
        self.fields = fields or {}

    def __str__(self):
        return self.message


class QuanziError(CallerError):
    """A deliberate refusal: nothing was done (bad input, not found, wrong state, a business rule)."""


class InvalidInput(QuanziError):
    """Input failed validation; `fields` maps each offending field to its messages."""
    code = "invalid_input"


class NotFound(QuanziError):
    code = "not_found"


class Forbidden(QuanziError):
    code = "forbidden"


class Conflict(QuanziError):
    """Wrong state, sold out, full, duplicate."""
    code = "conflict"


class InProgress(Conflict):
    """The same request (its Idempotency-Key) is still being handled: retry shortly. The gateway answers 409 with
    Retry-After and never keeps it as the key's answer (a later retry gets the real one)."""
    code = "in_progress"


class RuleRefused(QuanziError):
    """A business rule refuses the request (e.g. after-sales window closed)."""
    code = "rule_refused"


class Unavailable(CallerError):
    """MongoDB, the broker or a service is unreachable or too slow for now: retry shortly (the gateway's 503).
    Not a QuanziError: it refuses nothing, and what was asked may or may not have happened (a saga that gets it
    must undo as for a crash, not as for a refusal). kit.amqp answers it for an RPC that failed that way."""
    code = "service_unavailable"


ALL = (InvalidInput, NotFound, Forbidden, Conflict, InProgress, RuleRefused, Unavailable)


def register_with_nameko():
    from nameko.exceptions import deserialize_to_instance
    for cls in ALL:
        deserialize_to_instance(cls)


def as_outcome(value):
    """One outcome of a batch RPC as plain data: {"result": value}, or {"error": {code, message, fields}} for a
    CallerError (a batch answers each of its requests; only the whole batch's failure raises)."""
    if isinstance(value, CallerError):
        return {"error": {"code": value.code, "message": value.message, "fields": value.fields}}
    return {"result": value}


def from_outcome(outcome):
    """The result of an outcome made by as_outcome, or its error (the same class) raised."""
    if "error" in outcome:
        error = outcome["error"]
        cls = next((c for c in ALL if c.code == error["code"]), QuanziError)
        raise cls(error["message"], error["fields"])
    return outcome["result"]


def outcome_or_error(outcome):
    """from_outcome, with the error returned instead of raised (to hand each caller of a batch its own)."""
    try:
        return from_outcome(outcome)
    except CallerError as exc:
        return exc
