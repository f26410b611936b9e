"""Merchants (apply, admin review) and products (create, update, browse, view)."""

from contracts.api.catalog import MerchantApplication, ProductInput, ProductSearch, ProductUpdate, Reason
from gateway import schemas
from gateway.cache import PageParts, ProcessProductViews, ProductCache
from gateway.http import api
from gateway.rpc import answer_later, call, call_all
from kit.amqp import BROADCAST, RpcProxy, event_handler
from kit.errors import NotFound

PAGE_BUDGET = 0.12  # seconds for the optional parts, so the page answers within 150 ms even when one hangs


class CatalogRoutes:
    catalog = RpcProxy("catalog")
    orders = RpcProxy("orders")
    social_feed = RpcProxy("social_feed")
    commission = RpcProxy("commission")
    products = ProductCache()
    page_parts = PageParts()

    @api("POST", "/merchants", body=MerchantApplication, response=schemas.Merchant, status=201, tags=["merchants"],
         summary="Apply to sell; an admin reviews the application")
    def apply_merchant(self, c):
        return call(self.catalog.apply_merchant, c.user_id, c.body)

    @api("GET", "/merchants/<merchant_id>", auth="optional", response=schemas.MerchantProfile, tags=["merchants"],
         errors=[404], summary="An approved merchant's public profile and rating (over all its products' reviews); "
                               "pending, rejected or suspended: 404")
    def merchant_profile(self, c):
        return call(self.catalog.merchant_profile, c.path["merchant_id"])

    @api("POST", "/admin/merchants/<merchant_id>/approve", auth="admin", audit="merchant.approve", response=schemas.Merchant,
         tags=["admin"], summary="Approve (or reinstate) a merchant", errors=[404, 409])
    def approve_merchant(self, c):
        return call(self.catalog.review_merchant, c.path["merchant_id"], "approve")

    @api("POST", "/admin/merchants/<merchant_id>/reject", auth="admin", audit="merchant.reject", body=Reason, response=schemas.Merchant,
         tags=["admin"], summary="Reject a merchant application, with a reason", errors=[404, 409])
    def reject_merchant(self, c):
        return call(self.catalog.review_merchant, c.path["merchant_id"], "reject", c.body)

    @api("POST", "/admin/merchants/<merchant_id>/suspend", auth="admin", audit="merchant.suspend", body=Reason, response=schemas.Merchant,
         tags=["admin"], summary="Suspend a merchant: its products disappear at once", errors=[404, 409])
    def suspend_merchant(self, c):
        return call(self.catalog.review_merchant, c.path["merchant_id"], "suspend", c.body)

    @api("POST", "/products", body=ProductInput, response=schemas.Product, status=201, tags=["products"],
         summary="Create a product with SKUs (owner of an approved merchant)", errors=[403, 404])
    def create_product(self, c):
        return call(self.catalog.create_product, c.user_id, c.body)

    @api("PATCH", "/products/<product_id>", body=ProductUpdate, response=schemas.Product, tags=["products"],
         summary="Change a product, its SKU prices or stock (its merchant's owner)", errors=[404, 409, 422])
    def update_product(self, c):
        product = call(self.catalog.update_product, c.user_id, c.path["product_id"], c.body)
        self.products.drop(product["product_id"])
        return product

    @api("GET", "/products", auth="optional", query=ProductSearch, response=schemas.ProductPage, tags=["products"],
         summary="Search and browse published products of approved merchants")
    def search_products(self, c):
        return call(self.catalog.search_products, c.query)

    @api("GET", "/products/<product_id>", auth="optional", response=schemas.Product, tags=["products"],
         summary="A product with its SKUs and rating", errors=[404], anonymous_pages=ProcessProductViews)
    def get_product(self, c):
        product_id = c.path["product_id"]
        view, fresh = self.products.lookup(product_id)
        if view is not None and not fresh:
            self.refresh_view(product_id)  # answered from the view kept meanwhile (gateway.cache)
        if view is None:
            try:
                view = call(self.catalog.get_product, product_id)
                self.products.put(product_id, view)
            except NotFound:
                if not c.user_id:
                    raise
                # the owner (or an admin) may see a hidden product; never cached
                view = call(self.catalog.get_product, product_id, c.user_id, c.is_admin)
        page = self.product_page(c, view)
        if not c.user_id and not page["degraded"]:
            # the same for every signed-out viewer: the edge answers the next ones from it (gateway.cache), until
            # the view or the open groups shown expire
            until = self.page_parts["groups"].expires(product_id) if view.get("group_buy") else None
            self.products.put_page(product_id, view, page, until)
        return page

    def refresh_view(self, product_id):
        """Ask catalog for the product's view again, in the background, unless that is under way already. A product
        gone or hidden meanwhile (NotFound) leaves the read model; any other failure keeps the view kept."""
        token = self.products.begin_refresh(product_id)
        if token is None:
            return

        def failed(exc):
            if isinstance(exc, NotFound):
                self.products.drop(product_id)
            else:
                self.products.end_refresh(product_id, token)
        answer_later(self.catalog.get_product, (product_id,),
                     lambda view: self.products.end_refresh(product_id, token, view), failed)

    def product_page(self, c, view):
        """The product page in one call: the product, open groups to join and, for a signed-in viewer, friends
        who bought or shared it and what they would earn sharing it. The other services are asked in parallel
        within PAGE_BUDGET; a part that is slow or down is null and named in `degraded`."""
        product_id = view["product_id"]
        wanted = {}
        if view.get("group_buy"):
            wanted["groups"] = (product_id, self.orders.open_groups, (product_id,))
        if c.user_id:
            wanted["social"] = ((c.user_id, product_id), self.social_feed.social_proof, (c.user_id, product_id))
            prices = {s["sku_id"]: s["price_fen"] for s in view["skus"]}
            if view.get("group_buy"):
                prices["group"] = view["group_buy"]["price_fen"]
            wanted["commission"] = (product_id, self.commission.preview, ({"prices": prices, **view["commission"]},))
        parts, calls = {}, {}
        for name, (key, method, args) in wanted.items():
            parts[name] = self.page_parts[name].get(key)
            if parts[name] is None:
                calls[name] = (method, args)
        def remember(name, answer):
            self.page_parts[name].put(wanted[name][0], answer)
        answers, degraded = call_all(calls, timeout=PAGE_BUDGET, on_late=remember)
        for name, answer in answers.items():
            parts[name] = answer
            if answer is not None:
                remember(name, answer)
        return {**view, "open_groups": parts.get("groups"), "social": parts.get("social"),
                "commission_preview": parts.get("commission"), "degraded": sorted(degraded)}

    # -- keep the read model fresh ----------------------------------------------------------------
    @event_handler("catalog", "product.updated", handler_type=BROADCAST, reliable_delivery=False)
    def product_updated(self, event):
        self.products.drop(event["data"]["product_id"])
        self.page_parts["commission"].drop(event["data"]["product_id"])

    @event_handler("catalog", "product.hidden", handler_type=BROADCAST, reliable_delivery=False)
    def product_hidden(self, event):
        self.products.drop(event["data"]["product_id"])

    @event_handler("catalog", "stock.depleted", handler_type=BROADCAST, reliable_delivery=False)
    def stock_depleted(self, event):
        self.products.drop(event["data"]["product_id"])

    @event_handler("catalog", "merchant.suspended", handler_type=BROADCAST, reliable_delivery=False)
    def merchant_suspended(self, event):
        self.products.drop_merchant(event["data"]["merchant_id"])
