"""The one table that turns a failure into an HTTP status (the nameko-examples pattern).

An outage is never a 500: a backing service that is down or slow (UnknownService, a timeout), a service that
answers `Unavailable` (its MongoDB or broker is unreachable, see kit.amqp) and the gateway's own MongoDB or broker
being unreachable or a timeout (`is_transient`) are all 503 with Retry-After."""
from nameko.exceptions import RemoteError, UnknownService

from kit.amqp import is_transient
from kit.errors import Conflict, Forbidden, InProgress, InvalidInput, NotFound, QuanziError, RuleRefused, Unavailable

RETRY_AFTER = 2  # seconds a client waits before retrying after a 503 (an outage of the broker or MongoDB)
RETRY_IN_PROGRESS = 1  # ... after a 409 in_progress (the same Idempotency-Key is still being handled)


class Unauthorized(QuanziError):
    code = "unauthorized"


class PayloadTooLarge(QuanziError):
    code = "payload_too_large"


class RateLimited(QuanziError):
    code = "rate_limited"

    def __init__(self, retry_after):
        super().__init__(f"too many requests; retry after {retry_after} s")
        self.retry_after = retry_after


class MethodNotAllowed(QuanziError):
    code = "method_not_allowed"

    def __init__(self, message, allowed):
        super().__init__(message)
        self.allowed = allowed


class ServiceUnavailable(Unavailable):
    """A backing service did not answer in time (raised by the gateway itself)."""


STATUS_BY_ERROR = [
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (MethodNotAllowed, 405),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (RuleRefused, 422),
    (RateLimited, 429),
    (Unavailable, 503),
]


def error_status(exc):
    """(status, code, message, fields) for an exception; anything unexpected is a 500 with no details."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status, exc.code, exc.message, exc.fields
    if isinstance(exc, UnknownService):
        return 503, "service_unavailable", "a backing service is not available", {}
    if is_transient(exc):
        return 503, "service_unavailable", "a backing store is unreachable; retry shortly", {}
    if isinstance(exc, RemoteError):
        return 500, "internal", "internal error", {}
    return 500, "internal", "internal error", {}


def retry_after(exc, status):
    """The Retry-After of an error answer, or None."""
    if isinstance(exc, RateLimited):
        return exc.retry_after
    if isinstance(exc, InProgress):
        return RETRY_IN_PROGRESS
    return RETRY_AFTER if status == 503 else None
