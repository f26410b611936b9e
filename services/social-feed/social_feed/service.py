"""Social-feed entrypoints: validate, check who may see or act, delegate to the store.

The acting user's id comes from the gateway (from the bearer token); everything else a caller sends goes
through a schema. Another user's hidden moment is NotFound, never Forbidden (do not reveal it exists)."""
import time

from prometheus_client import Counter, Histogram

from contracts.api import social_feed as api
from kit.amqp import RpcProxy, rpc
from kit.errors import Conflict, NotFound
from kit.events import on_event
from kit.metrics import LATENCY_BUCKETS
from kit.mongo import MongoStore
from kit.rpc import call
from kit.service import ServiceBase
from kit.validation import ID_PATTERN, load
from social_feed import domain, schemas
from social_feed.store import TIMELINE_QUERY, SocialFeedStore
from social_feed.wordlist import BlockedWords

FAN_OUT_SECONDS = Histogram("quanzi_social_fan_out_seconds", "Time to write one moment into its friends' timelines",
                            buckets=LATENCY_BUCKETS)
FAN_OUT_ENTRIES = Counter("quanzi_social_fan_out_entries_total", "Timeline entries written by fan-out")
SHARE_CLICKS = Counter("quanzi_share_clicks_total", "Share link opens", ["viewer"])
CATALOG_TIMEOUT = 10  # the gateway's own budget: by then its caller has had a 503, so stop waiting too


