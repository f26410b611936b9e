"""The gateway's HTTP pipeline. Every route goes through the same steps, in one place:

request id → body size limit → rate limit → authentication → role check → query/body validation →
the route method (thin: calls services) → JSON response, or the error table → security headers, metrics.

Routes are methods decorated with `api(...)`; they receive a `Call` and return a payload, or
`(status, payload)`. The decorator also records what OpenAPI needs (schemas, statuses)."""
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from functools import partial

from eventlet.event import Event
from nameko.exceptions import ContainerBeingKilled
from nameko.extensions import DependencyProvider, SharedExtension
from prometheus_client import Counter, Histogram
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from gateway.auth import read_token
from gateway.errors import RETRY_AFTER, MethodNotAllowed, PayloadTooLarge, Unauthorized, error_status, retry_after
from gateway.idempotency import IdempotencyKeys, body_hash
from gateway.ratelimit import RateLimiter
from gateway.sessions import RevocationCache
from gateway.store import GatewayStore
from kit.config import load_settings
from kit.context import request_id_of
from kit.errors import Forbidden, InvalidInput, NotFound
from kit.httpd import HttpEntrypoint
from kit.metrics import LATENCY_BUCKETS
from kit.mongo import connect
from kit.validation import ID_PATTERN, load, utcnow
from kit.workerless import InFlight, Workerless

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
MAX_BODY = 1024 * 1024
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # \uD800-\uDFFF, either case
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}
_SECURITY_HEADERS_BY_LOWER = {name.lower(): (name, value) for name, value in SECURITY_HEADERS.items()}

HTTP_LATENCY = Histogram("quanzi_http_request_duration_seconds", "Gateway request time by route",
                         ["method", "route", "status"], buckets=LATENCY_BUCKETS)
HTTP_REQUESTS = Counter("quanzi_http_requests_total", "Gateway requests by route and status",
                        ["method", "route", "status"])
EDGE_ANSWERS = Counter("quanzi_http_edge_answers_total",
                       "Requests the gateway answered from a page it kept, without a worker (signed-out product pages)",
                       ["method", "route"])

ROUTES = []  # every documented api() route, for the OpenAPI document
_ROUTE_MAP = []  # (methods, url) of every concrete route, to tell 404 from 405


def allowed_methods(path):
    """The methods some route serves at `path` (empty when no route has this path)."""
    from werkzeug.routing import Map, Rule
    if not isinstance(_ROUTE_MAP, Map):
        globals()["_ROUTE_MAP"] = Map([Rule(url, methods=methods.split(",")) for methods, url in _ROUTE_MAP
                                       if "<path:" not in url])
    adapter = _ROUTE_MAP.bind("localhost")
    return sorted(m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if adapter.test(path, m))


@dataclass
class Call:
    request: object
    request_id: str
    user: dict = None
    body: dict = None
    upload: bytes = None  # the raw body of an upload route (api(..., upload=...))
    query: dict = None
    path: dict = field(default_factory=dict)

    @property
    def user_id(self):
        return self.user["user_id"] if self.user else None

    @property
    def is_admin(self):
        return bool(self.user) and "admin" in self.user["roles"]

    @property
    def idempotency_key(self):
        key = self.request.headers.get("Idempotency-Key")
        if key is not None and not (1 <= len(key) <= 100):
            raise InvalidInput("bad Idempotency-Key", {"Idempotency-Key": ["must be 1 to 100 characters"]})
        return key


