"""The gateway: Quanzi's HTTP API. Routes live in routes/ by domain; this class only composes them with the
dependencies they share. See README for why the edge runs inside nameko (one process model, RPC proxies and
event-fed read models in the same container)."""
from gateway.cache import ProductCache
from gateway.routes.auth import AuthRoutes
from gateway.routes.catalog import CatalogRoutes
from gateway.routes.media import MediaRoutes
from gateway.routes.commission import CommissionRoutes
from gateway.routes.orders import OrderRoutes
from gateway.routes.safety import SafetyRoutes
from gateway.routes.social import SocialRoutes
from gateway.routes.system import SystemRoutes
from gateway.store import GatewayStore
from kit.mongo import MongoStore
from kit.service import ServiceBase


class GatewayService(AuthRoutes, CatalogRoutes, CommissionRoutes, MediaRoutes, OrderRoutes, SafetyRoutes, SocialRoutes,
                     SystemRoutes, ServiceBase):
    name = "gateway"
    store = MongoStore(GatewayStore, relay=False)
    products = ProductCache()
