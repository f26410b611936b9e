"""Health, the API document, JSON for every unknown route, and the first admin's social profile."""
import logging

from nameko.timer import timer

from contracts.asyncapi import build_asyncapi
from gateway import schemas_system as out
from gateway import web
from gateway.errors import MethodNotAllowed
from gateway.http import ROUTES, allowed_methods, api
from gateway.openapi import build_spec
from gateway.rpc import call, call_all
from kit.amqp import RpcProxy
from kit.errors import NotFound

BACKENDS = ("catalog", "orders", "social_feed", "commission")
log = logging.getLogger(__name__)


class SystemRoutes:
    social_feed = RpcProxy("social_feed")
    _admin_profile_made = False

    @timer(interval=1, eager=True)
    def make_admin_profile(self):
        """Every user has a social profile, made when they register; the first admin is created by the gateway
        itself at start (store.ensure_admin), so its profile is made here, once social-feed answers (idempotent:
        replicas and restarts may all ask)."""
        if self._admin_profile_made:
            return
        admin = self.store.user_by_phone(self.config.admin_phone)
        try:
            call(self.social_feed.create_profile, admin["_id"], admin["nickname"])
        except Exception as exc:  # social-feed not up yet: the next tick asks again
            log.warning("the admin's social profile is not made yet: %r", exc)
            return
        type(self)._admin_profile_made = True

    @api("GET", "/health", auth=None, prefix="", tags=["system"], response=out.Health, error_bodies={503: out.Health},
         summary="The gateway and every service it can reach; 503 when the gateway itself cannot reach MongoDB or "
                 "the broker")
    def http_health(self, c):
        own = self.health_report()
        answers, _ = call_all({name: (getattr(self, name).health, ()) for name in BACKENDS}, timeout=2)
        services = {name: (answer or {"status": "down"}) for name, answer in answers.items()}
        status = "ok" if own["status"] == "ok" and all(s["status"] == "ok" for s in services.values()) else "degraded"
        return (200 if own["status"] == "ok" else 503), {"status": status, "gateway": own, "services": services}


    @api("GET", "/openapi.json", auth=None, prefix="", tags=["system"], response=out.OpenApiDocument,
         summary="This API's OpenAPI 3 document")
    def openapi(self, c):
        if self._openapi is None:
            type(self)._openapi = build_spec(ROUTES)
        return self._openapi

    _openapi = None

    @api("GET", "/asyncapi.json", auth=None, prefix="", tags=["system"], response=out.AsyncApiDocument,
         summary="The AsyncAPI 3 document of every event Quanzi publishes")
    def asyncapi(self, c):
        if self._asyncapi is None:
            type(self)._asyncapi = build_asyncapi()
        return self._asyncapi

    _asyncapi = None

    @api("GET", "/docs", auth=None, prefix="", tags=["system"], response=out.HTML_PAGE, media_type="text/html",
         summary="Interactive API reference (Swagger UI 5)")
    def docs(self, c):
        return web.page(c.request, "docs.html")

    @api("GET", "/docs/events", auth=None, prefix="", tags=["system"], response=out.HTML_PAGE, media_type="text/html",
         summary="The events other teams subscribe to (the AsyncAPI document, for people)")
    def docs_events(self, c):
        return web.page(c.request, "events.html")

    # -- the web app (pages for people, outside /api/v1; not API operations, so not in the document) ----------
    @api("GET", "/", auth=None, prefix="", document=False)
    def storefront(self, c):
        return web.page(c.request)

    @api("GET", "/s/<share_code>", auth=None, prefix="", document=False)
    def share_page(self, c):
        """The page a friend opens; its script calls GET /api/v1/s/{code}, which records the click."""
        return web.page(c.request)

    @api("GET", "/merchant/", auth=None, prefix="", document=False)
    def merchant_console(self, c):
        return web.page(c.request)

    @api("GET", "/admin/", auth=None, prefix="", document=False)
    def admin_console(self, c):
        return web.page(c.request)

    @api("GET", "/assets/<path:name>", auth=None, prefix="", document=False)
    def web_asset(self, c):
        return web.asset(c.request, c.path["name"])

    @api("OPTIONS", "/<path:path>", auth=None, prefix="", document=False)
    def preflight(self, c):
        """CORS preflight: the pipeline adds the Access-Control headers for allowed origins."""
        return 204, None

    @api("GET,POST,PUT,PATCH,DELETE", "/<path:path>", auth=None, prefix="", document=False)
    def not_found(self, c):
        allowed = allowed_methods(c.request.path)
        if allowed:
            raise MethodNotAllowed(f"{c.request.method} is not allowed here", allowed)
        raise NotFound(f"no route {c.request.method} {c.request.path}")