class Edge(SharedExtension):
    """State shared by all routes of a gateway process: settings, rate limiter, idempotency keys, CORS."""

    def setup(self):
        self.settings = load_settings()
        self.limiter = RateLimiter.from_settings(self.settings)
        client = connect(self.settings.mongo_uri)
        db = client[f"{self.settings.mongo_db_prefix}gateway"]
        self.idempotency = IdempotencyKeys(db["idempotency"])
        self.store = GatewayStore(client, db, "gateway", self.settings)  # audit entries, revocations
        self.revocations = RevocationCache(db["revocations"])
        self.cors_origins = self.settings.cors_origins

    def start(self):
        self.container.spawn_managed_thread(self.revocations.run)

    def stop(self):
        self.revocations.stop()

    def kill(self):
        self.revocations.stop()

    def cors_headers(self, request):
        origin = request.headers.get("Origin")
        if not origin or not ({"*", origin} & self.cors_origins):
            return {}
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                   "Access-Control-Expose-Headers": "X-Request-Id, Retry-After, Idempotent-Replayed"}
        if request.method == "OPTIONS":
            headers.update({"Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
                            "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, "
                                                            "X-Request-Id",
                            "Access-Control-Max-Age": "600"})
        return headers


class EdgeState(DependencyProvider):
    """Gives routes the container's one Edge (the same shared instance the pipeline uses): e.g. a logout
    updates the revocations this replica checks, at once."""
    edge = Edge()

    def get_dependency(self, worker_ctx):
        return self.edge


def shutting_down():
    return json_response(503, {"error": {"code": "shutting_down", "message": "restarting", "fields": {}}},
                         {"Retry-After": str(RETRY_AFTER)})


def json_response(status, payload, headers=None):
    body = "" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json", headers=headers)


def error_response(exc, request_id):
    status, code, message, fields = error_status(exc)
    if status == 500:
        log.error("request %s failed: %r", request_id, exc, exc_info=(type(exc), exc, exc.__traceback__))
    elif status > 500:  # a backing service is down or slow: worth a line, not a traceback
        log.warning("request %s: %s", request_id, exc)
    headers = {}
    wait = retry_after(exc, status)
    if wait is not None:
        headers["Retry-After"] = str(wait)
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = ", ".join(exc.allowed)
    return json_response(status, {"error": {"code": code, "message": message, "fields": fields}}, headers)


