"""The catalog's collections: merchants, products, skus (stock lives here), reservations (by order id)."""
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from catalog import domain
from kit import paging
from kit.errors import Conflict, Forbidden, NotFound
from kit.mongo import BaseStore
from kit.validation import new_id, utcnow


class CatalogStore(BaseStore):
    COLLECTIONS = ("merchants", "products", "skus", "reservations", "purchases", "reviews")
    PERSONAL_DATA = {"merchants": ("owner_id",), "reviews": ("buyer_id",), "purchases": ("buyer_id",)}
    INDEXES = {
        "merchants": [IndexModel([("owner_id", ASCENDING)]),
                      IndexModel([("status", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])],
        "products": [
            IndexModel([("visible", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
            IndexModel([("visible", ASCENDING), ("category", ASCENDING), ("created_at", DESCENDING)]),
            IndexModel([("terms", ASCENDING), ("created_at", DESCENDING)]),
            IndexModel([("merchant_id", ASCENDING)]),
        ],
        "skus": [IndexModel([("product_id", ASCENDING)])],
        "reviews": [IndexModel([("product_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
                    # once per buyer and product (reviews before this index have the pair in their _id too)
                    IndexModel([("buyer_id", ASCENDING), ("product_id", ASCENDING)], unique=True)],
    }

    # -- merchants ---------------------------------------------------------------------------------
    def insert_merchant(self, merchant):
        self.merchants.insert_one(merchant)

    def get_merchant(self, merchant_id, session=None):
        merchant = self.merchants.find_one({"_id": merchant_id}, session=session)
        if merchant is None:
            raise NotFound("merchant not found")
        return merchant

    def merchants_of(self, owner_id):
        return list(self.merchants.find({"owner_id": owner_id}).sort("created_at", ASCENDING))

    def change_merchant_status(self, merchant_id, action, reason=None):
        """Move a merchant through review; products follow its visibility in the same transaction."""
        def txn(session):
            merchant = self.get_merchant(merchant_id, session)
            status = domain.merchant_transition(merchant["status"], action)
            now = utcnow()
            sets = {"status": status, "reason": reason, "updated_at": now}
            if status == "approved" and not merchant.get("approved_at"):
                sets["approved_at"] = now  # "since" on its public profile
            self.merchants.update_one({"_id": merchant_id, "status": merchant["status"]}, {"$set": sets},
                                      session=session)
            visible = status == "approved"
            shown = {"merchant_id": merchant_id, "status": "published", "taken_down": None}  # takedowns stay down
            changed = list(self.products.find({**shown, "visible": not visible}, {"_id": 1}, session=session))
            self.products.update_many(shown, {"$set": {"visible": visible, "updated_at": now}}, session=session)
            self.emit(session, domain.MERCHANT_EVENTS[action], {
                "merchant_id": merchant_id, "owner_id": merchant["owner_id"], "status": status, "reason": reason,
            }, subject=merchant_id)
            for product in changed:
                self.emit(session, "product.updated" if visible else "product.hidden", {
                    "product_id": product["_id"], "merchant_id": merchant_id,
                    "reason": None if visible else "merchant_suspended", "visible": visible}, subject=product["_id"])
            return {**merchant, "status": status, "reason": reason}
        return self.transaction(txn)

    def merchants_page(self, status, limit, cursor):
        """The admin's review queue: merchants in `status` (any status when None), newest first."""
        query = {"status": status} if status else {}
        query.update(paging.after(cursor, "created_at"))
        docs = list(self.merchants.find(query).sort(paging.NEWEST_FIRST("created_at")).limit(limit + 1))
        return paging.page(docs, limit, "created_at")

    def moderate_product(self, product_id, action, reason):
        """An admin takes a product down (hidden everywhere, whatever its merchant's status) or restores it
        (visible again when its merchant is approved); the read models learn it from the events."""
        def txn(session):
            product = self.get_product(product_id, session)
            now = utcnow()
            if action == "takedown":
                if product.get("taken_down"):
                    raise Conflict("this product is already taken down")
                sets = {"taken_down": {"reason": reason, "at": now}, "visible": False, "updated_at": now}
            else:
                if not product.get("taken_down"):
                    raise Conflict("this product is not taken down")
                merchant = self.get_merchant(product["merchant_id"], session)
                sets = {"taken_down": None, "visible": merchant["status"] == "approved" and
                        product["status"] == "published", "updated_at": now}
            self.products.update_one({"_id": product_id}, {"$set": sets}, session=session)
            self.emit(session, "product.hidden" if action == "takedown" else "product.updated", {
                "product_id": product_id, "merchant_id": product["merchant_id"],
                "reason": "takedown" if action == "takedown" else None, "visible": sets["visible"]},
                subject=product_id)
            return {**product, **sets}
        return self.transaction(txn)

    # -- products ----------------------------------------------------------------------------------
    def insert_product(self, product, skus):
        def txn(session):
            self.products.insert_one(product, session=session)
            self.skus.insert_many(skus, session=session)
            self.emit(session, "product.published", {
                "product_id": product["_id"], "merchant_id": product["merchant_id"], "title": product["title"],
                "category": product["category"], "commission": product["commission"],
                "group_buy": product["group_buy"],
                "skus": [{"sku_id": s["_id"], "price_fen": s["price_fen"]} for s in skus],
            }, subject=product["_id"])
        self.transaction(txn)

    def get_product(self, product_id, session=None):
        product = self.products.find_one({"_id": product_id}, session=session)
        if product is None:
            raise NotFound("product not found")
        return product

    def skus_of(self, product_id, session=None):
        return list(self.skus.find({"product_id": product_id}, session=session).sort("_id", ASCENDING))

    def update_product(self, product_id, changes, sku_updates):
        def txn(session):
            product = self.get_product(product_id, session)
            for update in sku_updates:
                inc = update.get("stock_delta", 0)
                query = {"_id": update["sku_id"], "product_id": product_id}
                if inc < 0:
                    query["stock"] = {"$gte": -inc}
                sets = {"price_fen": update["price_fen"]} if "price_fen" in update else {}
                result = self.skus.update_one(query, {"$inc": {"stock": inc}, "$set": sets} if sets
                                              else {"$inc": {"stock": inc}}, session=session)
                if result.matched_count == 0:
                    raise Conflict(f"SKU {update['sku_id']} not found or stock would go negative")
            skus = self.skus_of(product_id, session)
            merged = {**product, **changes}
            domain.check_group_buy(merged.get("group_buy"), [s["price_fen"] for s in skus])
            sets = dict(changes, min_price_fen=min(s["price_fen"] for s in skus), updated_at=utcnow(),
                        terms=domain.search_terms(merged["title"], merged["description"], merged["category"]))
            self.products.update_one({"_id": product_id}, {"$set": sets}, session=session)
            self.emit(session, "product.updated", {"product_id": product_id, "merchant_id": product["merchant_id"],
                                                   "reason": None, "visible": bool(product.get("visible"))},
                      subject=product_id)
            return {**merged, **sets}
        return self.transaction(txn)

    def search(self, q, category, merchant_id, limit, cursor):
        query = {"visible": True}
        terms = domain.query_terms(q)
        if terms:
            query["terms"] = {"$all": terms}
        if category:
            query["category"] = category
        if merchant_id:
            query["merchant_id"] = merchant_id
        query.update(paging.after(cursor, "created_at"))
        docs = list(self.products.find(query, {"terms": 0, "description": 0})
                    .sort(paging.NEWEST_FIRST("created_at")).limit(limit + 1))
        return paging.page(docs, limit, "created_at")

    # -- stock -------------------------------------------------------------------------------------
    def reserve(self, order_id, lines, group):
        """All-or-nothing reservation of an order's lines; reserving the same order again is a no-op.

        Reads and checks come first and the stock decrements last, so the window in which this transaction
        holds a popular SKU (and makes concurrent buyers retry) is as short as it can be."""
        def txn(session):
            existing = self.reservations.find_one({"_id": order_id}, session=session)
            if existing is not None:
                if existing["status"] != "reserved":
                    raise Conflict("this order's reservation was already released")
                return existing["result"]
            lines_in_order = sorted(lines, key=lambda line: line["sku_id"])
            skus = {s["_id"]: s for s in self.skus.find({"_id": {"$in": [l["sku_id"] for l in lines]}},
                                                         session=session)}
            missing = [l["sku_id"] for l in lines if l["sku_id"] not in skus]
            if missing:
                raise NotFound(f"SKU {missing[0]} not found")
            products = {p["_id"]: p for p in self.products.find(
                {"_id": {"$in": list({s["product_id"] for s in skus.values()})}}, session=session)}
            priced = []
            for line in lines_in_order:
                sku = skus[line["sku_id"]]
                product = products[sku["product_id"]]
                if not product.get("visible"):
                    raise Conflict("product not available", {"sku_id": [f"{sku['_id']} is not on sale"]})
                priced.append({
                    "sku_id": sku["_id"], "product_id": product["_id"], "merchant_id": product["merchant_id"],
                    "title": product["title"], "qty": line["qty"],
                    "unit_price_fen": domain.unit_price(product, sku, group),
                    "level1_bp": product["commission"]["level1_bp"], "level2_bp": product["commission"]["level2_bp"],
                    "group_buy": product.get("group_buy"),
                })
            result = {"order_id": order_id, "lines": priced}
            self.reservations.insert_one({"_id": order_id, "status": "reserved", "result": result,
                                          "lines": [{"sku_id": p["sku_id"], "qty": p["qty"]} for p in priced],
                                          "created_at": utcnow()}, session=session)
            for line in lines_in_order:
                sku = self.skus.find_one_and_update(
                    {"_id": line["sku_id"], "stock": {"$gte": line["qty"]}}, {"$inc": {"stock": -line["qty"]}},
                    return_document=ReturnDocument.AFTER, session=session)
                if sku is None:
                    raise Conflict("sold out", {"sku_id": [f"{line['sku_id']} has fewer than {line['qty']} left"]})
                if sku["stock"] == 0:
                    self.emit(session, "stock.depleted", {"product_id": sku["product_id"], "sku_id": sku["_id"]},
                              subject=sku["product_id"])
            return result
        return self.transaction(txn)

    def release(self, order_id):
        """Give back an order's stock once; a release that arrives before its reserve blocks that reserve."""
        def txn(session):
            reservation = self.reservations.find_one_and_update(
                {"_id": order_id, "status": "reserved"}, {"$set": {"status": "released", "released_at": utcnow()}},
                session=session)
            if reservation is None:
                self.reservations.update_one(
                    {"_id": order_id}, {"$setOnInsert": {"status": "released", "lines": [], "created_at": utcnow()}},
                    upsert=True, session=session)
                return False
            for line in reservation["lines"]:
                self.skus.update_one({"_id": line["sku_id"]}, {"$inc": {"stock": line["qty"]}}, session=session)
            return True
        return self.transaction(txn)

    # -- reviews: only from buyers of completed orders (learnt from order.completed events) ----------------
    def record_purchases(self, session, order):
        """One purchase per (order, product) of a completed order; the review right it gives."""
        for product_id in {line["product_id"] for line in order["lines"]}:
            self.purchases.update_one(
                {"_id": f"{order['order_id']}:{product_id}"},
                {"$setOnInsert": {"order_id": order["order_id"], "product_id": product_id,
                                  "buyer_id": order["buyer_id"], "completed_at": order["completed_at"]}},
                upsert=True, session=session)

    def forget_reviewer(self, buyer_id, session):
        return self.reviews.update_many({"buyer_id": buyer_id, "nickname": {"$ne": None}},
                                        {"$set": {"nickname": None}}, session=session).modified_count

    def post_review(self, buyer_id, product_id, order_id, rating, text, nickname=None):
        """Once per buyer and product: the review, the product's rating and review.posted, together."""
        def txn(session):
            self.get_product(product_id, session)
            purchase = self.purchases.find_one({"_id": f"{order_id}:{product_id}", "buyer_id": buyer_id},
                                               session=session)
            if purchase is None:
                raise Forbidden("only the buyer of a completed order may review its products",
                                {"order_id": ["not a completed order of yours with this product"]})
            review = {"_id": new_id("rev"), "product_id": product_id, "order_id": order_id, "buyer_id": buyer_id,
                      "rating": rating, "text": text, "nickname": nickname, "reply": None, "created_at": utcnow()}
            self.reviews.insert_one(review, session=session)
            self.products.update_one({"_id": product_id}, {"$inc": {"rating_sum": rating, "rating_count": 1}},
                                     session=session)
            self.emit(session, "review.posted", {"product_id": product_id, "order_id": order_id,
                                                 "buyer_id": buyer_id, "rating": rating}, subject=product_id)
            return review
        try:
            return self.transaction(txn)
        except DuplicateKeyError:
            raise Conflict("you already reviewed this product", {"product_id": ["already reviewed"]})

    def reviews_page(self, product_id, limit, cursor):
        query = {"product_id": product_id, **paging.after(cursor, "created_at")}
        docs = list(self.reviews.find(query).sort(paging.NEWEST_FIRST("created_at")).limit(limit + 1))
        return paging.page(docs, limit, "created_at")

    def review(self, review_id):
        review = self.reviews.find_one({"_id": review_id})
        if review is None:
            raise NotFound("review not found")
        return review

    def reply_to_review(self, review_id, text):
        """The merchant's one reply (who may reply is checked by the caller); a second one is 409."""
        reply = {"text": text, "created_at": utcnow()}
        replied = self.reviews.find_one_and_update({"_id": review_id, "reply": None}, {"$set": {"reply": reply}},
                                                   return_document=ReturnDocument.AFTER)
        if replied is None:
            self.review(review_id)  # 404 when it does not exist
            raise Conflict("this review already has the merchant's reply", {"review_id": ["already replied"]})
        return replied

    def merchant_rating(self, merchant_id):
        """(sum, count) of every review of every product of the merchant: integer sums of the products' own
        counters (kept in the transaction that writes each review)."""
        rows = list(self.products.aggregate([
            {"$match": {"merchant_id": merchant_id}},
            {"$group": {"_id": None, "sum": {"$sum": "$rating_sum"}, "count": {"$sum": "$rating_count"}}}]))
        return (rows[0]["sum"], rows[0]["count"]) if rows else (0, 0)
