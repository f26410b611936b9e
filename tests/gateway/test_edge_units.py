"""Gateway edge pieces that need no stack: passwords, tokens, rate limits, the error table, OpenAPI."""
import json
import time

import eventlet
import jwt
import pytest
from kombu.exceptions import OperationalError
from nameko.exceptions import UnknownService
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from gateway import auth
from gateway.errors import PayloadTooLarge, RateLimited, Unauthorized, error_status
from gateway.http import error_response
from gateway.ratelimit import RateLimiter, TokenBuckets
from kit.errors import Conflict, Forbidden, InvalidInput, NotFound, RuleRefused, Unavailable

KEY = "test-signing-key-0123456789abcdef0123"


def test_password_hash_is_salted_scrypt_and_verifies_only_the_right_password():
    first, second = auth.hash_password("s3cret-pass", log2n=10), auth.hash_password("s3cret-pass", log2n=10)
    assert first.startswith("scrypt$10$") and first != second
    assert "s3cret-pass" not in first
    assert auth.verify_password("s3cret-pass", first)
    assert not auth.verify_password("s3cret-pasS", first)
    assert not auth.verify_password("s3cret-pass", "md5$abc")


def test_tokens_carry_the_user_and_are_refused_when_forged_or_expired():
    token = auth.issue_token(KEY, "usr_1", ["shopper"], version=3)
    principal = auth.read_token(KEY, f"Bearer {token}")
    assert {k: principal[k] for k in ("user_id", "roles")} == {"user_id": "usr_1", "roles": ["shopper"]}
    assert principal["claims"]["ver"] == 3 and len(principal["claims"]["jti"]) == 16
    assert auth.read_token(KEY, None) is None
    with pytest.raises(Unauthorized):
        auth.read_token("another-key-of-the-same-length-abcdefgh", f"Bearer {token}")
    expired = jwt.encode({"sub": "usr_1", "exp": int(time.time()) - 5}, KEY, algorithm="HS256")
    with pytest.raises(Unauthorized):
        auth.read_token(KEY, f"Bearer {expired}")
    with pytest.raises(Unauthorized):
        auth.read_token(KEY, f"Basic {token}")
    # a token verified once is remembered, for its key only and until it expires, never beyond
    assert auth.read_token(KEY, f"Bearer {token}")["user_id"] == "usr_1"
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(Unauthorized):
        auth.read_token(KEY, f"Bearer {forged}")
    short = jwt.encode({"sub": "usr_1", "exp": time.time() + 1}, KEY, algorithm="HS256")
    assert auth.read_token(KEY, f"Bearer {short}")["user_id"] == "usr_1"
    time.sleep(1.1)
    with pytest.raises(Unauthorized):
        auth.read_token(KEY, f"Bearer {short}")


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


def _route_sources():
    """(METHOD, path as documented) -> (the ApiRoute, the source of the route method) of every gateway route."""
    import inspect
    import re
    from gateway.http import ApiRoute
    from gateway.service import GatewayService
    found = {}
    for _, method in inspect.getmembers(GatewayService, inspect.isfunction):
        for entrypoint in getattr(method, "nameko_entrypoints", ()):
            if isinstance(entrypoint, ApiRoute):
                path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", entrypoint.route)
                found[(entrypoint.method, path)] = (entrypoint, inspect.getsource(method))
    return found


def test_openapi_document_tells_everything_a_client_may_get_from_every_route():
    """Every documented operation: a response schema (except 204), a request body when the route reads one, its
    query parameters when it reads them, 401 when it needs a token, 403 under /admin, 404 when a path names
    something, and every error answered with the Error shape. A route that reads the signed-in user must ask
    for a token."""
    from gateway.http import API_PREFIX, ROUTES
    from gateway.openapi import build_spec
    spec = build_spec(ROUTES)
    routes = _route_sources()
    declared = {(r["method"], r.get("prefix", API_PREFIX) + r["path"]): r for r in ROUTES}
    problems = []
    for path, methods in spec["paths"].items():
        for verb, op in methods.items():
            name = f"{verb.upper()} {path}"
            entrypoint, source = routes[(verb.upper(), path)]
            own_bodies = declared[(verb.upper(), entrypoint.route)].get("error_bodies", {})  # e.g. /health's 503
            responses = op["responses"]
            ok = [code for code in responses if code.startswith("2")]
            if len(ok) != 1:
                problems.append(f"{name}: one success status expected, documented {ok}")
            elif ok[0] != "204" and not any("schema" in m for m in responses[ok[0]].get("content", {}).values()):
                problems.append(f"{name}: no response schema for {ok[0]}")
            if "c.body" in source and "requestBody" not in op:
                problems.append(f"{name}: reads a body but documents none")
            if "c.query" in source and not any(p.get("in") == "query" for p in op.get("parameters", [])):
                problems.append(f"{name}: reads query parameters but documents none")
            needs_token = entrypoint.auth in ("user", "admin")
            if needs_token and ("401" not in responses or op.get("security") != [{"bearer": []}]):
                problems.append(f"{name}: needs a token but does not document it (security, 401)")
            if entrypoint.auth is None and "c.user_id" in source:
                problems.append(f"{name}: reads the signed-in user but asks for no token")
            if "/admin/" in path and (entrypoint.auth != "admin" or "403" not in responses):
                problems.append(f"{name}: an admin route must be auth='admin' and document 403")
            if "{" in path and "404" not in responses:
                problems.append(f"{name}: names something in its path but does not document 404")
            for code, response in responses.items():
                if code[0] in "45" and int(code) not in own_bodies and \
                        response["content"]["application/json"]["schema"] != {"$ref": "#/components/schemas/Error"}:
                    problems.append(f"{name}: {code} is not documented with the Error shape")
    assert not problems, "\n".join(problems)
    documented = {(verb.upper(), path) for path, methods in spec["paths"].items() for verb in methods}
    pages = {("GET", path) for path in ("/", "/s/{share_code}", "/merchant/", "/admin/", "/assets/{name}",
                                        "/media/{name}")}  # the web app's pages and files: not API operations
    assert set(routes) - documented == pages | {("OPTIONS", "/{path}"),  # CORS
                                                ("GET,POST,PUT,PATCH,DELETE", "/{path}")}  # JSON 404/405 elsewhere



