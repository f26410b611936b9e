"""The catalog's collections: merchants, products, skus (stock lives here), reservations (by order id)."""
import logging
import time
from datetime import timedelta

import eventlet
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.write_concern import WriteConcern

from catalog import domain
from kit import claims, paging
from kit.errors import Conflict, Forbidden, NotFound, Unavailable
from kit.mongo import BaseStore
from kit.validation import new_id, utcnow

log = logging.getLogger(__name__)

RESERVING, RESERVED, RELEASED = "reserving", "reserved", "released"  # a reservation's statuses
# A reservation's claim, holds and confirmation: acknowledged by a majority of the catalog's replica set (the
# client's default there too, but stock correctness rests on it, so it is said here, not left to a default).
MAJORITY = WriteConcern("majority")
TIDY = WriteConcern(w=1)  # pulling a confirmed reservation's holds: cosmetic, see CatalogStore._tidy


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
        return paging.find_page(self.merchants, {"status": status} if status else {}, limit, cursor, "created_at")

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
        # a SKU's holds (orders being placed right now) are the reservation's business, never shown
        return list(self.skus.find({"product_id": product_id}, {"holds": 0}, session=session).sort("_id", ASCENDING))

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
        return paging.find_page(self.products, query, limit, cursor, "created_at",
                                projection={"terms": 0, "description": 0})

    # -- stock -------------------------------------------------------------------------------------
    # A reservation is four short steps, none of them a multi-document transaction on a SKU, so a hot SKU's stock
    # is never held behind another order's commit (two transactions writing one SKU conflict, and the loser is
    # aborted and retried at once; a single-document conditional update only waits for the document's latch):
    #   1. claim: the reservation document, status `reserving`, unique by order id (one caller does the work,
    #      concurrent callers with the same order id wait for its outcome, or take a dead caller's claim over once
    #      its kit.claims lease ended);
    #   2. hold: per line, one conditional update of the SKU: `stock >= qty` and no hold of this order yet, then
    #      `$inc stock -qty` and `$push holds {o: order, q: qty}` (the hold is the SKU's own record of what this
    #      order took, so a crash right after it leaves nothing unaccounted);
    #   3. confirm: `reserving` -> `reserved` (with stock.depleted, in one transaction, when a SKU reached 0);
    #   4. tidy: pull the holds (a reserved reservation's own `lines` say what to give back from now on).
    # Claim, hold and confirm are what stock correctness rests on: each is acknowledged by a majority of the
    # catalog's replica set before the next step (MAJORITY, said explicitly rather than left to the client's
    # default). Nothing else may vouch for them: the orders service's later writes go to its own database, which
    # may live on another cluster (deploy/), so they make nothing of ours durable. Only the tidy is w=1 (TIDY).
    # release() stops a `reserving` reservation and gives back its holds (each hold once: its `$inc` and its
    # `$pull` are one update), or gives back the lines of a `reserved` one; a crash between any two steps is
    # undone by it (the orders saga's undo and its sweep call it; tests/catalog/test_stock_recovery.py).
    CLAIM_LEASE = timedelta(seconds=15)  # a claim whose owner died may be taken over after this
    # A claim's owner sends no hold later than this after taking its claim (it answers Unavailable instead: the
    # outcome is then the business of whoever takes the claim over, or of the release). Once a caller that took
    # the claim over has confirmed and tidied, the holds no longer guard the order against a second hold, so a
    # stalled owner must never hold after a takeover: the lease leaves 10 s for a hold sent in time to land
    # (pymongo's one retry of a write after a failed attempt included).
    HOLD_WITHIN = 5.0
    WAIT_SECONDS = 10  # how long a concurrent reserve of the same order waits for the first one's outcome

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skus_majority = self.skus.with_options(write_concern=MAJORITY)
        self.reservations_majority = self.reservations.with_options(write_concern=MAJORITY)
        self.skus_tidy = self.skus.with_options(write_concern=TIDY)

    def price(self, lines, group):
        """The order's lines (in SKU order) priced from the SKUs and products as they are now (reads only)."""
        skus = {s["_id"]: s for s in self.skus.find({"_id": {"$in": [l["sku_id"] for l in lines]}},
                                                     {"holds": 0})}
        missing = [l["sku_id"] for l in lines if l["sku_id"] not in skus]
        if missing:
            raise NotFound(f"SKU {missing[0]} not found")
        products = {p["_id"]: p for p in self.products.find(
            {"_id": {"$in": list({s["product_id"] for s in skus.values()})}}, {"terms": 0, "description": 0})}
        priced = []
        for line in sorted(lines, key=lambda line: line["sku_id"]):
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
        return priced

    def reserve(self, order_id, lines, group, crash=lambda step: None):
        """All-or-nothing reservation of an order's lines; reserving the same order again returns the first
        outcome (a released order's reservation is refused). `crash(step)` is the recovery tests' hook (a no-op
        in production): the process dies there."""
        existing = self.reservations.find_one({"_id": order_id})
        if existing is None:
            result = {"order_id": order_id, "lines": self.price(lines, group)}
            claimed_at = time.monotonic()  # read before the claim is written: its lease runs from later than this
            existing = self._claim(order_id, result)
        if existing is not None:
            outcome, claimed_at = self._outcome_of(existing)
            if outcome is not None:
                return outcome
            result = self.reservations.find_one({"_id": order_id})["result"]  # took over a dead owner's claim
        hold_until = claimed_at + self.HOLD_WITHIN  # counted from before the claim: a slow claim write eats into it
        crash("claimed")
        depleted = []
        for line in result["lines"]:
            if time.monotonic() > hold_until:
                raise Unavailable("reserving the stock took too long; its outcome is not known yet")
            sku = self._hold(order_id, line)
            if sku is None:
                self.release(order_id)  # the lines held before this one go back
                raise Conflict("sold out", {"sku_id": [f"{line['sku_id']} has fewer than {line['qty']} left"]})
            if sku["stock"] == 0:
                depleted.append(sku)
            crash("held")
        if not self._confirm(order_id, depleted):
            # released while this call was holding (the order gave up): a hold placed after that release is
            # given back here, once (a hold the release already gave back is gone: nothing happens twice)
            self._give_back_holds(order_id, result["lines"])
            raise Conflict("this order's reservation was already released")
        crash("confirmed")
        self._tidy(order_id, result["lines"])
        return result

    def _claim(self, order_id, result):
        """None when this call owns the reservation now; otherwise the reservation someone else wrote."""
        now = utcnow()
        try:
            self.reservations_majority.insert_one({
                "_id": order_id, "status": RESERVING, "result": result,
                "lines": [{"sku_id": l["sku_id"], "qty": l["qty"]} for l in result["lines"]],
                "created_at": now, **claims.held(now, self.CLAIM_LEASE)})
            return None
        except DuplicateKeyError:
            return self.reservations.find_one({"_id": order_id})

    def _outcome_of(self, reservation):
        """(the result of a reservation made by another call, None), or (None, when this call asked for the claim
        of a dead one that it took over). A refused one raises; a claim still being worked on is waited for (up to
        WAIT_SECONDS)."""
        deadline = time.monotonic() + self.WAIT_SECONDS
        while True:
            if reservation["status"] == RESERVED:
                return reservation["result"], None
            if reservation["status"] == RELEASED:
                raise Conflict("this order's reservation was already released")
            asked = time.monotonic()
            if claims.take(self.reservations_majority, reservation["_id"], utcnow(), self.CLAIM_LEASE,
                           {"status": RESERVING}):
                return None, asked
            if time.monotonic() > deadline:
                # no refusal: the first call may still reserve it (the caller must undo as after a timeout)
                raise Unavailable("this order's reservation is still being made; retry shortly")
            eventlet.sleep(0.02)
            reservation = self.reservations.find_one({"_id": reservation["_id"]})

    def _hold(self, order_id, line):
        """Take one line's stock for the order (once): the SKU after it (stock and product id), or None when
        there is not enough. A line this order already holds (a dead owner's work, taken over) counts as held."""
        sku = self.skus_majority.find_one_and_update(
            {"_id": line["sku_id"], "stock": {"$gte": line["qty"]}, "holds.o": {"$ne": order_id}},
            {"$inc": {"stock": -line["qty"]}, "$push": {"holds": {"o": order_id, "q": line["qty"]}}},
            projection={"stock": 1, "product_id": 1}, return_document=ReturnDocument.AFTER)
        if sku is None:
            sku = self.skus.find_one({"_id": line["sku_id"], "holds.o": order_id}, {"stock": 1, "product_id": 1})
        return sku

    def _confirm(self, order_id, depleted):
        """reserving -> reserved (majority); False when the reservation was released meanwhile. A SKU that
        reached 0 announces it (stock.depleted, through the outbox) in one transaction with this change."""
        def mark(session=None):
            return self.reservations_majority.update_one(
                {"_id": order_id, "status": RESERVING},
                {"$set": {"status": RESERVED}, "$unset": {claims.FIELD: ""}}, session=session).matched_count == 1

        def txn(session):
            if not mark(session):
                return False
            for sku in depleted:
                self.emit(session, "stock.depleted", {"product_id": sku["product_id"], "sku_id": sku["_id"]},
                          subject=sku["product_id"])
            return True
        if (self.transaction(txn) if depleted else mark()):
            return True
        # not `reserving` any more: confirmed by a caller that took the claim over while this one was slow, or
        # released
        return self.reservations.find_one({"_id": order_id}, {"status": 1})["status"] == RESERVED

    def _tidy(self, order_id, lines):
        """Pull a confirmed reservation's holds off its SKUs. w=1 and a failure only logged: a hold left on a SKU
        by a lost tidy is harmless, because a `reserved` reservation is given back by its own `lines` (release
        pulls the hold in that same update), the order never holds again (the hold filter is per order and the
        reservation is final), and nothing counts holds of a reserved reservation as stock taken (the chaos
        accounting counts holds only of `reserving` ones): it costs a few bytes in the SKU document, nothing
        more."""
        try:
            for line in lines:
                self.skus_tidy.update_one({"_id": line["sku_id"], "holds.o": order_id},
                                          {"$pull": {"holds": {"o": order_id}}})
        except PyMongoError as exc:
            log.warning("reservation %s: holds left on its SKUs (harmless): %s", order_id, exc)

    def _give_back_holds(self, order_id, lines):
        """Give back every hold this order has on these lines' SKUs, each once: a hold's `$inc` and its `$pull`
        are one conditional update (majority: the stock count depends on it). True when any was given back."""
        gave = False
        for sku in self.skus.find({"_id": {"$in": [l["sku_id"] for l in lines]}, "holds.o": order_id},
                                  {"holds.$": 1}):
            held = sku["holds"][0]["q"]
            gave |= self.skus_majority.update_one(
                {"_id": sku["_id"], "holds": {"$elemMatch": {"o": order_id, "q": held}}},
                {"$inc": {"stock": held}, "$pull": {"holds": {"o": order_id}}}).modified_count == 1
        return gave

    def release(self, order_id):
        """Give back an order's stock once; a release that arrives before its reserve blocks that reserve."""
        # still being made (or its maker died): stop it here (its confirm then fails), then give back its holds
        stopped = self.reservations_majority.find_one_and_update(
            {"_id": order_id, "status": RESERVING}, {"$set": {"status": RELEASED, "released_at": utcnow()},
                                                    "$unset": {claims.FIELD: ""}})
        if stopped is not None:
            self._give_back_holds(order_id, stopped["lines"])
            return True

        def txn(session):
            reservation = self.reservations.find_one_and_update(
                {"_id": order_id, "status": RESERVED}, {"$set": {"status": RELEASED, "released_at": utcnow()}},
                session=session)
            if reservation is None:
                self.reservations.update_one(
                    {"_id": order_id}, {"$setOnInsert": {"status": RELEASED, "lines": [], "created_at": utcnow()}},
                    upsert=True, session=session)
                return None
            for line in reservation["lines"]:
                self.skus.update_one({"_id": line["sku_id"]}, {"$inc": {"stock": line["qty"]},
                                                               "$pull": {"holds": {"o": order_id}}},
                                     session=session)
            return reservation
        if self.transaction(txn) is not None:
            return True
        # released before: a hold that a reserve still on its way placed after that release (and could not give
        # back itself, its process having died) is given back now
        earlier = self.reservations.find_one({"_id": order_id}, {"lines": 1}) or {}
        self._give_back_holds(order_id, earlier.get("lines", []))
        return False

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
        return paging.find_page(self.reviews, {"product_id": product_id}, limit, cursor, "created_at")

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