def checked_id(value, what="not found"):
    """A path id that cannot name anything is simply not found (and never reaches a query)."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise NotFound(what)
    return value


class SocialFeedService(ServiceBase):
    name = "social_feed"
    store = MongoStore(SocialFeedStore)
    catalog = RpcProxy("catalog")
    blocked_words = BlockedWords()

    # -- profiles -----------------------------------------------------------------------------------------
    @rpc
    def create_profile(self, user_id, nickname, share_code=None, deadline=None):
        """Called by the gateway while it registers a user; idempotent by user_id. `deadline` (epoch seconds)
        is when the gateway stops waiting and undoes the credentials: a call that sat in the queue past it
        (this service was down) writes nothing, so no profile outlives its refused registration."""
        data = load(schemas.NewProfile, {"user_id": user_id, "nickname": nickname, "share_code": share_code,
                                         "deadline": deadline})
        if data["deadline"] is not None and time.time() > data["deadline"]:
            raise Conflict("registration request expired before it was handled")
        profile, _ = self.store.create_profile(data["user_id"], data["nickname"], data["share_code"])
        return domain.profile_view(profile, own=True)

    @rpc
    def get_profile(self, user_id, viewer_id=None):
        profile = self.store.profile(checked_id(user_id, "user not found"))
        return domain.profile_view(profile, own=viewer_id == profile["_id"])

    @rpc
    def update_profile(self, user_id, payload):
        changes = load(api.ProfileUpdate, payload)
        return domain.profile_view(self.store.update_profile(user_id, changes), own=True)

    @rpc
    def bind_inviter(self, user_id, payload):
        data = load(api.InviterBinding, payload)
        return domain.profile_view(self.store.bind_inviter(user_id, data["share_code"]), own=True)

    # -- friends ------------------------------------------------------------------------------------------
    @rpc
    def request_friend(self, user_id, payload):
        data = load(api.FriendRequestInput, payload)
        return domain.request_view(self.store.request_friend(user_id, data["user_id"]))

    @rpc
    def friend_requests(self, user_id, params=None):
        """Requests waiting for this user's answer, newest first."""
        page = load(api.Page, params or {})
        found, cursor = self.store.incoming_requests(user_id, page["limit"], page["cursor"])
        return {"items": [domain.request_view(r) for r in found], "next_cursor": cursor}

    @rpc
    def accept_friend_request(self, user_id, request_id):
        return domain.request_view(self.store.decide_request(user_id, checked_id(request_id), "accept"))

    @rpc
    def decline_friend_request(self, user_id, request_id):
        return domain.request_view(self.store.decide_request(user_id, checked_id(request_id), "decline"))

    @rpc
    def friends(self, user_id, params=None):
        page = load(api.Page, params or {})
        edges, cursor = self.store.friends_page(user_id, page["limit"], page["cursor"])
        profiles = self.store.profiles_by_id([e["friend"] for e in edges])
        return {"items": [{**domain.author_view(e["friend"], profiles.get(e["friend"])),
                           "since": domain.iso(e["since"])} for e in edges],
                "next_cursor": cursor}

    @rpc
    def remove_friend(self, user_id, friend_id):
        self.store.remove_friend(user_id, checked_id(friend_id, "not your friend"))
        return {"removed": friend_id}

    # -- moments ------------------------------------------------------------------------------------------
    @rpc
    def post_moment(self, user_id, payload):
        data = load(api.MomentInput, payload)
        domain.check_blocked_words("text", data["text"], self.blocked_words)
        product_id, share_code, share = data["product_id"], data["share_code"], None
        if share_code:
            existing = self.store.share(share_code)
            domain.check_product_card(user_id, existing, product_id)
            product_id = existing["product_id"]
        elif product_id:
            self._require_published(product_id)
            share = self.store.new_share(user_id, product_id, "moments")
            share_code = share["_id"]
        moment = domain.new_moment(user_id, data, product_id, share_code)
        self.store.post_moment(moment, share)
        return {"moment_id": moment["_id"], "share_code": share_code}

    @rpc
    def get_moment(self, viewer_id, moment_id):
        """The moment with the likes and comments this viewer may see (the mutual-friends rule)."""
        moment = self._openable(viewer_id, moment_id)
        likes, comments = self.store.interactions(moment["_id"])
        friends = self.store.friends_among(viewer_id, {i["user_id"] for i in likes + comments})
        likes, comments = domain.shown_to(viewer_id, likes, friends), domain.shown_to(viewer_id, comments, friends)
        profiles = self.store.profiles_by_id([moment["author_id"], *(i["user_id"] for i in likes + comments)])
        view = domain.moment_view(moment, profiles.get(moment["author_id"]))
        view["liked_by_me"] = any(like["user_id"] == viewer_id for like in likes)
        view["likes"] = [{**domain.author_view(like["user_id"], profiles.get(like["user_id"])),
                          "liked_at": domain.iso(like["at"])} for like in likes]
        view["comments"] = [{"comment_id": c["_id"], "author": domain.author_view(c["user_id"],
                                                                                  profiles.get(c["user_id"])),
                             "text": c["text"], "created_at": domain.iso(c["created_at"])} for c in comments]
        return view

    @rpc
    def delete_moment(self, user_id, moment_id):
        self.store.delete_moment(user_id, checked_id(moment_id, "moment not found"))
        return {"deleted": moment_id}

    @rpc
    def like(self, user_id, moment_id):
        moment = self._openable(user_id, moment_id)
        self.store.like(user_id, moment["_id"])
        return {"moment_id": moment["_id"], "liked": True}

    @rpc
    def unlike(self, user_id, moment_id):
        self.store.unlike(user_id, checked_id(moment_id, "moment not found"))
        return {"moment_id": moment_id, "liked": False}

    @rpc
    def comment(self, user_id, moment_id, payload):
        data = load(api.CommentInput, payload)
        domain.check_blocked_words("text", data["text"], self.blocked_words)
        moment = self._openable(user_id, moment_id)
        comment = self.store.add_comment(user_id, moment["_id"], data["text"])
        author = domain.author_view(user_id, self.store.profiles_by_id([user_id]).get(user_id))
        return {"comment_id": comment["_id"], "author": author,
                "text": comment["text"], "created_at": domain.iso(comment["created_at"])}

    @rpc
    def timeline(self, user_id, params=None):
        """Own and friends' moments, newest first; a page costs the same at 10 or 5,000 friends."""
        page = load(api.Page, params or {})
        moments, cursor = self.store.timeline_page(user_id, page["limit"], page["cursor"])
        return {"items": self._feed_items(user_id, moments, comment=TIMELINE_QUERY), "next_cursor": cursor}

    @rpc
    def user_moments(self, viewer_id, author_id, params=None):
        """An author's album: what this viewer may see of it (older moments too, for friends)."""
        page = load(api.Page, params or {})
        author = self.store.profile(checked_id(author_id, "user not found"))
        visibilities = domain.album_visibilities(viewer_id, author["_id"],
                                                 self.store.is_friend(viewer_id, author["_id"]))
        moments, cursor = self.store.album_page(author["_id"], visibilities, page["limit"], page["cursor"])
        return {"items": self._feed_items(viewer_id, moments), "next_cursor": cursor}

    def _feed_items(self, viewer_id, moments, comment=None):
        profiles = self.store.profiles_by_id([m["author_id"] for m in moments], comment=comment)
        liked = self.store.liked_by(viewer_id, [m["_id"] for m in moments], comment=comment)
        return [{**domain.moment_view(m, profiles.get(m["author_id"])), "liked_by_me": m["_id"] in liked}
                for m in moments]

    def _openable(self, viewer_id, moment_id):
        moment = self.store.moment(checked_id(moment_id, "moment not found"))
        is_friend = moment is not None and self.store.is_friend(viewer_id, moment["author_id"])
        if not domain.can_open(viewer_id, moment, is_friend):
            raise NotFound("moment not found")
        return moment

    # -- shares -------------------------------------------------------------------------------------------
    @rpc
    def create_share(self, user_id, payload):
        data = load(api.ShareInput, payload)
        self._require_published(data["product_id"])  # any published product may be shared
        share = self.store.create_share(self.store.new_share(user_id, data["product_id"], data["channel"]))
        return domain.share_view(share)

    @rpc
    def click_share(self, share_code, viewer_id=None):
        """Someone opened a share link: counted, recorded, and `share.clicked` tells commission to bind a
        signed-in viewer to the sharer."""
        if not domain.is_share_code(share_code):
            raise NotFound("share link not found")
        share = self.store.record_click(share_code, viewer_id)
        SHARE_CLICKS.labels("signed_in" if viewer_id else "anonymous").inc()
        return domain.share_view(share)

    def _require_published(self, product_id):
        """NotFound unless the catalog shows the product. Time-bounded: a catalog outage fails these calls
        instead of pinning this service's workers until it returns."""
        call(self.catalog.get_product, product_id, timeout=CATALOG_TIMEOUT)

    # -- social proof for product pages -------------------------------------------------------------------
    @rpc
    def social_proof(self, viewer_id, product_id):
        """{friends_bought, friends_shared: [{user_id, nickname}] (10 at most), *_count}: the viewer's friends
        who bought (paid orders, learnt from order.paid) or shared the product."""
        proof = self.store.social_proof(checked_id(viewer_id), checked_id(product_id))
        names = self.store.profiles_by_id(proof["bought"][0] + proof["shared"][0])

        def people(ids):
            return [{"user_id": i, "nickname": names.get(i, {}).get("nickname")} for i in ids]
        return {"friends_bought": people(proof["bought"][0]), "friends_bought_count": proof["bought"][1],
                "friends_shared": people(proof["shared"][0]), "friends_shared_count": proof["shared"][1]}

    @on_event("orders", "order.paid", together=True)
    def remember_purchase(self, event, session):
        data = event["data"]
        self.store.record_purchase(data["buyer_id"], [line["product_id"] for line in data["lines"]],
                                   domain.now(), session, order_id=data["order_id"])

    @on_event("orders", "order.refunded")
    def forget_refunded_purchase(self, event, session):
        """A purchase refunded whole (after-sales, a failed group, a dispute) no longer shows its buyer in
        "friends bought"; a partial refund keeps them (they kept goods)."""
        data = event["data"]
        if data["full"]:
            self.store.forget_purchase(data["buyer_id"], [line["product_id"] for line in data["lines"]],
                                       domain.now(), session, order_id=data["order_id"])

    # -- privacy (PIPL: separate consent; erasure) ----------------------------------------------------------
    @rpc
    def get_privacy(self, user_id):
        return domain.privacy_view(self.store.profile(user_id))

    @rpc
    def set_privacy(self, user_id, payload):
        data = load(api.PrivacyInput, payload)
        return domain.privacy_view(self.store.set_privacy(user_id, data["show_purchases_to_friends"]))

    @rpc
    def erase_user(self, user_id):
        """DELETE /me: everything of the user here goes, and user.deleted tells the other services."""
        return {"user_id": user_id, "erased": self.store.erase_user(checked_id(user_id))}

    # -- moderation ---------------------------------------------------------------------------------------
    @rpc
    def report(self, reporter_id, target_type, target_id, payload):
        """Report a moment or comment the reporter may see (anything else: 404)."""
        data = load(api.ReportInput, payload)
        if target_type not in domain.REPORT_TARGETS:
            raise NotFound("nothing to report")
        if target_type == "comment":
            comment = self.store.comment(checked_id(target_id, "comment not found"))
            if comment is None or comment.get("taken_down"):
                raise NotFound("comment not found")
            self._openable(reporter_id, comment["moment_id"])
        else:
            self._openable(reporter_id, target_id)
        report = domain.new_report(reporter_id, target_type, target_id, data["reason"], domain.now())
        return domain.report_view(self.store.report(report))

    @rpc
    def reports(self, params=None):
        query = load(api.ReportQuery, params or {})
        found, cursor = self.store.reports_page(query["status"], query["limit"], query["cursor"])
        targets = self.store.report_targets(found)  # the admin reads what was reported, with its author
        profiles = self.store.profiles_by_id([domain.author_id_of(t) for t in targets.values()])
        items = []
        for report in found:
            target = targets.get(report["target_id"])
            items.append(domain.report_view(report, domain.reported_content(
                target, profiles.get(domain.author_id_of(target)))))
        return {"items": items, "next_cursor": cursor}

    @rpc
    def take_down(self, target_type, target_id, payload):
        data = load(api.TakedownInput, payload)
        if target_type not in domain.REPORT_TARGETS:
            raise NotFound("nothing to take down")
        return self.store.take_down(target_type, checked_id(target_id, f"{target_type} not found"), data["reason"])

    @rpc
    def dismiss_reports(self, target_type, target_id, payload):
        data = load(api.TakedownInput, payload)
        if target_type not in domain.REPORT_TARGETS:
            raise NotFound("nothing to dismiss")
        return self.store.dismiss_reports(target_type, checked_id(target_id, f"{target_type} not found"),
                                          data["reason"])

    @on_event("catalog", "product.hidden")
    def hide_product_cards(self, event, session):
        self.store.set_product_card_hidden(event["data"]["product_id"], True, session)

    @on_event("catalog", "product.updated")
    def show_product_cards(self, event, session):
        if event["data"].get("visible") is not False:
            self.store.set_product_card_hidden(event["data"]["product_id"], False, session)

    # -- timeline fan-out (own events: the POST returns at once, the kit retries a failed fan-out) ----------
    @on_event("social_feed", "moment.posted")
    def fan_out_moment(self, event, session):
        started = time.perf_counter()
        FAN_OUT_ENTRIES.inc(self.store.fan_out(event["data"]["moment_id"]))
        FAN_OUT_SECONDS.observe(time.perf_counter() - started)

    @on_event("social_feed", "friendship.created")
    def backfill_new_friends(self, event, session):
        self.store.backfill(event["data"]["user_ids"])
