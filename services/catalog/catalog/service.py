"""Catalog entrypoints: validate, check who may act, delegate to the store."""

from nameko.timer import timer

from catalog import domain, group_commit, schemas
from catalog.store import CatalogStore
from contracts.api import catalog as api
from kit.amqp import rpc
from kit.config import load_settings
from kit.errors import Forbidden, NotFound
from kit.events import on_event
from kit.mongo import MongoStore
from kit.service import ServiceBase
from kit.validation import load, utcnow


class CatalogService(ServiceBase):
    name = "catalog"
    store = MongoStore(CatalogStore)

    # -- merchants ---------------------------------------------------------------------------------
    @rpc
    def apply_merchant(self, owner_id, payload):
        data = load(api.MerchantApplication, payload)
        merchant = domain.new_merchant(owner_id, data, utcnow())
        self.store.insert_merchant(merchant)
        return domain.merchant_view(merchant)

    @rpc
    def review_merchant(self, merchant_id, action, payload=None):
        """action: approve, reject (reason required) or suspend (reason required). Admins only (gateway)."""
        if action not in domain.MERCHANT_TRANSITIONS:
            raise NotFound(f"unknown action {action}")
        reason = load(api.Reason, payload or {})["reason"] if action != "approve" else None
        return domain.merchant_view(self.store.change_merchant_status(merchant_id, action, reason))

    @rpc
    def list_merchants(self, params=None):
        query = load(api.MerchantQuery, params or {})
        docs, next_cursor = self.store.merchants_page(query["status"], query["limit"], query["cursor"])
        return {"items": [domain.merchant_view(m) for m in docs], "next_cursor": next_cursor}

    @rpc
    def moderate_product(self, product_id, action, payload=None):
        """action: takedown (reason required) or restore. Admins only (gateway)."""
        if action not in ("takedown", "restore"):
            raise NotFound(f"unknown action {action}")
        reason = load(api.Reason, payload or {})["reason"] if action == "takedown" else None
        product = self.store.moderate_product(product_id, action, reason)
        return domain.product_view(product, self.store.skus_of(product_id))

    @rpc
    def get_merchant(self, merchant_id):
        return domain.merchant_view(self.store.get_merchant(merchant_id))

    @rpc
    def merchants_of(self, owner_id):
        return [domain.merchant_view(m) for m in self.store.merchants_of(owner_id)]

    # -- products ----------------------------------------------------------------------------------
    @rpc
    def create_product(self, owner_id, payload):
        data = load(api.ProductInput, payload)
        merchant = self._owned_merchant(owner_id, data["merchant_id"])
        if merchant["status"] != "approved":
            raise Forbidden("only an approved merchant can publish products")
        domain.check_commission(data["commission"], self.config.commission_max_total_bp)
        domain.check_group_buy(data["group_buy"], [s["price_fen"] for s in data["skus"]])
        product, skus = domain.new_product(owner_id, merchant, data, utcnow())
        self.store.insert_product(product, skus)
        return domain.product_view(product, skus)

    @rpc
    def update_product(self, owner_id, product_id, payload):
        data = load(api.ProductUpdate, payload)
        product = self.store.get_product(product_id)
        if product["owner_id"] != owner_id:
            raise NotFound("product not found")  # another merchant's product: reveal nothing
        if "commission" in data:
            domain.check_commission(data["commission"], self.config.commission_max_total_bp)
        sku_updates = data.pop("skus", [])
        updated = self.store.update_product(product_id, data, sku_updates)
        return domain.product_view(updated, self.store.skus_of(product_id))

    @rpc
    def get_product(self, product_id, viewer_id=None, is_admin=False):
        product = self.store.get_product(product_id)
        if not product.get("visible") and not is_admin and product["owner_id"] != viewer_id:
            raise NotFound("product not found")
        return domain.product_view(product, self.store.skus_of(product_id))

    @rpc
    def search_products(self, params):
        query = load(api.ProductSearch, params)
        docs, next_cursor = self.store.search(query["q"], query["category"], query["merchant_id"],
                                              query["limit"], query["cursor"])
        return {"items": [domain.product_summary(d) for d in docs], "next_cursor": next_cursor}

    # -- stock (called by the orders saga) -----------------------------------------------------------
    @rpc
    def reserve_stock(self, payload):
        data = load(schemas.Reservation, payload)
        return group_commit.reserve(self.store, data["order_id"], data["lines"], data["group"])

    @rpc
    def reserve_stock_many(self, payload):
        """Several orders' reservations at once (the orders service's group commit): one outcome per request,
        {"result": ...} or {"error": {code, message, fields}}."""
        data = load(schemas.Reservations, payload)
        return group_commit.reserve_many(self.store, data["requests"])

    @rpc
    def lend_stock(self, payload):
        """A lot of a hot SKU's stock for the orders service, with the SKU's line as it is priced now
        ({"lent": units, "line": ... or None when not on sale}); asking again with the same loan_id lends nothing
        more."""
        data = load(schemas.StockLoan, payload)
        return self.store.lend(data["loan_id"], data["sku_id"], data["qty"])

    @rpc
    def take_back_stock(self, payload):
        """Units of a lot the orders service did not sell, given back once per loan_id."""
        data = load(schemas.StockLoan, payload)
        return {"returned": self.store.take_back(data["loan_id"], data["sku_id"], data["qty"])}

    @rpc
    def release_stock(self, order_id):
        return {"order_id": order_id, "released": self.store.release(order_id)}

    @timer(interval=load_settings().sweep_interval)
    def sweep_holds(self):
        """Holds no batch tidied (a replica died with its queue) are pulled; a late hold of a released order whose
        caller died is given back (catalog.store)."""
        self.store.sweep_holds(utcnow())

    # -- reviews ------------------------------------------------------------------------------------------
    @on_event("orders", "order.completed")
    def order_completed(self, event, session):
        """Remember who bought what (our own copy: the catalog never reads the orders database)."""
        self.store.record_purchases(session, event["data"])

    @on_event("social_feed", "user.deleted")
    def forget_reviewer(self, event, session):
        """Erasure (PIPL): the erased user's reviews stay (ratings are others' information too), nameless."""
        self.store.forget_reviewer(event["data"]["user_id"], session)

    @rpc
    def post_review(self, buyer_id, product_id, payload, nickname=None):
        """`nickname`: the reviewer's nickname at review time (social-feed owns profiles; the gateway reads it
        there and the review keeps it, so reading reviews never fans out to another service)."""
        data = load(api.ReviewInput, payload)
        review = self.store.post_review(buyer_id, product_id, data["order_id"], data["rating"], data["text"],
                                        nickname)
        return domain.review_view(review)

    @rpc
    def list_reviews(self, product_id, params=None):
        """A visible product's reviews, newest first, with the reviewer's nickname and the merchant's reply."""
        query = load(api.ReviewPage, params or {})
        self.get_product(product_id)  # a hidden or unknown product has no reviews to show: 404
        docs, next_cursor = self.store.reviews_page(product_id, query["limit"], query["cursor"])
        return {"items": [domain.public_review(d) for d in docs], "next_cursor": next_cursor}

    @rpc
    def reply_to_review(self, user_id, review_id, payload):
        """The reviewed product's merchant answers, once (409 the second time)."""
        data = load(api.ReplyInput, payload)
        review = self.store.review(review_id)
        if self.store.get_product(review["product_id"])["owner_id"] != user_id:
            raise Forbidden("only the product's merchant may reply to its reviews")
        return domain.review_view(self.store.reply_to_review(review["_id"], data["text"]))

    @rpc
    def merchant_profile(self, merchant_id):
        """An approved merchant's public profile and rating; anything else (pending, rejected, suspended) 404."""
        merchant = self.store.get_merchant(merchant_id)
        if merchant["status"] != "approved":
            raise NotFound("merchant not found")
        return domain.merchant_profile(merchant, *self.store.merchant_rating(merchant["_id"]))

    def _owned_merchant(self, owner_id, merchant_id):
        merchant = self.store.get_merchant(merchant_id)
        if merchant["owner_id"] != owner_id:
            raise NotFound("merchant not found")
        return merchant
