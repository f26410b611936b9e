"""The social feed's collections, indexes, queries and transactions.

profiles        _id = user id; nickname, avatar_url, inviter_id (first touch), friend_count (the 5,000 cap)
friend_requests one pending request per pair at most (partial unique index on `pair`): two users asking each
                other at the same moment collide there, and the loser's retry accepts the winner's request
friendships     two directed edges per friendship, _id "<owner>:<friend>"
moments         soft-deleted (`deleted`), so old timeline entries are filtered at read time
timelines       one entry per (owner, moment), _id "<owner>:<moment>": a repeated fan-out inserts nothing twice
likes           _id "<moment>:<user>": once per user, whatever the concurrency
comments, shares (_id = share code), share_clicks
"""
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kit import paging
from kit.errors import Conflict, NotFound, RuleRefused
from kit.mongo import BaseStore
from kit.validation import new_id
from social_feed import domain

FAN_OUT_BATCH = 1000  # timeline entries per insert_many: one durable write per batch, not per friend
PAGE_ROUNDS = 3  # a timeline page reads at most this many batches of entries, whatever the reader's friends
INTERACTIONS_SCANNED = 1000  # newest likes / comments a detail view looks at
TIMELINE_QUERY = "timeline_page"  # tags the queries of a timeline read (Mongo logs and profiler)
DUPLICATE_KEY = 11000


def new_profile(user_id, nickname, inviter_id=None, share_code=None, at=None):
    return {"_id": user_id, "nickname": nickname, "avatar_url": None, "inviter_id": inviter_id,
            "invited_via": share_code if inviter_id else None, "friend_count": 0, "created_at": at or domain.now()}


def friend_edges(a, b, since):
    """The two edge documents of a friendship between a and b."""
    return [{"_id": domain.edge_id(x, y), "owner": x, "friend": y, "since": since} for x, y in ((a, b), (b, a))]


def timeline_entry(owner_id, moment):
    return {"_id": f"{owner_id}:{moment['_id']}", "owner": owner_id, "moment_id": moment["_id"],
            "author_id": moment["author_id"], "at": moment["created_at"]}


