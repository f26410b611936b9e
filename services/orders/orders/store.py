"""The orders service's collections and transactions.

orders    one document per order; `creating` intents (written before stock is reserved) become orders or are
          abandoned. `due_at` is when the sweep must next look at it (payment timeout, auto-confirm, a stuck
          intent); `claimed_until` is the lease of the replica handling it (kit.claims).
groups    group buys: seats (`members`, `free_seats`) change only through conditional atomic updates.
payments  one document per provider `trade_no`: a notification is applied once.
refunds   money going back; `processing` refunds are retried by the sweep until the provider confirmed them.
loans     stock the catalog lent us, one document per SKU (orders.loans): `units` left to sell, the SKU's `line`
          as the catalog priced it with its last lot (`priced_at`), `used_at` of the last sale.
loan_ops  lots asked of the catalog and given back to it, by loan id, `asked` until the answer is recorded.

Every status change is a conditional update (on the status read in the same transaction) written together with
its event (outbox), so two racing actions cannot both win and no change goes unannounced.
"""
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kit import claims, paging
from kit.batching import ALONE
from kit.durability import DURABLE
from kit.errors import Conflict, NotFound, QuanziError
from kit.mongo import BaseStore
from kit.validation import as_stored, new_id, utcnow
from orders import domain
from orders.domain import ABANDONED, CREATING


class _Abandoned(Exception):
    """A batch's transaction found an intent abandoned: abort it all (confirm_many)."""


class _Short(Exception):
    """A loan of a batch cannot cover it any more: abort the batch (place_from_loans)."""


class _Changed(Exception):
    """An order of a batch changed between its read and its update: abort the batch (apply_payments)."""


CLAIM_LEASE = timedelta(seconds=15)  # lease of a claimed due item; a crashed replica's items are picked up after it
LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)  # a price this old is never used
REFUND_RETRY_SECONDS = 10  # a refund not confirmed inline by then is retried by the sweep