class ApiRoute(HttpEntrypoint):
    edge = Edge()
    workerless = Workerless()  # `self` of a route run without a worker (worker=False)

    def __init__(self, method, path, *, auth="user", body=None, query=None, response=None, status=200,
                 summary="", tags=(), errors=(), prefix=API_PREFIX, document=True, media_type=None, error_bodies=None,
                 audit=None, audit_target=None, upload=None, idempotency="edge", anonymous_pages=None,
                 worker=True, **kwargs):
        self.route = prefix + path
        super().__init__(method, self.route, **kwargs)
        self._metrics = {}  # {status: (latency, requests)}, see metrics_of
        # a GET whose signed-out page the route keeps (e.g. gateway.cache.ProcessProductViews, whose
        # page(**path values) returns it): answered from there at the edge (anonymous_page)
        self.anonymous_pages, self.edge_answers = None, None
        if anonymous_pages is not None:  # (labelled here only: no series of zeros for every other route)
            self.anonymous_pages, self.edge_answers = anonymous_pages(), EDGE_ANSWERS.labels(method, self.route)
        self.auth, self.body_schema, self.query_schema = auth, body, query
        self.status = status
        self.audit, self.audit_target = audit, audit_target
        self.upload = upload  # {"media_types": [...], "limit": setting name}: the body is a file, not JSON
        # every POST honours Idempotency-Key: here at the edge (idempotency.py), or, for a route declared with
        # idempotency="service", by the service that keeps the key with what it makes (POST /orders)
        self.idempotent = method == "POST" and idempotency == "edge"
        # worker=False: answered in the request's own greenthread (run_without_worker, kit.workerless)
        self.worker = worker
        self.in_flight = InFlight()

    def stop(self):
        """Refuse new requests answered without a worker and let those in flight finish (nameko waits for its
        workers, not for these), before the RPC reply listener they wait on stops."""
        self.in_flight.drain()
        super().stop()

    def handle_request(self, request):
        request.shallow = False
        started = time.perf_counter()
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        request_id = request_id[:64]
        try:
            call = self.prepare(request, request_id)
            page = self.anonymous_page(call)
            if page is not None:
                response = json_response(200, page)
            else:
                response = self.run_idempotent(call) if self.idempotent else self.run_worker(call)
        except Exception as exc:
            response = error_response(exc, request_id)
        headers = response.headers
        headers.update(self.edge.cors_headers(request))
        headers["X-Request-Id"] = request_id
        # the security headers a route did not set itself (e.g. /docs loosens the CSP), added in one go: six
        # werkzeug setdefault calls took ~20 us a request (each scans the headers), this takes ~6
        own = {name.lower() for name, _ in headers.items()}
        headers.extend([header for lower, header in _SECURITY_HEADERS_BY_LOWER.items() if lower not in own])
        latency, count = self.metrics_of(response.status_code)
        latency.observe(time.perf_counter() - started)
        count.inc()
        return response

    def anonymous_page(self, call):
        """A signed-out viewer's page as the route last kept it (api's `anonymous_pages`), or None: the edge then
        answers without starting a worker (a nameko worker and its dependencies cost about a third of a cached
        product page's request)."""
        if self.anonymous_pages is None or call.user is not None:
            return None
        page = self.anonymous_pages.page(**call.path)
        if page is not None:
            self.edge_answers.inc()
        return page

    def metrics_of(self, status):
        """This route's (latency histogram, request counter) for `status`, labelled once: labels() locks and
        checks its arguments on every call."""
        metrics = self._metrics.get(status)
        if metrics is None:
            labels = (self.method, self.route, str(status))
            metrics = self._metrics[status] = (HTTP_LATENCY.labels(*labels), HTTP_REQUESTS.labels(*labels))
        return metrics

    def prepare(self, request, request_id):
        limit = getattr(self.edge.settings, self.upload["limit"]) if self.upload else MAX_BODY
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        user = read_token(self.edge.settings.jwt_secret, request.headers.get("Authorization"))
        if user is not None and self.auth is not None and self.edge.revocations.is_revoked(user["claims"]):
            raise Unauthorized("this session has ended; sign in again")
        self.edge.limiter.check(request.remote_addr, user and user["user_id"])
        if self.auth in ("user", "admin") and user is None:
            raise Unauthorized("sign in first")
        if self.auth == "admin" and "admin" not in user["roles"]:
            raise Forbidden("admins only")
        call = Call(request=request, request_id=request_id, user=user, path=dict(request.path_values))
        if self.route.startswith(API_PREFIX) and not all(map(ID_PATTERN.fullmatch, call.path.values())):
            raise NotFound("not found")  # a path segment that cannot be an id names nothing (404, like any unknown id)
        if self.query_schema is not None:
            call.query = load(self.query_schema, request.args.to_dict())
        if self.body_schema is not None:
            call.body = load(self.body_schema, self.read_json(request))
        if self.upload is not None:
            call.upload = self.read_body(request, limit)
            if not call.upload:
                raise InvalidInput("no file in the body", {"_body": ["Send the file's bytes as the body."]})
        return call

    @staticmethod
    def read_body(request, limit):
        request.max_content_length = limit
        try:
            return request.get_data(cache=True)
        except RequestEntityTooLarge:
            raise PayloadTooLarge(f"request body over {limit} bytes")

    def read_json(self, request):
        raw = self.read_body(request, MAX_BODY)
        if not raw:
            return {}
        try:
            payload = json.loads(raw)
            # JSON may escape half a surrogate pair ("\ud800"): not text, and MongoDB would refuse it later (a 500).
            # Only a \uD8xx-\uDFxx escape can carry one, so only such bodies pay for the check.
            if SURROGATE_ESCAPE.search(raw):
                json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("body holds text that is not valid Unicode", {"_body": ["Unpaired surrogate."]})
        except RecursionError:  # [[[[...]]]] a few thousand deep fits in 1 MiB and exhausts the parser's stack
            raise InvalidInput("body nests too deeply", {"_body": ["Nested too deeply."]})
        except ValueError:  # UnicodeDecodeError included
            raise InvalidInput("body is not valid JSON", {"_body": ["Invalid JSON."]})
        return payload

    def run_idempotent(self, call):
        key = call.idempotency_key
        if key is None or call.user_id is None:
            return self.run_worker(call)
        record_id = self.edge.idempotency.record_id(call.user_id, self.method, call.request.path, key)
        replay = self.edge.idempotency.begin(record_id, body_hash(call.request), call.user_id)
        if replay is not None:
            return replay
        try:
            response = self.run_worker(call)
        except Exception as exc:
            response = error_response(exc, call.request_id)
        self.edge.idempotency.finish(record_id, response)
        return response

    @staticmethod
    def context_of(call):
        """The context a request's RPCs carry (kit.context: the services log with its request id)."""
        context = {"request_id": call.request_id}
        if call.user_id:
            context["user_id"] = call.user_id
        return context

    def run_worker(self, call):
        if not self.worker:
            return self.run_without_worker(call)
        done = Event()
        try:
            self.container.spawn_worker(self, (call,), {}, context_data=self.context_of(call),
                                        handle_result=partial(self.handle_result, done))
        except ContainerBeingKilled:
            return shutting_down()
        return self.respond(call, done.wait())

    def run_without_worker(self, call):
        """The route run here, with a WorkerlessService instance as `self`: for a route that submits its request
        to a batch and waits (POST /orders, a pay, a payment notification), a nameko worker only set up the
        gateway's eleven dependencies around that wait, a fifth of the gateway's CPU per pay (measured)."""
        if self.in_flight.stopping:
            return shutting_down()
        route = getattr(self.container.service_cls, self.method_name)
        with self.in_flight, request_id_of(call.request_id):
            result = route(self.workerless.instance(self.context_of(call)), call)
        return self.respond(call, result)

    def respond(self, call, result):
        """The response of a route's result: a payload, (status, payload) or a Response."""
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int):
            status, payload = result
        else:
            status, payload = self.status, result
        if self.audit and status < 400:
            self.record_decision(call, payload)
        if isinstance(payload, Response):
            return payload
        return json_response(status, payload)

    def record_decision(self, call, payload):
        """The audit entry of a decision route, appended once it succeeded (a replayed Idempotency-Key does not
        run the route, so it appends nothing twice). The target is the path id (or `audit_target`)."""
        target = call.path.get(self.audit_target) if self.audit_target else next(iter(call.path.values()), None)
        reason = call.body.get("reason") if isinstance(call.body, dict) else None
        self.edge.store.append_audit({"at": utcnow(), "actor_id": call.user_id, "action": self.audit,
                                      "target_id": target, "reason": reason, "request_id": call.request_id})

    def handle_result(self, event, worker_ctx, result, exc_info):
        if exc_info is not None:
            event.send_exception(*exc_info)
        else:
            event.send(result)
        return result, exc_info