def test_the_openapi_document_publishes_the_rules_the_code_applies():
    """What the positive-data check of the fuzz gate relies on: the document's patterns are the code's own."""
    import re

    import gateway.service  # noqa: F401  (registers every route)
    from contracts.api.fields import IMAGE_URL_PATTERN
    from contracts.api.social_feed import CONTENT_CHARACTER
    from gateway.http import ROUTES
    from gateway.openapi import build_spec
    from kit.paging import CURSOR_PATTERN
    schemas = build_spec(ROUTES)["components"]["schemas"]
    # every picture may be an https URL or the site's own /media/<file> (uploaded with POST /media, or the demo's)
    assert schemas["ProductInput"]["properties"]["images"]["items"]["pattern"] == IMAGE_URL_PATTERN
    assert schemas["MomentInput"]["properties"]["images"]["items"]["pattern"] == IMAGE_URL_PATTERN
    assert schemas["ProfileUpdate"]["properties"]["avatar_url"]["pattern"] == IMAGE_URL_PATTERN
    assert "format" not in schemas["ProfileUpdate"]["properties"]["avatar_url"]  # no bare `format: uri`
    cursors = [s["properties"]["cursor"] for s in schemas.values() if "cursor" in s.get("properties", {})]
    assert len(cursors) >= 4 and all(c["pattern"] == CURSOR_PATTERN for c in cursors)
    assert schemas["ProfileUpdate"]["minProperties"] == 1  # {} changes nothing: refused
    assert {"text", "images", "product_id", "share_code"} == {
        branch["required"][0] for branch in schemas["MomentInput"]["anyOf"]}  # a moment needs some content
    assert not re.search(CONTENT_CHARACTER, " \t\u3000\x1c") and re.search(CONTENT_CHARACTER, " x ")


@pytest.mark.parametrize("exc", [
    # what the gateway met during a broker restart and a mongod kill -9 (answered 500 before issue 12)
    AutoReconnect("127.0.0.1:27027: connection closed"), ServerSelectionTimeoutError("no primary"),
    OperationalError("[Errno 111] ECONNREFUSED"), ConnectionResetError(104, "reset"), eventlet.Timeout(None),
    UnknownService("orders"), Unavailable("orders.create_order did not answer within 10 s"),
])
def test_an_outage_is_a_503_with_retry_after_never_a_500(exc):
    response = error_response(exc, "req-1")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert json.loads(response.get_data())["error"]["code"] == "service_unavailable"


class FlakyRecords:
    """The idempotency collection while MongoDB is away for the first `down` writes (a stub of two methods)."""

    def __init__(self, down):
        self.down, self.writes = down, []

    def _write(self, *call):
        if self.down:
            self.down -= 1
            raise AutoReconnect("mongod is restarting")
        self.writes.append(call)

    def delete_one(self, query):
        self._write("delete", query)

    def update_one(self, query, change):
        self._write("update", query, change)


@pytest.mark.parametrize("status, written", [(503, "delete"), (201, "update")])
def test_an_answer_that_could_not_be_recorded_is_recorded_once_mongodb_is_back(status, written):
    from werkzeug.wrappers import Response

    from gateway import idempotency
    # given MongoDB away for the first two writes when a request ends
    records = FlakyRecords(down=2)
    keys = idempotency.IdempotencyKeys(records)
    # when the request finishes: the caller is not held up, nothing is written yet
    keys.finish("rec1", Response('{"order_id": "ord_1"}', status=status))
    assert records.writes == []
    # then the write happens in the background as soon as MongoDB answers (third try), once
    deadline = time.monotonic() + 5
    while not records.writes and time.monotonic() < deadline:
        eventlet.sleep(0.05)
    eventlet.sleep(idempotency.FINISH_RETRY_SECONDS * 2)
    assert [w[0] for w in records.writes] == [written]
    if written == "update":
        assert records.writes[0][2]["$set"] == {"state": "done", "status": 201, "body": '{"order_id": "ord_1"}'}