class OrdersStore(BaseStore):
    COLLECTIONS = ("orders", "groups", "payments", "refunds", "loans", "loan_ops")
    CLAIMED = ("orders", "groups", "refunds")
    PERSONAL_DATA = {"orders": ("buyer_id",), "refunds": ("buyer_id",), "groups": ("members.user_id",)}
    INDEXES = {
        "orders": [
            # the same Idempotency-Key from the same buyer can only ever name one order
            IndexModel([("buyer_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True,
                       partialFilterExpression={"idempotency_key": {"$type": "string"}}),
            IndexModel([("buyer_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
            IndexModel([("merchant_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
            IndexModel([("due_at", ASCENDING)]),
        ],
        "groups": [IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)]),
                   IndexModel([("product_id", ASCENDING), ("status", ASCENDING), ("expires_at", ASCENDING)])],
        "payments": [IndexModel([("order_id", ASCENDING)])],
        "loans": [IndexModel([("used_at", ASCENDING)]), IndexModel([("line.product_id", ASCENDING)])],
        "loan_ops": [IndexModel([("status", ASCENDING), ("at", ASCENDING)])],
        "refunds": [IndexModel([("order_id", ASCENDING)]), IndexModel([("status", ASCENDING), ("due_at", ASCENDING)]),
                    # the admin dispute queue: disputes by status, newest first
                    IndexModel([("kind", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING),
                                ("_id", DESCENDING)])],
    }

    # -- reading -----------------------------------------------------------------------------------------
    def order(self, order_id, session=None):
        order = self.orders.find_one({"_id": order_id}, session=session)
        if order is None or order["status"] in (CREATING, ABANDONED):
            raise NotFound("order not found")
        return order

    def orders_of(self, order_ids):
        """{order id: order} of those that exist (one read; `creating` intents are no orders yet)."""
        return {order["_id"]: order for order in self.orders.find({"_id": {"$in": list(order_ids)}})
                if order["status"] not in (CREATING, ABANDONED)}

    def unshipped(self, order_id, session=None):
        """True when the order exists and was never shipped (its goods are still in the merchant's stock)."""
        order = self.orders.find_one({"_id": order_id}, {"shipped_at": 1}, session=session)
        return order is not None and not order.get("shipped_at")

    def refund(self, refund_id, session=None):
        refund = self.refunds.find_one({"_id": refund_id}, session=session)
        if refund is None:
            raise NotFound("refund not found")
        return refund

    def dispute(self, dispute_id):
        dispute = self.refunds.find_one({"_id": dispute_id, "kind": "dispute"})
        if dispute is None:
            raise NotFound("dispute not found")
        return dispute

    def refunds_of(self, order_id):
        return list(self.refunds.find({"order_id": order_id}).sort("created_at", ASCENDING))

    def group(self, group_id, session=None):
        group = self.groups.find_one({"_id": group_id}, session=session)
        if group is None:
            raise NotFound("group buy not found")
        return group

    def open_groups(self, product_id, now, limit):
        """A product's groups with a free seat, closing soonest first."""
        return list(self.groups.find({"product_id": product_id, "status": domain.GROUP_OPEN,
                                      "expires_at": {"$gt": now}, "free_seats": {"$gt": 0}})
                    .sort("expires_at", ASCENDING).limit(limit))

    def list_orders(self, match, status, limit, cursor):
        query = dict(match, status=status or {"$nin": [CREATING, ABANDONED]})
        return paging.find_page(self.orders, query, limit, cursor, "created_at", projection={"address": 0})

    # -- creating an order: intent → (seat) → stock → confirm ----------------------------------------------
    def insert_intent(self, buyer_id, key, group_id, now, fingerprint=None):
        """Write the order's intent before any stock is reserved, so a crash half-way leaves a trace the sweep
        can undo. Returns (intent, None), or (None, the order already made with this Idempotency-Key).

        Acknowledged by a majority before the catalog is asked for stock: the intent is the only trace from which
        the sweep gives back a reservation whose order never got confirmed, so it must not be lost in a failover
        while that reservation survives. (The catalog's own majority writes do not vouch for it: they go to the
        catalog's database, which may live on another replica set; deploy/.)"""
        intent = self.new_intent(buyer_id, key, group_id, now, fingerprint)
        try:
            self.orders.with_options(write_concern=DURABLE).insert_one(intent)
            return intent, None
        except DuplicateKeyError:
            return None, self.orders.find_one({"buyer_id": buyer_id, "idempotency_key": key})

    def insert_intents(self, requests, now):
        """insert_intent for a batch [(buyer_id, key, fingerprint)] in one insert (majority, for the same
        reason); one intent per request, or None where the buyer's Idempotency-Key names an intent or order already
        (the caller then goes through insert_intent, which finds it)."""
        intents = [self.new_intent(buyer_id, key, None, now, fingerprint) for buyer_id, key, fingerprint in requests]
        try:
            self.orders.with_options(write_concern=DURABLE).insert_many(intents, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details["writeErrors"]
            if any(error["code"] != 11000 for error in errors):
                raise
            for error in errors:
                intents[error["index"]] = None
        return intents

    def new_intent(self, buyer_id, key, group_id, now, fingerprint=None):
        # to the millisecond MongoDB keeps: the answer to the request that places the order then shows the times a
        # later read (or a replay of its Idempotency-Key) shows
        now = as_stored(now)
        intent = {"_id": new_id("ord"), "buyer_id": buyer_id, "status": CREATING, "group_id": group_id,
                  "created_at": now, **claims.free()}
        if key is not None:
            intent["idempotency_key"] = key
            intent["request_hash"] = fingerprint  # domain.replay_of: the key's repeat must be the same request
        intent["due_at"] = domain.due_at(intent, self.settings)
        return intent

    @staticmethod
    def _confirmed_fields(order):
        """What confirming writes over the intent: everything but what the intent was created with."""
        return {k: v for k, v in order.items() if k not in ("_id", "buyer_id", "created_at", "idempotency_key",
                                                          "request_hash")}

    def by_key(self, buyer_id, key):
        return self.orders.find_one({"buyer_id": buyer_id, "idempotency_key": key})

    def take_seat(self, group_id, user_id, order_id, now):
        """Hold a seat for `order_id`, atomically: never more members than seats, one seat per user."""
        return self.groups.find_one_and_update(
            {"_id": group_id, "status": domain.GROUP_OPEN, "expires_at": {"$gt": now}, "free_seats": {"$gt": 0},
             "leader_id": {"$ne": user_id}, "members.user_id": {"$ne": user_id}},
            {"$push": {"members": {"user_id": user_id, "order_id": order_id, "paid": False}},
             "$inc": {"free_seats": -1}},
            return_document=ReturnDocument.AFTER)

    def confirm(self, order, group=None):
        """The intent becomes a pending_payment order (and opens its group) with `order.created`, unless the
        sweep abandoned it meanwhile (then Conflict: the caller gives everything back)."""
        fields = self._confirmed_fields(order)

        def txn(session):
            result = self.orders.update_one({"_id": order["_id"], "status": CREATING}, {"$set": fields},
                                            session=session)
            if result.matched_count == 0:
                raise Conflict("placing the order took too long; please try again")
            if group is not None:
                self.groups.insert_one(group, session=session)
            # the order's first event (a `creating` intent emits none): no earlier event of it to look up
            self.emit(session, "order.created", domain.event_data(order), subject=order["_id"], first=True)
        self.transaction(txn)

    def confirm_many(self, orders):
        """confirm() of a batch of single orders in one transaction (one bulk update, one insert of their
        `order.created`). False, with nothing written, when any of them was abandoned meanwhile (the caller then
        confirms them one by one, and gives back what belongs to the abandoned ones)."""
        def txn(session):
            updates = [UpdateOne({"_id": order["_id"], "status": CREATING}, {"$set": self._confirmed_fields(order)})
                       for order in orders]
            if self.orders.bulk_write(updates, ordered=True, session=session).matched_count != len(orders):
                raise _Abandoned()
            self.emit_many(session, [("order.created", domain.event_data(order), order["_id"]) for order in orders],
                           first=True)
        try:
            self.transaction(txn)
            return True
        except _Abandoned:
            return False

    # -- stock on loan (orders.loans) -------------------------------------------------------------------------
    def loans_of(self, sku_ids):
        """{sku id: loan} of those SKUs that have one (one read)."""
        return {loan["_id"]: loan for loan in self.loans.find({"_id": {"$in": list(sku_ids)}})}

    def place_from_loans(self, orders, takes, now):
        """Orders sold from loans, in one transaction: each SKU's loan gives `takes[sku]` units (a conditional
        update: enough units, the price still fresh), the orders are written placed, with their `order.created`.
        False, with nothing written, when a loan ran short or was repriced meanwhile, or an Idempotency-Key names
        an order already (the caller places them the usual way)."""
        def txn(session):
            if self.loans.bulk_write([UpdateOne(
                    {"_id": sku_id, "units": {"$gte": qty}, "line": {"$ne": None},
                     "priced_at": {"$gt": now - domain.LOAN_PRICED_FOR}},
                    {"$inc": {"units": -qty}, "$set": {"used_at": now}}) for sku_id, qty in takes.items()],
                    session=session).matched_count != len(takes):
                raise _Short()
            self.orders.insert_many(orders, session=session)
            self.emit_many(session, [("order.created", domain.event_data(order), order["_id"]) for order in orders],
                           first=True)
        try:
            self.transaction(txn)
            return True
        except (_Short, DuplicateKeyError, BulkWriteError):
            return False

    def ask_lot(self, loan_id, sku_id, qty, now):
        """Record a lot about to be asked of the catalog (majority: the sweep finishes it if we die)."""
        self.loan_ops.with_options(write_concern=DURABLE).insert_one(
            {"_id": loan_id, "kind": "borrow", "sku_id": sku_id, "qty": qty, "status": "asked", "at": now})

    def credit_lot(self, loan_id, sku_id, lent, line, now):
        """The catalog's answer to a lot: its units join the SKU's loan, with the price it gave, once per loan id
        (False when it was recorded already)."""
        def txn(session):
            if self.loan_ops.update_one({"_id": loan_id, "status": "asked"}, {"$set": {"status": "done", "lent": lent}},
                                        session=session).matched_count == 0:
                return False
            self.loans.update_one({"_id": sku_id}, {"$inc": {"units": lent},
                                                    "$set": {"line": line, "priced_at": now, "last_lent": lent},
                                                    "$setOnInsert": {"used_at": now}}, upsert=True, session=session)
            return True
        return self.transaction(txn)

    def reprice(self, sku_id, line, now):
        """The SKU's line as the catalog prices it now (None: no longer on sale) for the loan's sales."""
        self.loans.update_one({"_id": sku_id}, {"$set": {"line": line, "priced_at": now}})

    def reprice_product(self, product_id, session):
        """The product changed (price, offer, taken off sale): its SKUs' loans sell nothing until the catalog
        prices them again (the next hot batch asks)."""
        self.loans.update_many({"line.product_id": product_id}, {"$set": {"priced_at": LONG_AGO}}, session=session)

    @staticmethod
    def _idle(idle_since, stale_before):
        """A loan whose units go back: unused since `idle_since`, off sale, or its price older than
        `stale_before` (nobody asked for it again, or the product changed: reprice_product)."""
        return {"units": {"$gt": 0}, "$or": [{"used_at": {"$lt": idle_since}}, {"line": None},
                                             {"priced_at": {"$lt": stale_before}}]}

    def take_back_lot(self, sku_id, loan_id, idle_since, stale_before, now):
        """Take every unsold unit off an idle loan (_idle) to give back, in one transaction with the record of that
        return: its units, or 0 when there is nothing to give back."""
        def txn(session):
            loan = self.loans.find_one({"_id": sku_id, **self._idle(idle_since, stale_before)}, session=session)
            if loan is None:
                return 0
            self.loans.update_one({"_id": sku_id}, {"$inc": {"units": -loan["units"]}}, session=session)
            self.loan_ops.insert_one({"_id": loan_id, "kind": "return", "sku_id": sku_id, "qty": loan["units"],
                                      "status": "asked", "at": now}, session=session)
            return loan["units"]
        return self.transaction(txn)

    def lot_returned(self, loan_id):
        self.loan_ops.update_one({"_id": loan_id, "status": "asked"}, {"$set": {"status": "done"}})

    def unsettled_lots(self, before, limit=50):
        """Lots asked or given back before `before` whose answer was never recorded (their caller died)."""
        return list(self.loan_ops.find({"status": "asked", "at": {"$lt": before}}).limit(limit))

    def idle_loans(self, idle_since, stale_before, limit=50):
        """SKUs whose loans are idle (_idle)."""
        return [loan["_id"] for loan in self.loans.find(self._idle(idle_since, stale_before), {"_id": 1}).limit(limit)]

    def back_to_loan(self, order_id, session):
        """An order sold from a loan gives its units back to that loan, once per order (as the catalog releases a
        reservation once: a cancelled order refunded later, a late payment, hears two events); False for an order
        whose stock the catalog reserved."""
        order = self.orders.find_one({"_id": order_id, "stock": {"$in": ["loan", "loan_given_back"]}},
                                     {"lines": 1, "stock": 1}, session=session)
        if order is None:
            return False
        if order["stock"] == "loan_given_back":
            return True
        self.orders.update_one({"_id": order_id}, {"$set": {"stock": "loan_given_back"}}, session=session)
        for line in order["lines"]:
            self.loans.update_one({"_id": line["sku_id"]}, {"$inc": {"units": line["qty"]}}, session=session)
        return True

    def mark_abandoned(self, order_id):
        """Claim an unfinished intent for undoing; None when it became an order after all."""
        return self.orders.find_one_and_update({"_id": order_id, "status": {"$in": [CREATING, ABANDONED]}},
                                               {"$set": {"status": ABANDONED}}, return_document=ReturnDocument.AFTER)

    def free_seat(self, group_id, order_id, session=None):
        """Give an unpaid seat back while the group is open (a failed group keeps its member list)."""
        self.groups.update_one({"_id": group_id, "status": domain.GROUP_OPEN,
                                "members": {"$elemMatch": {"order_id": order_id, "paid": False}}},
                               {"$pull": {"members": {"order_id": order_id}}, "$inc": {"free_seats": 1}},
                               session=session)

    def drop_intent(self, order_id):
        self.orders.delete_one({"_id": order_id, "status": ABANDONED})

    # -- status changes ------------------------------------------------------------------------------------
    def _moved(self, order, action, now, sets=None):
        """(the order after `action`, the fields that changed): 409 unless its state machine allows it."""
        changed = dict(order, **(sets or {}), status=domain.transition(order, action), updated_at=now)
        changed["due_at"] = domain.due_at(changed, self.settings)
        return changed, {k: changed[k] for k in ("status", "updated_at", "due_at", *(sets or {}))}

    def _move(self, session, order, action, now, sets=None, event=None, **extra):
        """Apply `action` to `order` (read in this transaction): conditional update + its event."""
        changed, update = self._moved(order, action, now, sets)
        result = self.orders.update_one({"_id": order["_id"], "status": order["status"]}, {"$set": update},
                                        session=session)
        if result.matched_count == 0:
            raise Conflict("the order changed meanwhile; look again")
        if event is not None:
            self.emit(session, event, domain.event_data(changed, **extra), subject=order["_id"])
        return changed

    def change(self, order_id, action, now, sets=None, event=None, **extra):
        """One status change in its own transaction (who may act is checked by the caller beforehand)."""
        def txn(session):
            return self._move(session, self.order(order_id, session), action, now, sets, event, **extra)
        return self.transaction(txn)

    def cancel(self, order_id, action, now):
        """Cancel an unpaid order (buyer, payment timeout, failed group); its seat goes back to an open group.
        Stock is released by the order.cancelled consumer."""
        def txn(session):
            order = self.order(order_id, session)
            changed = self._move(session, order, action, now, {
                "cancel_reason": domain.CANCEL_REASONS[action], "cancelled_at": now},
                "order.cancelled", reason=domain.CANCEL_REASONS[action], refunded_fen=0)
            if order.get("group_id"):
                self.free_seat(order["group_id"], order_id, session)
            return changed
        return self.transaction(txn)

    # -- payments ------------------------------------------------------------------------------------------
    def apply_payment(self, note, now):
        """Apply a provider notification once per trade_no. Returns (outcome, refund_id, the order's status as
        this left it, None for a repeat): "duplicate" (seen before: nothing changes), "applied", or "refund" (late
        or not applicable: the money goes back)."""
        def txn(session):
            # no look-up of the trade_no first: its payment insert below fails on a repeat (DuplicateKeyError,
            # the transaction aborted, nothing written), which answers "duplicate"
            try:
                order = self.order(note["order_id"], session)
                domain.check_amount(order, note)
            except QuanziError:
                if self.payments.find_one({"_id": note["trade_no"]}, {"_id": 1}, session=session):
                    return "duplicate", None, None  # a repeat changes nothing, whatever it says now
                raise
            group = self.group(order["group_id"], session) if order.get("group_id") else None
            payment = {"_id": note["trade_no"], "order_id": order["_id"], "amount_fen": note["amount_fen"],
                       "received_at": now}
            if not domain.payment_applies(order, group, now):
                refund_id = new_id("rfd")
                self.payments.insert_one(dict(payment, outcome="refunded", refund_id=refund_id), session=session)
                self.refunds.insert_one(self._new_refund(refund_id, order, "late_payment", note["amount_fen"],
                                                         note["trade_no"], now, "processing"), session=session)
                return "refund", refund_id, order["status"]
            self.payments.insert_one(dict(payment, outcome="applied"), session=session)
            paid = {"trade_no": note["trade_no"], "paid_at": now}
            if group is None:
                changed = self._move(session, order, "pay", now, paid, "order.paid", trade_no=note["trade_no"],
                                     paid_at=now.isoformat())
            else:
                changed = self._pay_seat(session, order, group, paid, now)
            return "applied", None, changed["status"]
        try:
            return self.transaction(txn)
        except DuplicateKeyError:  # this notification was applied before (or a concurrent copy committed first)
            return "duplicate", None, None

    def apply_payments(self, notes, now, written=None):
        """apply_payment of notifications that arrived together (group commit), in one transaction: one read of
        their orders, one insert of their payments, one bulk update of the orders, one insert of their
        `order.paid`; once committed, `written` (a dict) gets {order id: the order as written} of those applied.
        Only the common cases are decided here: the first notification of a plain order waiting for payment, for
        the right amount (domain.pays_plainly), and a repeat of the payment that paid its order ("duplicate",
        nothing written: each pay's notification, which follows the pay's own trade query). Any other note (a
        group seat, a late payment, a wrong amount, a second note for one order) gets ALONE: apply_payment
        decides it on its own.
        A payment recorded meanwhile by a concurrent copy, or an order changed meanwhile, makes the whole batch
        ALONE, with nothing written. One outcome per note, as apply_payment returns them."""
        paying = {}  # of the attempt that committed: with_transaction may run txn again

        def txn(session):
            orders = {order["_id"]: order for order in self.orders.find(
                {"_id": {"$in": [note["order_id"] for note in notes]}}, session=session)}
            outcomes = []
            paying.clear()
            for note in notes:
                order = orders.get(note["order_id"])
                if order is not None and domain.repeats_payment(order, note):
                    outcomes.append(("duplicate", None, order["status"]))
                    continue
                if order is None or order["_id"] in paying or not domain.pays_plainly(order, note):
                    outcomes.append(ALONE)
                    continue
                changed, update = self._moved(order, "pay", now, {"trade_no": note["trade_no"], "paid_at": now})
                paying[order["_id"]] = (note, order, changed, update)
                outcomes.append(("applied", None, changed["status"]))
            if not paying:
                return outcomes
            # a repeat among them fails this insert (DuplicateKeyError): the transaction is aborted, and each note
            # is decided alone
            self.payments.insert_many([{"_id": note["trade_no"], "order_id": order_id, "amount_fen": note["amount_fen"],
                                        "received_at": now, "outcome": "applied"}
                                       for order_id, (note, *_) in paying.items()], session=session)
            moved = self.orders.bulk_write([UpdateOne({"_id": order_id, "status": order["status"]}, {"$set": update})
                                            for order_id, (_, order, _, update) in paying.items()], session=session)
            if moved.matched_count != len(paying):
                raise _Changed()
            self.emit_many(session, [("order.paid", domain.event_data(changed, trade_no=note["trade_no"],
                                                                      paid_at=now.isoformat()), order_id)
                                     for order_id, (note, _, changed, _) in paying.items()])
            return outcomes
        try:
            outcomes = self.transaction(txn)
        except (DuplicateKeyError, BulkWriteError, _Changed):
            return [ALONE] * len(notes)
        if written is not None:
            written.update((order_id, changed) for order_id, (_, _, changed, _) in paying.items())
        return outcomes

    def repeats(self, notes):
        """For each notification: ("duplicate", None, its order's status) when it repeats the payment that paid
        its order (domain.repeats_payment), else None. One read, no transaction: a trade_no, once on its order,
        stays there."""
        orders = {order["_id"]: order for order in self.orders.find(
            {"_id": {"$in": [note["order_id"] for note in notes]}}, {"status": 1, "trade_no": 1})}
        return [("duplicate", None, orders[note["order_id"]]["status"])
                if note["order_id"] in orders and domain.repeats_payment(orders[note["order_id"]], note) else None
                for note in notes]

    def _pay_seat(self, session, order, group, paid, now):
        """A group seat is paid; the last paid seat forms the group, atomically once (the group document is
        written by every payer, so two last payers cannot both see themselves last)."""
        self.groups.update_one({"_id": group["_id"], "members.order_id": order["_id"]},
                               {"$set": {"members.$.paid": True}, "$inc": {"paid": 1}}, session=session)
        forms = group["paid"] + 1 == group["size"]
        action = "pay" if forms else "pay_group_seat"
        changed = self._move(session, order, action, now, paid, "order.paid", trade_no=paid["trade_no"],
                             paid_at=now.isoformat())
        if forms:
            others = [m["order_id"] for m in group["members"] if m["order_id"] != order["_id"]]
            self.orders.update_many({"_id": {"$in": others}, "status": domain.AWAITING_GROUP},
                                    {"$set": {"status": domain.PAID, "updated_at": now}}, session=session)
            self.groups.update_one({"_id": group["_id"], "status": domain.GROUP_OPEN},
                                   {"$set": {"status": domain.GROUP_FORMED, "formed_at": now}}, session=session)
            members = [dict(m, paid=True) for m in group["members"]]
            self.emit(session, "groupbuy.formed", domain.group_event_data(
                group, members, formed_at=now.isoformat()), subject=group["_id"])
        return changed

    # -- refunds (their state machine: domain.REFUND_TRANSITIONS) ---------------------------------------------
    def _new_refund(self, refund_id, order, kind, amount, trade_no, now, status, reason=None, return_goods=False):
        due = None
        if status == domain.R_PROCESSING:
            due = now + timedelta(seconds=REFUND_RETRY_SECONDS)
        elif status == domain.R_REQUESTED:
            due = domain.respond_before(now, self.settings)  # unanswered by then: approved by the timers
        return {"_id": refund_id, "order_id": order["_id"], "buyer_id": order["buyer_id"],
                "merchant_id": order["merchant_id"], "kind": kind, "amount_fen": amount, "trade_no": trade_no,
                "reason": reason, "status": status, "return_goods": return_goods, "created_at": now,
                **claims.free(), "due_at": due}

    def request_refund(self, order_id, reason, amount_fen, return_goods, now):
        """The buyer asks for money back: automatic (processing at once) before shipping, else for the
        merchant to decide (with the goods sent back first when `return_goods`)."""
        def txn(session):
            order = self.order(order_id, session)
            amount, automatic = domain.refund_terms(order, amount_fen, now)
            refund = self._new_refund(new_id("rfd"), order, "after_sales", amount, order["trade_no"], now,
                                      domain.R_PROCESSING if automatic else domain.R_REQUESTED, reason,
                                      return_goods=bool(return_goods) and not automatic)
            self._open_refund(session, order, refund, now)
            return refund
        return self.transaction(txn)

    def _open_refund(self, session, order, refund, now):
        """The refund (or dispute) is written and the order is `refund_requested` under it, announced once."""
        self.refunds.insert_one(refund, session=session)
        self._move(session, order, "request_refund", now, {"refund_from": order["status"], "refund_id": refund["_id"]},
                   "order.refund_requested", refund_id=refund["_id"], amount_fen=refund["amount_fen"],
                   reason=refund["reason"])

    def step_refund(self, refund_id, action, now, sets=None, session=None):
        """One refund transition without an order event (approve, auto-approve, goods sent back, goods received),
        conditional on the status it was read in: of two racing steps one wins, the other gets 409."""
        refund = self.refund(refund_id, session)
        target = domain.refund_transition(refund, action)
        sets = dict(sets or {}, status=target)
        sets["due_at"] = now + timedelta(seconds=REFUND_RETRY_SECONDS) if target == domain.R_PROCESSING else \
            domain.waiting_deadline(target, now, self.settings)
        stepped = self.refunds.find_one_and_update({"_id": refund_id, "status": refund["status"]}, {"$set": sets},
                                                   return_document=ReturnDocument.AFTER, session=session)
        if stepped is None:
            status = self.refund(refund_id, session)["status"]
            raise Conflict(f"this refund is already {status}", {"status": [status]})
        return stepped

    def approve_refund(self, refund_id, now, auto=False):
        return self.step_refund(refund_id, "auto_approve" if auto else "approve", now,
                                {"decided_at": now, "auto_approved": auto})

    def reject_refund(self, refund_id, reason, now, action="reject", decided_by=None):
        """The merchant rejects (also after the goods came back), an admin decides a dispute against the buyer, or
        the timers close a return whose goods never left: the order goes back where it was, with
        order.refund_rejected (its reason says which)."""
        def txn(session):
            refund = self.refund(refund_id, session)
            target = domain.refund_transition(refund, action)
            said = "close_reason" if target == domain.R_CLOSED else "reject_reason"
            sets = {"status": target, said: reason, "decided_at": now, "due_at": None}
            if decided_by:
                sets.update(decided_by=decided_by, decision_reason=reason)
            result = self.refunds.update_one({"_id": refund_id, "status": refund["status"]}, {"$set": sets},
                                             session=session)
            if result.matched_count == 0:
                raise Conflict("this refund changed meanwhile; look again", {"status": [refund["status"]]})
            order = self.order(refund["order_id"], session)
            self._move(session, order, "reject_refund", now, {"refund_id": None}, "order.refund_rejected",
                       refund_id=refund_id, amount_fen=refund["amount_fen"], reason=reason)
            return dict(refund, **sets)
        return self.transaction(txn)

    def escalate(self, refund_id, reason, now):
        """A rejected buyer opens a dispute: a refund of kind "dispute" for the platform to decide. The order is
        `refund_requested` again (order.refund_requested under the dispute's id: commission stays blocked)."""
        def txn(session):
            refund = self.refund(refund_id, session)
            domain.refund_transition(refund, "escalate")
            order = self.order(refund["order_id"], session)
            amount = domain.dispute_terms(order, refund, now)
            dispute = dict(self._new_refund(new_id("dsp"), order, "dispute", amount, refund["trade_no"], now,
                                            domain.R_DISPUTED, reason),
                           escalated_from=refund_id, asked_fen=amount, merchant_reason=refund.get("reject_reason"))
            result = self.refunds.update_one({"_id": refund_id, "status": domain.R_REJECTED}, {"$set": {
                "status": domain.R_ESCALATED, "dispute_id": dispute["_id"], "escalated_at": now}}, session=session)
            if result.matched_count == 0:
                raise Conflict("this refund was escalated already", {"status": [domain.R_ESCALATED]})
            self._open_refund(session, order, dispute, now)
            return dispute
        return self.transaction(txn)

    def decide_for_buyer(self, dispute_id, amount_fen, reason, admin_id, now):
        """An admin decides a dispute for the buyer (the asked amount or part of it): processing, paid back by
        the caller. Final: a decided dispute is 409."""
        dispute = self.refund(dispute_id)
        domain.refund_transition(dispute, "decide_refund")
        amount = domain.decided_amount(dispute, amount_fen)
        return self.step_refund(dispute_id, "decide_refund", now, {
            "amount_fen": amount, "decided_by": admin_id, "decision_reason": reason, "decided_at": now})

    def disputes(self, status, limit, cursor):
        query = {"kind": "dispute"}
        if status == "open":
            query["status"] = domain.R_DISPUTED
        elif status == "decided":
            query["status"] = {"$ne": domain.R_DISPUTED}
        return paging.find_page(self.refunds, query, limit, cursor, "created_at")

    def group_failure_refund(self, order, now):
        """The refund of a paid member of a failed group: one per order, whatever the retries."""
        refund = self._new_refund(f"rfd_gf_{order['_id']}", order, "group_failed", order["total_fen"],
                                  order["trade_no"], now, domain.R_PROCESSING)
        try:
            self.refunds.insert_one(refund)
        except DuplicateKeyError:
            refund = self.refunds.find_one({"_id": refund["_id"]})
        return refund

    def finish_refund(self, refund_id, now):
        """Record a refund the provider confirmed, with its effect on the order and its one order.refunded
        (refunded_fen, cause), once."""
        def txn(session):
            refund = self.refunds.find_one_and_update(
                {"_id": refund_id, "status": domain.R_PROCESSING},
                {"$set": {"status": domain.R_SUCCEEDED, "refunded_at": now, "due_at": None}},
                return_document=ReturnDocument.AFTER, session=session)
            if refund is None:
                return None  # finished before (a retry, or another replica)
            order = self.order(refund["order_id"], session)
            action, refunded_total = domain.money_back(order, refund)
            facts = dict(refund_id=refund_id, amount_fen=refund["amount_fen"], reason=refund.get("reason"),
                         refunded_fen=refund["amount_fen"], refunded_total_fen=refunded_total,
                         cause=domain.REFUND_CAUSES[refund["kind"]])
            if action is None:  # money the order never counted: it stays as it is
                self.emit(session, "order.refunded", domain.event_data(
                    order, full=order["status"] == domain.REFUNDED, **facts), subject=order["_id"])
                return refund
            sets = {"refunded_fen": refunded_total}
            if order.get("refund_id") == refund_id:
                sets["refund_id"] = None
            self._move(session, order, action, now, sets, "order.refunded",
                       full=domain.TRANSITIONS[action][1] == domain.REFUNDED, **facts)
            return refund
        return self.transaction(txn)

    # -- group failure -------------------------------------------------------------------------------------
    def start_failing(self, group_id, now):
        """open → failing once its window has ended; the group as it is now (formed groups stay formed)."""
        self.groups.update_one({"_id": group_id, "status": domain.GROUP_OPEN, "expires_at": {"$lte": now}},
                               {"$set": {"status": domain.GROUP_FAILING, "failing_since": now}})
        return self.group(group_id)

    def member_orders(self, group):
        return list(self.orders.find({"_id": {"$in": [m["order_id"] for m in group["members"]]}}))

    def finish_failure(self, group, now):
        def txn(session):
            result = self.groups.update_one({"_id": group["_id"], "status": domain.GROUP_FAILING}, {"$set": {
                "status": domain.GROUP_FAILED, "failed_at": now}}, session=session)
            if result.modified_count:
                self.emit(session, "groupbuy.failed", domain.group_event_data(
                    group, group["members"], failed_at=now.isoformat()), subject=group["_id"])
        self.transaction(txn)

    # -- sweeps: claim one due item at a time ----------------------------------------------------------------
    def _claim(self, collection, query, now):
        return claims.next_due(collection, query, now, CLAIM_LEASE)

    def claim_due_order(self, now):
        return self._claim(self.orders, {"due_at": {"$lte": now}}, now)

    def claim_due_refund(self, now):
        return self._claim(self.refunds, {"status": domain.R_PROCESSING, "due_at": {"$lte": now}}, now)

    def claim_timed_out_refund(self, now):
        """A refund left waiting on one side past its window (domain.TIMED_OUT: the caller acts on it). Requests
        made before the response window existed have no due_at: their creation time counts (no migration)."""
        legacy_due = now - timedelta(seconds=self.settings.refund_response_window)
        return self._claim(self.refunds, {"$or": [
            {"status": {"$in": list(domain.TIMED_OUT)}, "due_at": {"$lte": now}},
            {"status": domain.R_REQUESTED, "due_at": None, "created_at": {"$lte": legacy_due}}]}, now)

    def claim_expired_group(self, now):
        return self._claim(self.groups, {"status": {"$in": [domain.GROUP_OPEN, domain.GROUP_FAILING]},
                                         "expires_at": {"$lte": now}}, now)

    def release_claim(self, collection, item_id, retry_in):
        claims.release(self.db[collection], item_id, None if retry_in is None else timedelta(seconds=retry_in))

    def clear_due(self, order_id):
        """A due order in a status with no timer (its timer was already handled): stop looking at it."""
        self.orders.update_one({"_id": order_id, "status": {"$nin": [CREATING, ABANDONED,
                                                                     domain.PENDING, domain.SHIPPED]}},
                               {"$set": {"due_at": None}})

    # -- erasure (user.deleted): orders are kept for the law, de-identified ---------------------------------
    def deidentify_buyer(self, user_id, at, session):
        """The erased user's orders keep ids and amounts (bookkeeping, disputes) but lose the address."""
        return self.orders.update_many({"buyer_id": user_id, "address": {"$ne": None}},
                                       {"$set": {"address": None, "address_erased_at": at}},
                                       session=session).modified_count
