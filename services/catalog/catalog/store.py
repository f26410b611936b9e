"""The catalog's collections: merchants, products, skus (stock lives here), reservations (by order id), loans (lots
of stock lent to the orders service and given back, by loan id)."""
import logging
import time
from datetime import timedelta

import eventlet
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from catalog import domain
from kit import claims, paging
from kit.durability import APPLIED, DURABLE
from kit.errors import Conflict, Forbidden, NotFound, Unavailable
from kit.mongo import BaseStore
from kit.validation import new_id, utcnow

log = logging.getLogger(__name__)

RESERVING, RESERVED, RELEASED = "reserving", "reserved", "released"  # a reservation's statuses


class CatalogStore(BaseStore):
    COLLECTIONS = ("merchants", "products", "skus", "reservations", "loans", "purchases", "reviews")
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
        "skus": [IndexModel([("product_id", ASCENDING)]),
                 IndexModel([("holds.at", ASCENDING)])],  # the sweep's stale holds
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
    #   1. claim: the reservation document, status `reserving` with the order's lines, unique by order id (one
    #      caller does the work, concurrent callers with the same order id wait for its outcome, or take a dead
    #      caller's claim over once its kit.claims lease ended);
    #   2. hold: per line, one conditional update of the SKU (_conditional_hold): `stock >= qty` and no hold of
    #      this order yet, then stock - qty and a hold entry {o: order, q: qty, at, left} appended (the hold is the
    #      SKU's own record of what this order took, so a crash right after it leaves nothing unaccounted); it
    #      returns the SKU's price, so pricing reads only the products (one query) after the holds;
    #   3. confirm: `reserving` -> `reserved` with the priced lines (with stock.depleted, in one transaction, when
    #      a SKU reached 0);
    #   4. tidy: pull the holds (a reserved reservation's own `lines` say what to give back from now on), in
    #      batches of TIDY_AFTER, one update per SKU; sweep_holds (the catalog's timer) pulls what a batch lost
    #      and gives back a hold that arrived after its order's release from a caller that died.
    # Claim, hold and confirm are what stock correctness rests on: each is acknowledged by a majority of the
    # catalog's replica set before the next step (DURABLE, kit.durability, said explicitly rather than left to the
    # client's default). Nothing else may vouch for them: the orders service's later writes go to its own database,
    # which may live on another cluster (deploy/), so they make nothing of ours durable. Only the tidy is APPLIED
    # (a tidy lost is made good by sweep_holds).
    # release() stops a `reserving` reservation and gives back its holds (each hold once: its `$inc` and its
    # `$pull` are one update), or gives back the lines of a `reserved` one; a crash between any two steps is
    # undone by it (the orders saga's undo and its sweep call it; tests/catalog/test_stock_recovery.py). A line
    # refused (sold out, no such SKU, a product not on sale) releases the reservation: what was held goes back.
    CLAIM_LEASE = timedelta(seconds=15)  # a claim whose owner died may be taken over after this
    # A claim's owner sends no hold later than this after taking its claim (it answers Unavailable instead: the
    # outcome is then the business of whoever takes the claim over, or of the release). Once a caller that took
    # the claim over has confirmed and tidied, the holds no longer guard the order against a second hold, so a
    # stalled owner must never hold after a takeover: the lease leaves 10 s for a hold sent in time to land
    # (pymongo's one retry of a write after a failed attempt included).
    HOLD_WITHIN = 5.0
    WAIT_SECONDS = 10  # how long a concurrent reserve of the same order waits for the first one's outcome
    TIDY_AFTER = 0.05  # seconds from a confirmed reservation to the batch that pulls its holds
    # A hold this old is no caller's work in progress any more (a hold is placed within HOLD_WITHIN of its claim,
    # and a caller gives back what it placed before it answers): sweep_holds may tidy or give it back.
    STALE_HOLD = timedelta(seconds=60)
    # what a hold returns of its SKU: what pricing the line needs, and the stock left (0: announce the depletion)
    HELD_FIELDS = {"stock": 1, "product_id": 1, "price_fen": 1}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skus_majority = self.skus.with_options(write_concern=DURABLE)
        self.reservations_majority = self.reservations.with_options(write_concern=DURABLE)
        self.skus_tidy = self.skus.with_options(write_concern=APPLIED)
        self._untidy, self._tidy_scheduled = [], False  # [(order id, its SKU ids)]: confirmed holds to pull

    def products_of(self, skus):
        """{product id: product} of these SKUs, as the products are now (one read)."""
        return {p["_id"]: p for p in self.products.find(
            {"_id": {"$in": list({sku["product_id"] for sku in skus})}}, {"terms": 0, "description": 0})}

    def price(self, held, group, products=None):
        """The order's lines priced from the SKUs as their holds returned them (in SKU order) and their products
        as they are now (one read, or `products` read for a whole batch). Raises when a product is not on sale
        (or has no group offer for a group)."""
        if products is None:
            products = self.products_of([sku for sku, _ in held])
        priced = []
        for sku, qty in held:
            product = products[sku["product_id"]]
            if not product.get("visible"):
                raise Conflict("product not available", {"sku_id": [f"{sku['_id']} is not on sale"]})
            priced.append({
                "sku_id": sku["_id"], "product_id": product["_id"], "merchant_id": product["merchant_id"],
                "title": product["title"], "qty": qty,
                "unit_price_fen": domain.unit_price(product, sku, group),
                "level1_bp": product["commission"]["level1_bp"], "level2_bp": product["commission"]["level2_bp"],
                "group_buy": product.get("group_buy"),
            })
        return priced

    def reserve(self, order_id, lines, group, crash=lambda step: None):
        """All-or-nothing reservation of an order's lines; reserving the same order again returns the first
        outcome (a released order's reservation is refused). `crash(step)` is the recovery tests' hook (a no-op
        in production): the process dies there."""
        lines = sorted(({"sku_id": l["sku_id"], "qty": l["qty"]} for l in lines), key=lambda l: l["sku_id"])
        claimed_at = time.monotonic()  # read before the claim is written: its lease runs from later than this
        existing = self._claim(order_id, lines)
        if existing is not None:
            outcome, claimed_at = self._outcome_of(existing)
            if outcome is not None:
                return outcome
            lines = existing["lines"]  # took over a dead owner's claim: its lines, as it wrote them
        hold_until = claimed_at + self.HOLD_WITHIN  # counted from before the claim: a slow claim write eats into it
        crash("claimed")
        held, depleted = [], []
        for line in lines:
            if time.monotonic() > hold_until:
                raise Unavailable("reserving the stock took too long; its outcome is not known yet")
            sku = self._hold(order_id, line)
            if sku is None:
                self.release(order_id)  # the lines held before this one go back
                raise self._refusal(line)
            held.append((sku, line["qty"]))
            if sku["stock"] == 0:
                depleted.append(sku)
            crash("held")
        try:
            result = {"order_id": order_id, "lines": self.price(held, group)}
        except (Conflict, NotFound):
            self.release(order_id)  # not on sale (or no group offer): everything held goes back
            raise
        if not self._confirm(order_id, result, depleted):
            # released while this call was holding (the order gave up): a hold placed after that release is
            # given back here, once (a hold the release already gave back is gone: nothing happens twice)
            self._give_back_holds(order_id, lines)
            raise Conflict("this order's reservation was already released")
        crash("confirmed")
        self._tidy_later(order_id, lines)
        return result

    def reserve_many(self, requests, crash=lambda step: None):
        """Group commit of single-line reservations that arrived together (catalog.group_commit): the same four
        steps as `reserve`, each done for the whole batch at once: one insert of every claim, one conditional
        update per SKU holding every order's line (`stock >= the sum`, none of these orders held yet; each order
        still gets its own hold), sent as one bulk when the batch spans several SKUs (_hold_batches), one read of
        the products, one bulk confirm. A batch hold the SKU cannot cover falls back to holding order by order
        (some fit, the rest are sold out). A crash between any two steps leaves what `reserve` leaves at the same
        step, and the release undoes it the same way.

        requests: [(order_id, line, group)]. Returns one outcome per request, in order: the result, an exception
        to raise to that caller, or None for a request whose claim existed already (the caller goes through
        `reserve`, which waits for it or takes it over)."""
        now, claimed_at = utcnow(), time.monotonic()
        outcomes = [None] * len(requests)
        claims_of = [self._claim_doc(order_id, [{"sku_id": line["sku_id"], "qty": line["qty"]}], now)
                     for order_id, line, _ in requests]
        mine = set(range(len(requests)))
        try:
            self.reservations_majority.insert_many(claims_of, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details["writeErrors"]
            if any(error["code"] != 11000 for error in errors):
                raise
            mine -= {error["index"] for error in errors}  # someone else's claim: `reserve` sorts it out
        crash("claimed")
        by_sku = {}
        for i in sorted(mine):
            by_sku.setdefault(requests[i][1]["sku_id"], []).append(i)
        held, depleted_by = {}, {}
        if by_sku and time.monotonic() > claimed_at + self.HOLD_WITHIN:
            raise Unavailable("reserving the stock took too long; its outcome is not known yet")
        held_together = self._hold_batches(
            {sku_id: [(requests[i][0], requests[i][1]["qty"]) for i in batch] for sku_id, batch in by_sku.items()},
            now)
        if held_together:
            crash("held")
        for sku_id, batch in by_sku.items():
            last = held_together.get(sku_id)
            if last is not None:
                held.update((i, last) for i in batch)
            else:  # not enough for all of them: one by one, in arrival order
                if time.monotonic() > claimed_at + self.HOLD_WITHIN:
                    raise Unavailable("reserving the stock took too long; its outcome is not known yet")
                for i in batch:
                    sku = self._hold(requests[i][0], requests[i][1])
                    if sku is None:
                        self.release(requests[i][0])
                        outcomes[i] = self._refusal(requests[i][1])
                    else:
                        held[i] = last = sku
                crash("held")
            if last is not None and last["stock"] == 0:
                depleted_by[max(i for i in batch if i in held)] = last  # announced with the last order that held
        products = self.products_of(held.values()) if held else {}
        priced = {}
        for i, sku in held.items():
            order_id, line, group = requests[i]
            try:
                priced[i] = {"order_id": order_id, "lines": self.price([(sku, line["qty"])], group, products)}
            except (Conflict, NotFound) as refusal:
                self.release(order_id)
                outcomes[i] = refusal
        plain = [i for i in priced if i not in depleted_by]
        if plain:
            confirmed = self.reservations_majority.bulk_write(
                [UpdateOne({"_id": requests[i][0], "status": RESERVING},
                           {"$set": {"status": RESERVED, "result": priced[i]}, "$unset": {claims.FIELD: ""}})
                 for i in plain], ordered=False).matched_count
            if confirmed < len(plain):  # some were released meanwhile (or taken over and confirmed by another)
                status = {r["_id"]: r["status"] for r in self.reservations.find(
                    {"_id": {"$in": [requests[i][0] for i in plain]}}, {"status": 1})}
                for i in plain:
                    if status.get(requests[i][0]) != RESERVED:
                        self._give_back_holds(requests[i][0], [requests[i][1]])
                        outcomes[i] = Conflict("this order's reservation was already released")
        for i, sku in depleted_by.items():
            if i in priced and not self._confirm(requests[i][0], priced[i], [sku]):
                self._give_back_holds(requests[i][0], [requests[i][1]])
                outcomes[i] = Conflict("this order's reservation was already released")
        crash("confirmed")
        for i in priced:
            if outcomes[i] is None:
                outcomes[i] = priced[i]
                self._tidy_later(requests[i][0], [requests[i][1]])
        return outcomes

    def _hold_batches(self, batches, now):
        """{sku_id: [(order, qty)]} -> {sku_id: the SKU as its batch hold left it} for the SKUs whose batch went
        through; a SKU missing could not cover its batch (or one of its orders held it already). One SKU: one
        conditional update returning the SKU. Several (load spread over many SKUs): one bulk of conditional
        updates, acknowledged once, then one read. Each batch's hold entries record the stock the hold left
        (`left`, computed by the update itself), so that read knows exactly which hold emptied a SKU, whatever
        happened to the SKU since: the depletion is announced once, by the batch that caused it."""
        if not batches:
            return {}
        if len(batches) == 1:
            (sku_id, holds), = batches.items()
            sku = self._hold_together(sku_id, holds, now)
            return {} if sku is None else {sku_id: sku}
        self.skus_majority.bulk_write([UpdateOne(*self._conditional_hold(sku_id, holds, now))
                                       for sku_id, holds in batches.items()], ordered=False)
        mine = [order_id for holds in batches.values() for order_id, _ in holds]
        held = {}
        for sku in self.skus.find({"_id": {"$in": list(batches)}},
                                  {**self.HELD_FIELDS, "holds": {"$elemMatch": {"o": {"$in": mine}}}}):
            hold = (sku.pop("holds", None) or [{}])[0]
            if "left" in hold and hold["o"] in {order_id for order_id, _ in batches[sku["_id"]]}:
                held[sku["_id"]] = dict(sku, stock=hold["left"])
        return held

    @staticmethod
    def _conditional_hold(sku_id, holds, now):
        """(filter, pipeline update) of every hold, single or batched: it holds each (order, qty) of `holds` on
        the SKU if the SKU can cover them all and none of them holds it yet; each hold entry carries the stock
        left after this update."""
        total = sum(qty for _, qty in holds)
        left = {"$subtract": ["$stock", total]}
        return ({"_id": sku_id, "stock": {"$gte": total}, "holds.o": {"$nin": [order_id for order_id, _ in holds]}},
                [{"$set": {"stock": left, "holds": {"$concatArrays": [
                    {"$ifNull": ["$holds", []]},
                    [{"o": {"$literal": order_id}, "q": qty, "at": now, "left": left} for order_id, qty in holds]]}}}])

    def _hold_together(self, sku_id, holds, now):
        """One conditional update holding every (order, qty) of `holds` on the SKU: the SKU after it, or None (not
        enough stock for all of them, one of them held already, no such SKU)."""
        return self.skus_majority.find_one_and_update(*self._conditional_hold(sku_id, holds, now),
                                                      projection=self.HELD_FIELDS,
                                                      return_document=ReturnDocument.AFTER)

    def _refusal(self, line):
        if self.skus.find_one({"_id": line["sku_id"]}, {"_id": 1}) is None:
            return NotFound(f"SKU {line['sku_id']} not found")
        return Conflict("sold out", {"sku_id": [f"{line['sku_id']} has fewer than {line['qty']} left"]})

    def _claim(self, order_id, lines):
        """None when this call owns the reservation now; otherwise the reservation someone else wrote."""
        try:
            self.reservations_majority.insert_one(self._claim_doc(order_id, lines, utcnow()))
            return None
        except DuplicateKeyError:
            return self.reservations.find_one({"_id": order_id})

    def _claim_doc(self, order_id, lines, now):
        return {"_id": order_id, "status": RESERVING, "lines": lines, "created_at": now,
                **claims.held(now, self.CLAIM_LEASE)}

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
        sku = self._hold_together(line["sku_id"], [(order_id, line["qty"])], utcnow())
        if sku is None:
            sku = self.skus.find_one({"_id": line["sku_id"], "holds.o": order_id}, self.HELD_FIELDS)
        return sku

    def _confirm(self, order_id, result, depleted):
        """reserving -> reserved with its priced result (majority); False when the reservation was released
        meanwhile. A SKU that reached 0 announces it (stock.depleted, through the outbox) in one transaction with
        this change."""
        def mark(session=None):
            return self.reservations_majority.update_one(
                {"_id": order_id, "status": RESERVING},
                {"$set": {"status": RESERVED, "result": result}, "$unset": {claims.FIELD: ""}},
                session=session).matched_count == 1

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

    def _tidy_later(self, order_id, lines):
        """Queue a confirmed reservation's holds for the next batch (tidy_holds, TIDY_AFTER from the first queued):
        holds then cost one update per batch rather than one per order and SKU."""
        self._untidy.append((order_id, [line["sku_id"] for line in lines]))
        if not self._tidy_scheduled:
            self._tidy_scheduled = True
            eventlet.spawn_after(self.TIDY_AFTER, self.tidy_holds)

    def tidy_holds(self):
        """Pull the queued holds off their SKUs in one update. w=1 and a failure only logged: a hold left on a SKU
        (a lost batch, a process that died with its queue) is harmless, because a `reserved` reservation is given
        back by its own `lines` (release pulls the hold in that same update), the order never holds again (the
        claim is final), and nothing counts holds of a reserved reservation as stock taken (the chaos accounting
        counts holds only of `reserving` ones); sweep_holds pulls what is left later."""
        self._tidy_scheduled = False
        batch, self._untidy = self._untidy, []
        if not batch:
            return
        order_ids = [order_id for order_id, _ in batch]
        sku_ids = sorted({sku_id for _, skus in batch for sku_id in skus})
        try:
            self.skus_tidy.update_many({"_id": {"$in": sku_ids}}, {"$pull": {"holds": {"o": {"$in": order_ids}}}})
        except PyMongoError as exc:
            log.warning("%d confirmed holds left on their SKUs for the sweep: %s", len(order_ids), exc)

    def sweep_holds(self, now, limit=200):
        """Holds older than STALE_HOLD that no batch tidied: a reserved reservation's are pulled (w=1, cosmetic); a
        released one's are given back, once: a hold placed after its order's release by a caller that died before
        giving it back itself. A `reserving` one's are left to its release or to the caller that takes it over.
        Returns how many holds were pulled or given back."""
        cutoff = now - self.STALE_HOLD
        done = 0
        for sku in self.skus.find({"holds.at": {"$lt": cutoff}}, {"holds": 1}).limit(limit):
            stale = [h for h in sku["holds"] if h.get("at") is not None and h["at"] < cutoff]
            status = {r["_id"]: r["status"] for r in self.reservations.find(
                {"_id": {"$in": [h["o"] for h in stale]}}, {"status": 1})}
            confirmed = [h["o"] for h in stale if status.get(h["o"]) == RESERVED]
            if confirmed:
                done += len(confirmed)
                self.skus_tidy.update_one({"_id": sku["_id"]}, {"$pull": {"holds": {"o": {"$in": confirmed}}}})
            for hold in stale:
                if status.get(hold["o"]) == RELEASED:
                    given = self.skus_majority.update_one(
                        {"_id": sku["_id"], "holds": {"$elemMatch": {"o": hold["o"], "q": hold["q"]}}},
                        {"$inc": {"stock": hold["q"]}, "$pull": {"holds": {"o": hold["o"]}}}).modified_count
                    if given:
                        done += 1
                        log.warning("SKU %s: a hold of released order %s given back by the sweep (%d)",
                                    sku["_id"], hold["o"], hold["q"])
        return done

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

    # -- lots lent to the orders service (catalog.domain.LOAN_FLOOR) -----------------------------------------
    def lend(self, loan_id, sku_id, qty):
        """Lend `qty` units of the SKU once per loan_id (a repeat lends nothing more and answers what was lent),
        with its line priced as it is now: {"lent": units, "line": the priced line of one unit, or None when the
        product is not on sale (nothing is lent then)}. The loan's record and the stock it takes are one
        transaction."""
        sku = self.skus.find_one({"_id": sku_id}, self.HELD_FIELDS)
        if sku is None:
            raise NotFound(f"SKU {sku_id} not found")
        try:
            [line] = self.price([(sku, 1)], group=False)
        except (Conflict, NotFound):
            line, qty = None, 0
        if qty == 0:  # the price only: nothing lent, nothing to record
            return {"lent": 0, "line": line}

        def txn(session):
            earlier = self.loans.find_one({"_id": loan_id}, session=session)
            if earlier is not None:
                return earlier["qty"]
            lent = domain.lendable(sku["stock"], qty)
            if lent and self.skus.update_one({"_id": sku_id, "stock": {"$gte": lent + domain.LOAN_FLOOR}},
                                             {"$inc": {"stock": -lent}}, session=session).matched_count == 0:
                lent = 0  # sold down meanwhile
            self.loans.insert_one({"_id": loan_id, "kind": "lend", "sku_id": sku_id, "qty": lent,
                                   "at": utcnow()}, session=session)
            return lent
        return {"lent": self.transaction(txn), "line": line}

    def take_back(self, loan_id, sku_id, qty):
        """Units of a lot given back: into the SKU's stock once per loan_id (True the first time)."""
        def txn(session):
            if self.loans.find_one({"_id": loan_id}, {"_id": 1}, session=session) is not None:
                return False
            self.loans.insert_one({"_id": loan_id, "kind": "return", "sku_id": sku_id, "qty": qty,
                                   "at": utcnow()}, session=session)
            if qty:
                self.skus.update_one({"_id": sku_id}, {"$inc": {"stock": qty}}, session=session)
            return True
        return self.transaction(txn)

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
