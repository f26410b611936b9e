"""The commission service's collections, and the transactions that keep ledger, balances and events in step.

shares       share_code → sharer (from share.created; share.clicked names the sharer too)
bindings     every click of a signed-in viewer, kept (history); the active one is the last in the window
inviters     user → inviter, first touch (user.joined, inviter.bound), never overwritten
orders       each order's facts as learnt from its events (domain.absorb) and its attribution, once decided
commissions  one per (order, level): accrued, reversed, status; the settlement sweep claims due ones here
ledger       append-only moves between balance buckets, unique per (order, beneficiary, level, kind, ref)
balances     per user, one field per bucket; changed only in the transaction that writes the ledger entry
withdrawals  payout requests, unique per (user, Idempotency-Key)
"""
from prometheus_client import Counter, Gauge
from pymongo import ASCENDING, DESCENDING, IndexModel, InsertOne, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from commission import domain
from kit import claims, paging
from kit.errors import Conflict
from kit.mongo import BaseStore
from kit.validation import new_id, utcnow

ACCRUED_FEN = Counter("quanzi_commission_accrued_fen_total", "Commission accrued on paid orders, in fen")
RECONCILIATION_DIFFERENCE = Gauge("quanzi_reconciliation_difference_fen",
                                  "Total |ledger - balance| found by the last reconciliation, in fen")


BINDING_ORDER = [("clicked_at", DESCENDING), ("_id", DESCENDING)]  # the active binding is the first
BATCH_CLICKS = 500  # clicks a batch reads at most at once; a batch whose buyers clicked more reads event by event