def api(method, path, **options):
    """Declare a gateway route; options: auth ('user', 'optional', 'admin', None), body/query/response schemas,
    status, summary, tags, errors (extra documented statuses); for the document only: media_type of the response
    (default JSON; `response` may then be a plain JSON schema dict) and error_bodies ({status: schema} for
    statuses answered with a body of their own, besides the Error shape); audit: the action name of a decision
    (e.g. "merchant.approve") whose success appends an entry to the audit log (GET /admin/audit), with the path
    id (or the path parameter named by audit_target) as target and the body's `reason`; upload: {"media_types":
    [...], "limit": the setting of its size limit} for a route whose body is a file (its raw bytes reach the route
    as `Call.upload`); anonymous_pages: for a GET whose page is the same for every signed-out viewer, a
    SharedExtension class whose `page(**path values)` returns the page the route kept there: a signed-out request
    is then answered from it, without a worker (ApiRoute.anonymous_page); worker=False: the route runs in the
    request's greenthread, without a nameko worker, and sees the service's RPC proxies and settings only
    (kit.workerless), for the busiest routes, which submit their request to a batch and wait."""
    _ROUTE_MAP.append((method, options.get("prefix", API_PREFIX) + path))
    if options.get("document", True):
        ROUTES.append({"method": method, "path": path, **options})
    return ApiRoute.decorator(method, path, **options)