class SocialFeedStore(BaseStore):
    INDEXES = {
        "friend_requests": [
            IndexModel([("pair", ASCENDING)], unique=True, partialFilterExpression={"status": "pending"},
                       name="one_pending_request_per_pair"),
            IndexModel([("to_id", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING),
                        ("_id", DESCENDING)]),
        ],
        "friendships": [IndexModel([("owner", ASCENDING), ("since", DESCENDING), ("friend", DESCENDING)])],
        "moments": [IndexModel([("author_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])],
        "timelines": [IndexModel([("owner", ASCENDING), ("at", DESCENDING), ("moment_id", DESCENDING)])],
        "likes": [IndexModel([("moment_id", ASCENDING), ("at", DESCENDING)])],
        "comments": [IndexModel([("moment_id", ASCENDING), ("created_at", DESCENDING)])],
        "share_clicks": [IndexModel([("share_code", ASCENDING), ("at", DESCENDING)])],
        "shares": [IndexModel([("product_id", ASCENDING), ("sharer_id", ASCENDING)])],
        "purchases": [IndexModel([("product_id", ASCENDING), ("buyer_id", ASCENDING)]),
                      IndexModel([("buyer_id", ASCENDING)])],
        "reports": [IndexModel([("status", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
                    IndexModel([("target_id", ASCENDING)])],
    }
    INDEXES["moments"].append(IndexModel([("product_id", ASCENDING)], sparse=True))
    INDEXES["timelines"].append(IndexModel([("moment_id", ASCENDING)]))
    INDEXES["likes"].append(IndexModel([("user_id", ASCENDING)]))
    INDEXES["comments"].append(IndexModel([("user_id", ASCENDING)]))
    INDEXES["share_clicks"].append(IndexModel([("viewer_id", ASCENDING)]))
    INDEXES["friend_requests"].append(IndexModel([("from_id", ASCENDING)]))

    COLLECTIONS = ("profiles", "friend_requests", "friendships", "moments", "timelines", "likes", "comments",
                   "shares", "share_clicks", "purchases", "reports")
    PERSONAL_DATA = {"profiles": ("_id",), "friend_requests": ("from_id", "to_id"), "friendships": ("owner",),
                     "moments": ("author_id",), "likes": ("user_id",), "comments": ("user_id",),
                     "shares": ("sharer_id",), "share_clicks": ("viewer_id", "sharer_id"),
                     "purchases": ("buyer_id",), "reports": ("reporter_id",)}

    # -- profiles -----------------------------------------------------------------------------------------
    def profile(self, user_id, session=None):
        profile = self.profiles.find_one({"_id": user_id}, session=session)
        if profile is None:
            raise NotFound("user not found")
        return profile

    def profiles_by_id(self, user_ids, comment=None):
        return {p["_id"]: p for p in self.profiles.find({"_id": {"$in": list(set(user_ids))}},
                                                         {"nickname": 1, "avatar_url": 1}, comment=comment)}

    def create_profile(self, user_id, nickname, share_code):
        """The profile of a new user, once (a repeated call returns the first one): (profile, created).
        A valid share code makes its sharer the inviter; an unknown one, or one the inviter rules refuse, is
        ignored: signing up never fails because of a link."""
        def txn(session):
            existing = self.profiles.find_one({"_id": user_id}, session=session)
            if existing is not None:
                return existing, False
            share = self.shares.find_one({"_id": share_code}, session=session) if share_code else None
            inviter_id = None
            if share is not None:
                try:
                    domain.check_inviter(user_id, share["sharer_id"], self._inviter_chain(share["sharer_id"], session))
                    inviter_id = share["sharer_id"]
                except RuleRefused:
                    pass
            profile = new_profile(user_id, nickname, inviter_id, share_code)
            self.profiles.insert_one(profile, session=session)
            self.emit(session, "user.joined", {"user_id": user_id, "inviter_id": inviter_id,
                                               "share_code": profile["invited_via"],
                                               "joined_at": profile["created_at"].isoformat()}, subject=user_id)
            return profile, True
        try:
            return self.transaction(txn)
        except DuplicateKeyError:  # the same registration twice at once: the other call created it
            return self.profile(user_id), False

    def update_profile(self, user_id, changes):
        profile = self.profiles.find_one_and_update({"_id": user_id}, {"$set": changes},
                                                    return_document=ReturnDocument.AFTER)
        if profile is None:
            raise NotFound("user not found")
        return profile

    def bind_inviter(self, user_id, share_code):
        """Record the inviter of a user who registered without one: once (first touch), never a cycle."""
        def txn(session):
            profile = self.profile(user_id, session)
            if profile.get("inviter_id"):
                raise Conflict("your inviter is already set, for good", {"share_code": ["inviter already set"]})
            share = self.shares.find_one({"_id": share_code}, session=session)
            if share is None:
                raise NotFound("share link not found")
            chain = self._inviter_chain(share["sharer_id"], session, touch=True)
            domain.check_inviter(user_id, share["sharer_id"], chain)
            now = domain.now()
            self.profiles.update_one({"_id": user_id, "inviter_id": None}, {"$set": {
                "inviter_id": share["sharer_id"], "invited_via": share_code}}, session=session)
            self.emit(session, "inviter.bound", {"user_id": user_id, "inviter_id": share["sharer_id"],
                                                 "share_code": share_code, "bound_at": now.isoformat()},
                      subject=user_id)
            return {**profile, "inviter_id": share["sharer_id"]}
        return self.transaction(txn)

    def _inviter_chain(self, inviter_id, session, touch=False):
        """The inviters above `inviter_id`, nearest first. With touch, every profile on the way (the inviter
        included) is written too: two bindings that could close a cycle together then write a common profile,
        so MongoDB aborts one of them and its retry sees the other's edge (no write skew)."""
        chain, node = [], inviter_id
        while node is not None and len(chain) < domain.MAX_INVITER_CHAIN:
            if touch:
                doc = self.profiles.find_one_and_update({"_id": node}, {"$inc": {"chain_guard": 1}},
                                                        projection={"inviter_id": 1}, session=session)
            else:
                doc = self.profiles.find_one({"_id": node}, {"inviter_id": 1}, session=session)
            node = doc.get("inviter_id") if doc else None
            if node is not None:
                chain.append(node)
        return chain

    # -- friends ------------------------------------------------------------------------------------------
    def request_friend(self, from_id, to_id):
        """A pending request, or, when the other had already asked, the friendship itself."""
        domain.check_befriend(from_id, to_id)
        pair = domain.pair_key(from_id, to_id)

        def txn(session):
            me = self.profile(from_id, session)
            self.profile(to_id, session)
            if self.friendships.find_one({"_id": domain.edge_id(from_id, to_id)}, {"_id": 1}, session=session):
                raise Conflict("you are already friends")
            pending = self.friend_requests.find_one({"pair": pair, "status": "pending"}, session=session)
            if pending is not None:
                if pending["from_id"] == from_id:
                    raise Conflict("you already asked; waiting for an answer")
                return self._accept(pending, session)  # they asked first: asking back is accepting
            domain.check_capacity(me.get("friend_count", 0))
            request = {"_id": new_id("frq"), "pair": pair, "from_id": from_id, "to_id": to_id,
                       "status": "pending", "created_at": domain.now()}
            self.friend_requests.insert_one(request, session=session)
            return request
        return self._transaction_retrying_duplicates(txn)

    def decide_request(self, actor_id, request_id, action):
        def txn(session):
            request = self.friend_requests.find_one({"_id": request_id}, session=session)
            status = domain.request_decision(request, actor_id, action)
            if status == "accepted":
                return self._accept(request, session)
            self.friend_requests.update_one({"_id": request_id, "status": "pending"},
                                            {"$set": {"status": status, "decided_at": domain.now()}},
                                            session=session)
            return {**request, "status": status}
        return self.transaction(txn)

    def _accept(self, request, session):
        now = domain.now()
        self.friend_requests.update_one({"_id": request["_id"], "status": "pending"},
                                        {"$set": {"status": "accepted", "decided_at": now}}, session=session)
        a, b = request["from_id"], request["to_id"]
        for user_id, who in ((b, "you"), (a, "they")):
            counted = self.profiles.update_one({"_id": user_id, "friend_count": {"$lt": domain.MAX_FRIENDS}},
                                               {"$inc": {"friend_count": 1}}, session=session)
            if counted.matched_count == 0:
                domain.check_capacity(domain.MAX_FRIENDS, who)
        self.friendships.insert_many(friend_edges(a, b, now), session=session)
        self.emit(session, "friendship.created", {"user_ids": sorted((a, b)), "at": now.isoformat()},
                  subject=request["pair"])
        return {**request, "status": "accepted"}

    def _transaction_retrying_duplicates(self, txn, attempts=3):
        """A unique index hit by a concurrent transaction that committed first is not a transient error for
        MongoDB; running the whole transaction again sees that commit and takes the other branch."""
        for attempt in range(attempts):
            try:
                return self.transaction(txn)
            except DuplicateKeyError:
                if attempt == attempts - 1:
                    raise

    def remove_friend(self, user_id, friend_id):
        def txn(session):
            removed = self.friendships.delete_many(
                {"_id": {"$in": [domain.edge_id(user_id, friend_id), domain.edge_id(friend_id, user_id)]}},
                session=session)
            if removed.deleted_count == 0:
                raise NotFound("not your friend")
            self.profiles.update_many({"_id": {"$in": [user_id, friend_id]}}, {"$inc": {"friend_count": -1}},
                                      session=session)
            self.emit(session, "friendship.removed", {"user_ids": sorted((user_id, friend_id)),
                                                      "at": domain.now().isoformat()},
                      subject=domain.pair_key(user_id, friend_id))
        self.transaction(txn)

    def friends_among(self, viewer_id, user_ids, comment=None):
        """Which of `user_ids` are the viewer's friends now: one _id lookup each, never a scan of all friends."""
        others = {u for u in user_ids if u != viewer_id}
        if not others:
            return set()
        edges = self.friendships.find({"_id": {"$in": [domain.edge_id(viewer_id, u) for u in others]}},
                                      {"friend": 1}, comment=comment)
        return {e["friend"] for e in edges}

    def is_friend(self, viewer_id, user_id):
        return bool(viewer_id) and user_id in self.friends_among(viewer_id, [user_id])

    def friends_page(self, user_id, limit, cursor):
        return paging.find_page(self.friendships, {"owner": user_id}, limit, cursor, "since", id_field="friend")

    def incoming_requests(self, user_id, limit, cursor):
        return paging.find_page(self.friend_requests, {"to_id": user_id, "status": "pending"}, limit, cursor,
                                "created_at")

    # -- moments ------------------------------------------------------------------------------------------
    def post_moment(self, moment, share=None):
        """The moment, the author's own timeline entry, the share made for its product card (if any) and
        their events, in one transaction. Friends' timelines are filled by the moment.posted consumer."""
        def txn(session):
            if share is not None:
                self._insert_share(share, session)
            self.moments.insert_one(moment, session=session)
            self.timelines.insert_one(timeline_entry(moment["author_id"], moment), session=session)
            self.emit(session, "moment.posted", {
                "moment_id": moment["_id"], "author_id": moment["author_id"], "visibility": moment["visibility"],
                "product_id": moment["product_id"], "share_code": moment["share_code"],
                "posted_at": moment["created_at"].isoformat()}, subject=moment["_id"])
        self.transaction(txn)

    def moment(self, moment_id):
        return self.moments.find_one({"_id": moment_id})

    def delete_moment(self, author_id, moment_id):
        """Soft delete: every timeline entry of it is skipped at read time from now on."""
        deleted = self.moments.update_one({"_id": moment_id, "author_id": author_id, "deleted": False},
                                          {"$set": {"deleted": True, "deleted_at": domain.now()}})
        if deleted.matched_count == 0:
            raise NotFound("moment not found")

    def fan_out(self, moment_id):
        """Put a moment into each friend's timeline, in batches. Entries have fixed ids, so running this again
        (a retried or redelivered event) only adds what is missing. Returns the number of friends."""
        moment = self.moments.find_one({"_id": moment_id})
        if moment is None or moment.get("deleted") or not domain.fans_out(moment):
            return 0
        friend_ids = [e["friend"] for e in self.friendships.find({"owner": moment["author_id"]},
                                                                {"friend": 1, "_id": 0})]
        for start in range(0, len(friend_ids), FAN_OUT_BATCH):
            self._insert_entries([timeline_entry(f, moment) for f in friend_ids[start:start + FAN_OUT_BATCH]])
        return len(friend_ids)

    def backfill(self, user_ids):
        """New (or renewed) friends: each one's latest non-private moments into the other's timeline."""
        a, b = user_ids
        for owner, author in ((a, b), (b, a)):
            recent = self.moments.find({"author_id": author, "deleted": False, "visibility": {"$ne": "private"}},
                                       {"author_id": 1, "created_at": 1}) \
                .sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(domain.BACKFILL_MOMENTS)
            self._insert_entries([timeline_entry(owner, m) for m in recent])

    def _insert_entries(self, entries):
        if not entries:
            return
        try:
            self.timelines.insert_many(entries, ordered=False)
        except BulkWriteError as err:
            if err.details.get("writeConcernErrors") or any(
                    e["code"] != DUPLICATE_KEY for e in err.details.get("writeErrors", [])):
                raise  # only "already there" is fine

    def timeline_page(self, viewer_id, limit, cursor):
        """Newest first: the viewer's timeline entries read by index, each checked against the moment (deleted,
        visibility) and the friendship now. A page costs at most PAGE_ROUNDS x 3 indexed queries of at most
        2 x limit documents, whatever the number of friends. Returns (moments, next cursor)."""
        items, batch, more, position = [], 2 * limit, False, paging.decode(cursor)
        for _ in range(PAGE_ROUNDS):
            query = {"owner": viewer_id, **paging.after(position, "at", "moment_id")}
            entries = list(self.timelines.find(query, {"moment_id": 1, "author_id": 1, "at": 1},
                                               comment=TIMELINE_QUERY)
                           .sort(paging.NEWEST_FIRST("at", "moment_id")).limit(batch))
            if not entries:
                more = False
                break
            moments = {m["_id"]: m for m in self.moments.find({"_id": {"$in": [e["moment_id"] for e in entries]}},
                                                               comment=TIMELINE_QUERY)}
            friends = self.friends_among(viewer_id, {e["author_id"] for e in entries}, comment=TIMELINE_QUERY)
            for index, entry in enumerate(entries):
                position = (entry["at"], entry["moment_id"])
                moment = moments.get(entry["moment_id"])
                if domain.in_timeline(viewer_id, moment, moment is not None and moment["author_id"] in friends):
                    items.append(moment)
                    if len(items) == limit:
                        break
            more = len(entries) == batch or index < len(entries) - 1
            if len(items) == limit or not more:
                break
        return items, (paging.encode(*position) if more else None)

    def album_page(self, author_id, visibilities, limit, cursor):
        return paging.find_page(self.moments, {"author_id": author_id, "deleted": False,
                                               "visibility": {"$in": visibilities}}, limit, cursor, "created_at")

    # -- likes and comments -------------------------------------------------------------------------------
    def like(self, user_id, moment_id):
        try:
            self.likes.insert_one({"_id": f"{moment_id}:{user_id}", "moment_id": moment_id, "user_id": user_id,
                                   "at": domain.now()})
        except DuplicateKeyError:
            pass  # liked before: once per user

    def unlike(self, user_id, moment_id):
        self.likes.delete_one({"_id": f"{moment_id}:{user_id}"})

    def liked_by(self, user_id, moment_ids, comment=None):
        ids = [f"{m}:{user_id}" for m in moment_ids]
        return {like["moment_id"] for like in self.likes.find({"_id": {"$in": ids}}, {"moment_id": 1},
                                                              comment=comment)}

    def add_comment(self, user_id, moment_id, text):
        comment = {"_id": new_id("cmt"), "moment_id": moment_id, "user_id": user_id, "text": text,
                   "created_at": domain.now()}
        self.comments.insert_one(comment)
        return comment

    def interactions(self, moment_id):
        """The newest likes and comments of a moment (comments returned oldest first, as they read)."""
        likes = list(self.likes.find({"moment_id": moment_id}).sort("at", DESCENDING).limit(INTERACTIONS_SCANNED))
        comments = list(self.comments.find({"moment_id": moment_id, "taken_down": None}).sort("created_at", DESCENDING)
                        .limit(INTERACTIONS_SCANNED))
        return likes, comments[::-1]

    # -- shares -------------------------------------------------------------------------------------------
    def new_share(self, sharer_id, product_id, channel):
        return {"_id": domain.new_share_code(), "sharer_id": sharer_id, "product_id": product_id,
                "channel": channel, "created_at": domain.now()}

    def create_share(self, share):
        def txn(session):
            self._insert_share(share, session)
            return share
        for _ in range(3):
            try:
                return self.transaction(txn)
            except DuplicateKeyError:  # a code taken already (odds ~1e-18): draw another
                share["_id"] = domain.new_share_code()
        raise Conflict("could not allocate a share code; try again")

    def _insert_share(self, share, session):
        self.shares.insert_one(share, session=session)
        self.emit(session, "share.created", {
            "share_code": share["_id"], "sharer_id": share["sharer_id"], "product_id": share["product_id"],
            "channel": share["channel"], "created_at": share["created_at"].isoformat()}, subject=share["_id"])

    def share(self, share_code):
        return self.shares.find_one({"_id": share_code})

    def record_click(self, share_code, viewer_id):
        """Keep a click (anonymous ones too: viewer_id None) and tell others (commission binds the viewer).
        Insert-only: a viral link's clicks never contend on one counter document; counts come from
        share_clicks by its (share_code, at) index."""
        def txn(session):
            share = self.shares.find_one({"_id": share_code}, session=session)
            if share is None:
                raise NotFound("share link not found")
            if share.get("product_hidden"):  # taken down or its shop suspended: no click, no binding to the sharer
                raise NotFound("this product is no longer on sale")
            now = domain.now()
            self.share_clicks.insert_one({"_id": new_id("clk"), "share_code": share_code,
                                          "sharer_id": share["sharer_id"], "product_id": share["product_id"],
                                          "viewer_id": viewer_id, "at": now}, session=session)
            self.emit(session, "share.clicked", {
                "share_code": share_code, "sharer_id": share["sharer_id"], "product_id": share["product_id"],
                "viewer_id": viewer_id, "clicked_at": now.isoformat()}, subject=share_code)
            return share
        return self.transaction(txn)

    # -- social proof (who among my friends bought or shared this) --------------------------------------
    def record_purchase(self, buyer_id, product_ids, at, session, order_id=None):
        """From order.paid: a read model of who bought what (one entry per buyer and product, with the orders
        that count for it). An order already known refunded (its event overtook this one) does not count."""
        self._purchases(buyer_id, product_ids, at, session, add=order_id)

    def forget_purchase(self, buyer_id, product_ids, at, session, order_id):
        """From a whole order.refunded: that order stops counting; a buyer with no other paid order of the
        product leaves "friends bought" (`gone`)."""
        self._purchases(buyer_id, product_ids, at, session, drop=order_id)

    def _purchases(self, buyer_id, product_ids, at, session, add=None, drop=None):
        # one atomic update per product, computed by MongoDB from the entry as it is (no read first): two events
        # of one buyer and product still apply one after the other, and an order already refunded never counts
        orders, refunded = {"$ifNull": ["$orders", []]}, {"$ifNull": ["$refunded", []]}
        if drop is not None:
            orders = {"$setDifference": [orders, [{"$literal": drop}]]}
            refunded = {"$setUnion": [refunded, [{"$literal": drop}]]}
        elif add is not None:
            orders = {"$cond": [{"$in": [{"$literal": add}, refunded]}, orders,
                                {"$setUnion": [orders, [{"$literal": add}]]}]}
        # (sent with the batch's other writes: kit's write_later; nothing in an event's transaction reads them)
        for product_id in set(product_ids):
            self.write_later(session, self.purchases, UpdateOne({"_id": f"{buyer_id}:{product_id}"}, [
                {"$set": {"orders": {"$sortArray": {"input": orders, "sortBy": 1}},
                          "refunded": {"$sortArray": {"input": refunded, "sortBy": 1}},
                          "buyer_id": {"$literal": buyer_id}, "product_id": {"$literal": product_id},
                          "at": {"$ifNull": ["$at", {"$literal": at}]}}},
                {"$set": {"gone": {"$and": [{"$gt": [{"$size": "$refunded"}, 0]},
                                            {"$eq": [{"$size": "$orders"}, 0]}]}}},
            ], upsert=True))

    def social_proof(self, viewer_id, product_id, shown=10):
        """Friends of the viewer who bought / shared the product: ({ids shown}, count) each. Costs one covered
        read of the viewer's friend ids (at most the 5,000 cap) and two indexed lookups."""
        friend_ids = [e["friend"] for e in self.friendships.find({"owner": viewer_id}, {"friend": 1, "_id": 0})]
        if not friend_ids:
            return {"bought": ([], 0), "shared": ([], 0)}
        bought = self.purchases.distinct("buyer_id", {"product_id": product_id, "buyer_id": {"$in": friend_ids},
                                                      "gone": {"$ne": True}})
        if bought:  # separate consent (PIPL): only friends who turned show_purchases_to_friends on, read now
            bought = self.profiles.distinct("_id", {"_id": {"$in": bought}, "show_purchases_to_friends": True})
        shared = self.shares.distinct("sharer_id", {"product_id": product_id, "sharer_id": {"$in": friend_ids}})
        return {"bought": (sorted(bought)[:shown], len(bought)), "shared": (sorted(shared)[:shown], len(shared))}

    # -- privacy --------------------------------------------------------------------------------------------
    def set_privacy(self, user_id, show_purchases):
        profile = self.profiles.find_one_and_update({"_id": user_id},
                                                    {"$set": {"show_purchases_to_friends": show_purchases}},
                                                    return_document=ReturnDocument.AFTER)
        if profile is None:
            raise NotFound("user not found")
        return profile

    def erase_user(self, user_id):
        """Erasure (PIPL, DELETE /me): the profile, friendships (friends' counts follow), requests, moments and
        every timeline entry of them or of the user, likes, comments, shares, clicks, purchases and reports,
        gone in one transaction with `user.deleted` (other services de-identify on it). Idempotent: erasing
        again deletes nothing more and emits nothing."""
        def txn(session):
            profile = self.profiles.find_one({"_id": user_id}, session=session)
            if profile is None:
                return False
            friends = [e["friend"] for e in self.friendships.find({"owner": user_id}, {"friend": 1}, session=session)]
            self.profiles.update_many({"_id": {"$in": friends}}, {"$inc": {"friend_count": -1}}, session=session)
            self.friendships.delete_many({"$or": [{"owner": user_id}, {"friend": user_id}]}, session=session)
            self.friend_requests.delete_many({"$or": [{"from_id": user_id}, {"to_id": user_id}]}, session=session)
            moment_ids = self.moments.distinct("_id", {"author_id": user_id}, session=session)
            self.timelines.delete_many({"$or": [{"owner": user_id}, {"author_id": user_id}]}, session=session)
            for collection in (self.likes, self.comments):
                collection.delete_many({"$or": [{"user_id": user_id}, {"moment_id": {"$in": moment_ids}}]},
                                       session=session)
            self.moments.delete_many({"author_id": user_id}, session=session)
            self.shares.delete_many({"sharer_id": user_id}, session=session)
            self.share_clicks.delete_many({"$or": [{"viewer_id": user_id}, {"sharer_id": user_id}]}, session=session)
            self.purchases.delete_many({"buyer_id": user_id}, session=session)
            self.reports.delete_many({"$or": [{"reporter_id": user_id}, {"target_id": {"$in": moment_ids}}]},
                                     session=session)
            self.profiles.update_many({"inviter_id": user_id}, {"$set": {"inviter_id": None, "invited_via": None}},
                                      session=session)
            self.profiles.delete_one({"_id": user_id}, session=session)
            self.emit(session, "user.deleted", {"user_id": user_id, "deleted_at": domain.now().isoformat()},
                      subject=user_id)
            return True
        return self.transaction(txn)

    # -- moderation -----------------------------------------------------------------------------------------
    def comment(self, comment_id):
        return self.comments.find_one({"_id": comment_id})

    def report(self, report):
        """One open report per (reporter, target): reporting again updates the reason, never piles up."""
        fresh = {"reason": report["reason"], "status": "open", "resolved_at": None, "resolution_reason": None}
        return self.reports.find_one_and_update(
            {"_id": report["_id"]},
            {"$set": fresh, "$setOnInsert": {k: v for k, v in report.items() if k not in fresh and k != "_id"}},
            upsert=True, return_document=ReturnDocument.AFTER)

    def reports_page(self, status, limit, cursor):
        return paging.find_page(self.reports, {"status": status}, limit, cursor, "created_at")

    def report_targets(self, reports):
        """The moments and comments a page of reports names, by id (one query per kind)."""
        ids = {kind: [r["target_id"] for r in reports if r["target_type"] == kind] for kind in domain.REPORT_TARGETS}
        found = {}
        for kind, collection in (("moment", self.moments), ("comment", self.comments)):
            if ids[kind]:
                found.update({d["_id"]: d for d in collection.find({"_id": {"$in": ids[kind]}})})
        return found

    def take_down(self, target_type, target_id, reason):
        """An admin removes a moment (from every timeline, its page: 404 for everyone) or a comment; its open
        reports are resolved. Taking down twice is a 404 (there is nothing left to take down)."""
        now = domain.now()
        collection = self.moments if target_type == "moment" else self.comments
        result = collection.update_one({"_id": target_id, "taken_down": None, "deleted": {"$ne": True}},
                                       {"$set": {"taken_down": {"reason": reason, "at": now},
                                                 **({"deleted": True, "deleted_at": now}
                                                    if target_type == "moment" else {})}})
        if result.matched_count == 0:
            raise NotFound(f"{target_type} not found")
        self.reports.update_many({"target_id": target_id, "status": "open"},
                                 {"$set": {"status": "actioned", "resolved_at": now}})
        return {"target_type": target_type, "target_id": target_id, "taken_down": True, "reason": reason}

    def dismiss_reports(self, target_type, target_id, reason):
        """An admin looked and keeps the content up: its open reports close as dismissed, with the reason (a
        later report opens it again). Nothing open on it is a 404."""
        result = self.reports.update_many(
            {"target_type": target_type, "target_id": target_id, "status": "open"},
            {"$set": {"status": "dismissed", "resolved_at": domain.now(), "resolution_reason": reason}})
        if result.modified_count == 0:
            raise NotFound(f"no open report on this {target_type}")
        return {"target_type": target_type, "target_id": target_id, "dismissed": result.modified_count,
                "reason": reason}

    # -- product cards follow the product's visibility (catalog events) ---------------------------------------
    def set_product_card_hidden(self, product_id, hidden, session):
        """Moments' product cards and share links follow the product's visibility (catalog events)."""
        self.moments.update_many({"product_id": product_id}, {"$set": {"product_hidden": hidden}}, session=session)
        self.shares.update_many({"product_id": product_id}, {"$set": {"product_hidden": hidden}}, session=session)