class CommissionStore(BaseStore):
    COLLECTIONS = ("shares", "bindings", "inviters", "orders", "commissions", "ledger", "balances", "withdrawals")
    # ids and amounts only (no phone, nickname or address): an erased user's ledger is kept as it is
    PERSONAL_DATA = {"shares": ("sharer_id",), "bindings": ("viewer_id", "sharer_id"),
                     "inviters": ("_id", "inviter_id"), "orders": ("buyer_id",), "commissions": ("beneficiary_id",),
                     "ledger": ("beneficiary_id",), "balances": ("_id",), "withdrawals": ("user_id",)}
    INDEXES = {
        "shares": [IndexModel([("sharer_id", ASCENDING)])],
        "bindings": [IndexModel([("viewer_id", ASCENDING), ("clicked_at", DESCENDING)])],
        "inviters": [IndexModel([("inviter_id", ASCENDING)])],
        "orders": [IndexModel([("buyer_id", ASCENDING)])],
        "commissions": [
            IndexModel([("order_id", ASCENDING)]),
            IndexModel([("status", ASCENDING), ("blocked", ASCENDING), ("settle_after", ASCENDING)]),
        ],
        "ledger": [
            IndexModel([("order_id", ASCENDING), ("beneficiary_id", ASCENDING), ("level", ASCENDING),
                        ("kind", ASCENDING), ("ref", ASCENDING)], unique=True, name="one_entry_per_cause"),
            IndexModel([("beneficiary_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]),
        ],
        "balances": [],
        "withdrawals": [
            IndexModel([("user_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True,
                       partialFilterExpression={"idempotency_key": {"$type": "string"}}),
            IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
            IndexModel([("status", ASCENDING), (claims.FIELD, ASCENDING)]),
        ],
    }

    # -- social facts (never money: C2, C8) --------------------------------------------------------------
    def record_share(self, session, share_code, sharer_id, product_id, at):
        self.shares.update_one({"_id": share_code}, {"$setOnInsert": {
            "sharer_id": sharer_id, "product_id": product_id, "at": at}}, upsert=True, session=session)

    def record_click(self, session, click_id, data):
        clicked_at = domain.parse_time(data["clicked_at"])
        self.record_share(session, data["share_code"], data["sharer_id"], data["product_id"], clicked_at)
        if data["viewer_id"] is None or data["viewer_id"] == data["sharer_id"]:
            return  # anonymous, or one's own link: binds nobody
        self.bindings.update_one({"_id": click_id}, {"$setOnInsert": {
            "viewer_id": data["viewer_id"], "sharer_id": data["sharer_id"], "share_code": data["share_code"],
            "clicked_at": clicked_at}}, upsert=True, session=session)

    def record_inviter(self, session, user_id, inviter_id, at):
        if not inviter_id or inviter_id == user_id:
            return
        self.inviters.update_one({"_id": user_id}, {"$setOnInsert": {"inviter_id": inviter_id, "at": at}},
                                 upsert=True, session=session)

    # -- orders ----------------------------------------------------------------------------------------
    def apply_order_event(self, session, order_id, event_type, data):
        """Add the event's facts to the order, accrue once it is paid (attribution decided once, here), and
        bring every commission of the order in line with the facts. One transaction: the caller's."""
        now = utcnow()
        reads = self._batch_reads(session)
        if reads is not None and order_id in reads.orders:
            order = reads.orders.pop(order_id)  # read for the batch; a second event of the order reads again
        else:
            self.flush_writes(session, self.orders)
            order = self.orders.find_one({"_id": order_id}, session=session)
        # an order's commissions are only ever written with its document (below): none before its first event
        existing = []
        if order is not None:
            self.flush_writes(session, self.commissions)
            existing = list(self.commissions.find({"order_id": order_id}, session=session))
        order = order or {"_id": order_id}
        order, new, changed, moves = domain.advance(order, existing, event_type, data,
                                                    lambda o: self._attribute(session, o, now, reads), now)
        # a batch's writes go together at its end (kit: write_later); what reads them here flushes them first
        self.write_later(session, self.orders, ReplaceOne({"_id": order_id}, order, upsert=True))
        for commission in new:
            self.write_later(session, self.commissions, InsertOne(commission))
        if new:
            accrued = sum(c["accrued_fen"] for c in new)
            self.after_commit(session, lambda: ACCRUED_FEN.inc(accrued))
        for commission_id, fields in changed.items():
            self.write_later(session, self.commissions,
                             UpdateOne({"_id": commission_id}, {"$set": {**fields, "updated_at": now}}))
        for commission, move in moves:
            self._post_commission(session, commission, move, now)
        return order

    def _attribute(self, session, order, now, reads=None):
        """Decide once who earns on a paid order, from what the events told us (no other service's data). `reads`:
        what its batch read at once (_batch_reads), or None."""
        settings, buyer_id = self.settings, order["buyer_id"]
        share = None
        if order.get("share_code"):
            share = self.shares.find_one({"_id": order["share_code"]}, session=session)
        since, until = domain.binding_window(order["created_at"], settings.attribution_window)
        if reads is not None and reads.covers(buyer_id, since, until):
            binding = reads.active_binding(buyer_id, since, until)
        else:
            binding = self.bindings.find_one(
                {"viewer_id": buyer_id, "sharer_id": {"$ne": buyer_id}, "clicked_at": {"$gt": since, "$lte": until}},
                sort=BINDING_ORDER, session=session)
        level1_id, via = domain.level1_earner(buyer_id, share and share["sharer_id"],
                                              binding and binding["sharer_id"])
        inviter_id = None
        if level1_id and settings.commission_max_levels == 2:
            inviter = self.inviters.find_one({"_id": level1_id}, session=session)
            inviter_id = inviter and inviter["inviter_id"]
        rows = domain.beneficiaries(order, level1_id, inviter_id, settings.commission_max_levels,
                                    settings.commission_max_total_bp)
        attribution = {"via": via, "level1_id": level1_id, "max_levels": settings.commission_max_levels,
                       "decided_at": now}
        return attribution, rows

    def _batch_reads(self, session):
        """For order events applied together (kit: session.batch_events): their orders' records and their
        buyers' clicks in the attribution windows, read once for the batch (two queries instead of two per
        event), in the batch's transaction. None for an event applied alone."""
        if "commission" not in session.batch_reads:
            events = [e for e in getattr(session, "batch_events", None) or () if e and "order_id" in e.get("data", {})]
            session.batch_reads["commission"] = (self._read_batch(session, [e["data"] for e in events])
                                                 if len(events) > 1 else None)
        return session.batch_reads["commission"]

    def _read_batch(self, session, facts):
        order_ids = list({data["order_id"] for data in facts})
        self.flush_writes(session, self.orders)
        found = {order["_id"]: order for order in self.orders.find({"_id": {"$in": order_ids}}, session=session)}
        windows = [domain.binding_window(domain.parse_time(data["created_at"]), self.settings.attribution_window)
                   for data in facts]
        since, until = min(w[0] for w in windows), max(w[1] for w in windows)
        buyers = list({data["buyer_id"] for data in facts})
        clicks = list(self.bindings.find(
            {"viewer_id": {"$in": buyers}, "clicked_at": {"$gt": since, "$lte": until}},
            {"viewer_id": 1, "sharer_id": 1, "clicked_at": 1}, session=session,
        ).sort(BINDING_ORDER).limit(BATCH_CLICKS + 1))
        return domain.BatchReads({order_id: found.get(order_id) for order_id in order_ids},
                                 None if len(clicks) > BATCH_CLICKS else clicks, buyers, since, until)

    # -- ledger ----------------------------------------------------------------------------------------
    def _post_commission(self, session, commission, move, now):
        data = {"order_id": commission["order_id"], "beneficiary_id": commission["beneficiary_id"],
                "level": commission["level"], "amount_fen": move["amount_fen"], **move["extra"]}
        self._post(session, commission["beneficiary_id"], move, now, data, subject=commission["order_id"],
                   order_id=commission["order_id"], level=commission["level"])

    def _post(self, session, user_id, move, now, event_data, subject, order_id=None, level=0, withdrawal_id=None):
        """One ledger entry, its balance move and its event, in the caller's transaction."""
        amount = move["amount_fen"]
        if amount <= 0:
            return
        self.write_later(session, self.ledger, InsertOne({
            "_id": new_id("led"), "order_id": order_id, "withdrawal_id": withdrawal_id, "beneficiary_id": user_id,
            "level": level, "kind": move["kind"], "ref": move["ref"], "amount_fen": amount,
            "from": move["from"], "to": move["to"], "at": now,
        }))
        self._move(session, user_id, move["from"], move["to"], amount, now)
        self.emit(session, move["event"], event_data, subject=subject)

    def _move(self, session, user_id, source, target, amount, now):
        inc = {f"{target}_fen": amount} if target else {}
        if source is None:
            self.write_later(session, self.balances,
                             UpdateOne({"_id": user_id}, {"$inc": inc, "$set": {"updated_at": now}}, upsert=True))
            return
        inc[f"{source}_fen"] = -amount
        self.flush_writes(session, self.balances)
        # Money leaves a bucket only if it is there: the conditional update makes concurrent withdrawals
        # safe, and guards every other move against a bug driving a balance negative.
        moved = self.balances.update_one({"_id": user_id, f"{source}_fen": {"$gte": amount}},
                                         {"$inc": inc, "$set": {"updated_at": now}}, session=session)
        if moved.matched_count == 0:
            # (only kit.errors classes cross RPC as themselves: a subclass would reach the gateway as a 500)
            raise Conflict(f"amount above the {source} balance",
                                {"amount_fen": [f"more than the {source} balance"]})

    # -- settlement ------------------------------------------------------------------------------------
    def claim_due_settlement(self, now, margin, lease):
        """Claim one frozen commission whose window has passed (one replica at a time; a crashed
        replica's claim expires after `lease`)."""
        return claims.next_due(self.commissions, {"status": domain.FROZEN, "blocked": False,
                                                  "settle_after": {"$lte": now - margin}},
                               now, lease, sort=[("settle_after", ASCENDING)], projection={"_id": 1})

    def settle(self, commission_id, margin):
        """Make a claimed commission withdrawable, re-checking the rules inside the transaction (a refund
        request that committed meanwhile wins)."""
        def txn(session):
            now = utcnow()
            commission = self.commissions.find_one({"_id": commission_id}, session=session)
            order = self.orders.find_one({"_id": commission["order_id"]}, session=session)
            move = domain.settle_step(commission, order, now, margin)
            if move is None:
                return False
            self._post_commission(session, commission, move, now)
            self.commissions.update_one({"_id": commission_id, "status": domain.FROZEN},
                                        {"$set": {"status": domain.SETTLED, "updated_at": now}}, session=session)
            return True
        return self.transaction(txn)

    # -- withdrawals -----------------------------------------------------------------------------------
    def request_withdrawal(self, user_id, amount_fen, idempotency_key, lease):
        """(withdrawal, created): take the amount out of the withdrawable balance atomically, or return the
        request already made with this Idempotency-Key."""
        def txn(session):
            now = utcnow()
            if idempotency_key is not None:
                existing = self.withdrawals.find_one({"user_id": user_id, "idempotency_key": idempotency_key},
                                                     session=session)
                if existing is not None:
                    return existing, False
            withdrawal = {"_id": new_id("wd"), "user_id": user_id, "amount_fen": amount_fen,
                          "idempotency_key": idempotency_key, "status": "requested", "reason": None,
                          "created_at": now, **claims.held(now, lease)}
            self.withdrawals.insert_one(withdrawal, session=session)
            self._post_withdrawal(session, withdrawal, "withdrawal", now)
            return withdrawal, True
        try:
            withdrawal, created = self.transaction(txn)
        except DuplicateKeyError:  # the same key, concurrently: the other request won
            withdrawal, created = self.withdrawals.find_one({"user_id": user_id,
                                                             "idempotency_key": idempotency_key}), False
        if not created and withdrawal["amount_fen"] != amount_fen:
            raise Conflict("this Idempotency-Key was used for another amount",
                           {"Idempotency-Key": ["already used for a different request"]})
        return withdrawal, created

    def finish_withdrawal(self, withdrawal_id, paid, reason=None):
        """Record the payout's outcome once: paid → withdrawn; failed or rejected → back to withdrawable."""
        def txn(session):
            now = utcnow()
            withdrawal = self.withdrawals.find_one_and_update(
                {"_id": withdrawal_id, "status": "requested"},
                {"$set": {"status": "completed" if paid else "failed", "reason": reason, "finished_at": now}},
                return_document=ReturnDocument.AFTER, session=session)
            if withdrawal is None:
                return self.withdrawals.find_one({"_id": withdrawal_id}, session=session)
            self._post_withdrawal(session, withdrawal, "withdrawal_paid" if paid else "withdrawal_returned", now)
            return withdrawal
        return self.transaction(txn)

    def _post_withdrawal(self, session, withdrawal, kind, now):
        data = {"withdrawal_id": withdrawal["_id"], "user_id": withdrawal["user_id"],
                "amount_fen": withdrawal["amount_fen"], "reason": withdrawal.get("reason")}
        self._post(session, withdrawal["user_id"], domain.withdrawal_step(kind, withdrawal), now, data,
                   subject=withdrawal["_id"], withdrawal_id=withdrawal["_id"])

    def claim_unfinished_withdrawal(self, now, lease):
        """A request whose payout outcome was never recorded (the process died in between)."""
        return claims.next_due(self.withdrawals, {"status": "requested"}, now, lease,
                               sort=[(claims.FIELD, ASCENDING)])

    # -- reads -------------------------------------------------------------------------------------------
    def balance(self, user_id):
        return self.balances.find_one({"_id": user_id})

    def ledger_page(self, user_id, limit, cursor=None):
        """Newest first: [(entry, status of its commission or withdrawal)], next cursor."""
        entries, next_cursor = paging.find_page(self.ledger, {"beneficiary_id": user_id}, limit, cursor, "at")
        commission_ids = {f"{e['order_id']}:{e['level']}" for e in entries if e["order_id"]}
        withdrawal_ids = {e["withdrawal_id"] for e in entries if e["withdrawal_id"]}
        status = {c["_id"]: c["status"] for c in self.commissions.find({"_id": {"$in": list(commission_ids)}},
                                                                       {"status": 1})}
        status.update({w["_id"]: w["status"] for w in self.withdrawals.find({"_id": {"$in": list(withdrawal_ids)}},
                                                                            {"status": 1})})
        return [(e, status.get(e["withdrawal_id"] or f"{e['order_id']}:{e['level']}")) for e in entries], next_cursor

    def withdrawals_page(self, user_id, limit, cursor=None):
        return paging.find_page(self.withdrawals, {"user_id": user_id}, limit, cursor, "created_at")

    # -- reconciliation ----------------------------------------------------------------------------------
    def reconcile(self):
        """Recompute every balance and commission from the ledger, at one point in time (a snapshot read,
        so a transaction committing meanwhile cannot show up as a difference)."""
        with self.snapshot() as session:
            sums = []
            for side, sign in (("to", 1), ("from", -1)):
                for row in self.ledger.aggregate([{"$group": {
                        "_id": {"user": "$beneficiary_id", "bucket": f"${side}"},
                        "fen": {"$sum": "$amount_fen"}}}], session=session):
                    sums.append((row["_id"]["user"], row["_id"].get("bucket"), sign * row["fen"]))
            stored = {b["_id"]: b for b in self.balances.find({}, session=session)}
            per_commission = {}
            for row in self.ledger.aggregate([
                    {"$match": {"order_id": {"$ne": None}}},
                    {"$group": {"_id": {"order": "$order_id", "level": "$level", "kind": "$kind"},
                                "fen": {"$sum": "$amount_fen"}}}], session=session):
                key = f"{row['_id']['order']}:{row['_id']['level']}"
                per_commission.setdefault(key, {})[row["_id"]["kind"]] = row["fen"]
            commissions = list(self.commissions.find({}, {"accrued_fen": 1, "reversed_fen": 1, "status": 1},
                                                     session=session))
            entries = self.ledger.count_documents({}, session=session)
        differences = domain.balance_differences(domain.ledger_balances(sums), stored)
        commission_differences = domain.commission_differences(commissions, per_commission)
        RECONCILIATION_DIFFERENCE.set(domain.difference_fen(differences, commission_differences))
        return {"ok": not differences and not commission_differences, "ledger_entries": entries,
                "users_checked": len(set(stored) | {s[0] for s in sums}), "commissions_checked": len(commissions),
                "differences": differences[:100], "commission_differences": commission_differences[:100]}
