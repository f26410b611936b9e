"""The one table that turns a failure into an HTTP status (the nameko-examples pattern)."""
from nameko.exceptions import RemoteError, UnknownService

from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, QuanziError, RuleRefused


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


class ServiceUnavailable(QuanziError):
    code = "service_unavailable"


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
    (ServiceUnavailable, 503),
]


def error_status(exc):
    """(status, code, message, fields) for an exception; anything unexpected is a 500 with no details."""
    if isinstance(exc, UnknownService):
        return 503, "service_unavailable", "a backing service is not available", {}
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status, exc.code, exc.message, exc.fields
    if isinstance(exc, RemoteError):
        return 500, "internal", "internal error", {}
    return 500, "internal", "internal error", {}
