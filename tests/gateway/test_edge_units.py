"""Gateway edge pieces that need no stack: passwords, tokens, rate limits, the error table, OpenAPI."""
import time

import jwt
import pytest

from gateway import auth
from gateway.errors import PayloadTooLarge, RateLimited, Unauthorized, error_status
from gateway.ratelimit import RateLimiter, TokenBuckets
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, RuleRefused

KEY = "test-signing-key-0123456789abcdef0123"


def test_password_hash_is_salted_scrypt_and_verifies_only_the_right_password():
    first, second = auth.hash_password("s3cret-pass", log2n=10), auth.hash_password("s3cret-pass", log2n=10)
    assert first.startswith("scrypt$10$") and first != second
    assert "s3cret-pass" not in first
    assert auth.verify_password("s3cret-pass", first)
    assert not auth.verify_password("s3cret-pasS", first)
    assert not auth.verify_password("s3cret-pass", "md5$abc")


def test_tokens_carry_the_user_and_are_refused_when_forged_or_expired():
    token = auth.issue_token(KEY, "usr_1", ["shopper"])
    assert auth.read_token(KEY, f"Bearer {token}") == {"user_id": "usr_1", "roles": ["shopper"]}
    assert auth.read_token(KEY, None) is None
    with pytest.raises(Unauthorized):
        auth.read_token("another-key-of-the-same-length-abcdefgh", f"Bearer {token}")
    expired = jwt.encode({"sub": "usr_1", "exp": int(time.time()) - 5}, KEY, algorithm="HS256")
    with pytest.raises(Unauthorized):
        auth.read_token(KEY, f"Bearer {expired}")
    with pytest.raises(Unauthorized):
        auth.read_token(KEY, f"Basic {token}")


def test_token_bucket_allows_the_burst_then_asks_to_wait():
    buckets = TokenBuckets(rate=1, burst=3)
    assert [buckets.take("ip", 100.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("ip", 100.0) == 1
    assert buckets.take("ip", 101.1) == 0  # refilled one token after a second
    assert buckets.take("other-ip", 100.0) == 0


def test_rate_limiter_limits_users_and_ips_separately():
    limiter = RateLimiter(ip_rate=100, ip_burst=100, user_rate=1, user_burst=2)
    limiter.check("1.1.1.1", "usr_a", now=0)
    limiter.check("1.1.1.1", "usr_a", now=0)
    with pytest.raises(RateLimited) as err:
        limiter.check("1.1.1.1", "usr_a", now=0)
    assert err.value.retry_after >= 1
    limiter.check("1.1.1.1", "usr_b", now=0)  # another user behind the same IP is not punished


@pytest.mark.parametrize("exc, status", [
    (InvalidInput("x", {"f": ["bad"]}), 400), (Unauthorized("x"), 401), (Forbidden("x"), 403),
    (NotFound("x"), 404), (Conflict("x"), 409), (PayloadTooLarge("x"), 413), (RuleRefused("x"), 422),
    (RateLimited(3), 429), (KeyError("secret detail"), 500),
])
def test_error_table_maps_each_error_to_one_status_and_hides_internals(exc, status):
    got_status, code, message, fields = error_status(exc)
    assert got_status == status
    if status == 500:
        assert "secret" not in message and fields == {}


def test_openapi_document_has_schemas_and_errors_for_every_route():
    import gateway.service  # noqa: F401  (registers every route)
    from gateway.http import ROUTES
    from gateway.openapi import build_spec
    spec = build_spec(ROUTES)
    assert spec["openapi"].startswith("3.")
    operations = [(path, verb, op) for path, ops in spec["paths"].items() for verb, op in ops.items()]
    assert len(operations) >= 11
    for path, verb, op in operations:
        assert any(code.startswith("2") for code in op["responses"]), (verb, path)
        if op.get("security") == [{"bearer": []}]:
            assert "401" in op["responses"], (verb, path)
        if "requestBody" in op:
            assert "400" in op["responses"] and "413" in op["responses"], (verb, path)
    register = spec["paths"]["/api/v1/auth/register"]["post"]
    assert register["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RegisterBody"}
    assert "password" in spec["components"]["schemas"]["RegisterBody"]["properties"]
