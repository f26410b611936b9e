"""Safety and privacy: sessions (logout, password change), the admin's tools (review queue, takedowns,
suspensions, reports) with their audit log, and the user's PIPL rights (privacy consent, export, erasure).

Every admin decision declares `audit=`: the pipeline appends who decided what, on which target, why, under
which request id, once the decision succeeded (http.ApiRoute.record_decision)."""
from contracts.api.catalog import MerchantQuery, Reason
from contracts.api.social_feed import PrivacyInput, ReportInput, ReportQuery, TakedownInput
from gateway import schemas, schemas_safety as out
from gateway.auth import TOKEN_TTL, hash_password, issue_token, verify_password
from gateway.cache import ProductCache
from gateway.errors import ServiceUnavailable, Unauthorized
from gateway.http import EdgeState, api
from gateway.rpc import call, call_all
from gateway.store import ERASED_VERSION
from kit.amqp import RpcProxy
from kit.validation import utcnow

BACKENDS = ("catalog", "orders", "social_feed", "commission")
EXPORT_BUDGET = 10.0
ACCOUNT_FIELDS = ("_id", "phone", "nickname", "roles", "created_at", "suspended")


def user_status(user):
    suspension = user.get("suspended")
    return {"user_id": user["_id"], "suspended": bool(suspension), "reason": suspension and suspension["reason"]}


class SafetyRoutes:
    catalog = RpcProxy("catalog")
    orders = RpcProxy("orders")
    social_feed = RpcProxy("social_feed")
    commission = RpcProxy("commission")
    edge = EdgeState()
    products = ProductCache()

    # -- sessions -------------------------------------------------------------------------------------------
    @api("POST", "/auth/logout", status=204, tags=["auth"],
         summary="Sign out: this token stops working at once, on every gateway replica")
    def logout(self, c):
        claims = c.user["claims"]
        doc = self.store.revoke_token(c.user_id, claims["jti"], _expiry(claims))
        self.edge.revocations.apply(doc)
        return 204, None

    @api("POST", "/auth/password", body=out.PasswordChange, response=schemas.Token, tags=["auth"], errors=[401],
         summary="Change your password: every other session ends at once; this answer carries your new token")
    def change_password(self, c):
        user = self._verified(c.user_id, c.body["old_password"], "old_password")
        new_hash = hash_password(c.body["new_password"], self.config.password_hash_log2n)
        doc, user = self.store.end_sessions(c.user_id, TOKEN_TTL, {"password_hash": new_hash})
        self.edge.revocations.apply(doc)
        return {"access_token": issue_token(self.config.jwt_secret, user["_id"], user["roles"],
                                            user["token_version"]),
                "token_type": "bearer", "expires_in": TOKEN_TTL}

    # -- privacy (PIPL) -------------------------------------------------------------------------------------
    @api("GET", "/me/privacy", response=out.Privacy, tags=["privacy"], errors=[404],
         summary="Your privacy choices")
    def get_privacy(self, c):
        return call(self.social_feed.get_privacy, c.user_id)

    @api("PATCH", "/me/privacy", body=PrivacyInput, response=out.Privacy, tags=["privacy"], errors=[404],
         summary="Separate consent: show your purchases to your friends (social proof), off until you turn it "
                 "on; honoured at once, also for what you bought before")
    def set_privacy(self, c):
        return call(self.social_feed.set_privacy, c.user_id, c.body)

    @api("GET", "/me/export", response=out.DataExport, tags=["privacy"],
         summary="Everything Quanzi holds about you, from every service, as JSON (access and portability); 503 "
                 "when a service cannot answer (never a partial export)")
    def export_me(self, c):
        user = self.store.user(c.user_id)
        if user is None:
            raise Unauthorized("this account no longer exists")
        answers, degraded = call_all({name: (getattr(self, name).export_user, (c.user_id,)) for name in BACKENDS},
                                     timeout=EXPORT_BUDGET)
        if degraded:
            raise ServiceUnavailable(f"could not collect your data from {', '.join(sorted(degraded))}; try again")
        own = self.store.export_user(c.user_id)
        own["users"] = [{k: v for k, v in doc.items() if k != "password_hash"} for doc in own["users"]]
        account = own["users"][0] if own["users"] else {}
        return {"user_id": c.user_id, "exported_at": utcnow().isoformat(),
                "account": {k: account.get(k) for k in ACCOUNT_FIELDS},
                "services": [{"service": "gateway", "collections": own}] + [answers[name] for name in BACKENDS]}

    @api("DELETE", "/me", body=out.AccountDeletion, status=204, tags=["privacy"], errors=[401, 503],
         summary="Erase your account (PIPL): sign-in fails from now on; profile, moments, friendships and timelines "
                 "are purged everywhere (event user.deleted); orders and the commission ledger are kept for the law "
                 "but de-identified (no address, no nickname)")
    def delete_me(self, c):
        self._verified(c.user_id, c.body["password"], "password")
        # social-feed first: it purges and emits user.deleted in one transaction (the others de-identify on
        # it); only then do the credentials go, so a failure here leaves an account that can try again.
        call(self.social_feed.erase_user, c.user_id)
        doc, _ = self.store.end_sessions(c.user_id, TOKEN_TTL, version=ERASED_VERSION)
        self.edge.revocations.apply(doc)
        self.store.erase_credentials(c.user_id)
        self.store.erase_media(c.user_id, ("moment", "avatar"))
        return 204, None

    # -- the admin's tools ----------------------------------------------------------------------------------
    @api("GET", "/admin/merchants", auth="admin", query=MerchantQuery, response=out.MerchantPage, tags=["admin"],
         summary="Merchants by status, newest first: ?status=pending is the review queue")
    def list_merchants(self, c):
        return call(self.catalog.list_merchants, c.query)

    @api("POST", "/admin/products/<product_id>/takedown", auth="admin", body=Reason, response=schemas.Product,
         tags=["admin"], errors=[404, 409], audit="product.takedown",
         summary="Take a product down: hidden from search, its page, share links and moments' product cards")
    def take_down_product(self, c):
        product = call(self.catalog.moderate_product, c.path["product_id"], "takedown", c.body)
        self.products.drop(c.path["product_id"])
        return product

    @api("POST", "/admin/products/<product_id>/restore", auth="admin", response=schemas.Product, tags=["admin"],
         errors=[404, 409], audit="product.restore",
         summary="Restore a taken-down product (visible again when its merchant is approved)")
    def restore_product(self, c):
        product = call(self.catalog.moderate_product, c.path["product_id"], "restore")
        self.products.drop(c.path["product_id"])
        return product

    @api("POST", "/admin/users/<user_id>/suspend", auth="admin", body=Reason, response=out.UserStatus,
         tags=["admin"], errors=[404], audit="user.suspend",
         summary="Suspend a user: they cannot sign in, and their tokens stop working at once")
    def suspend_user(self, c):
        suspension = {"reason": c.body["reason"], "at": utcnow(), "by": c.user_id}
        doc, user = self.store.end_sessions(c.path["user_id"], TOKEN_TTL, {"suspended": suspension})
        self.edge.revocations.apply(doc)
        return user_status(user)

    @api("POST", "/admin/users/<user_id>/restore", auth="admin", response=out.UserStatus, tags=["admin"],
         errors=[404], audit="user.restore", summary="Lift a user's suspension: they may sign in again")
    def restore_user(self, c):
        return user_status(self.store.set_suspension(c.path["user_id"], None))

    @api("GET", "/admin/audit", auth="admin", query=out.AuditQuery, response=out.AuditPage, tags=["admin"],
         summary="The append-only audit log of every admin and merchant decision, newest first")
    def audit_log(self, c):
        docs, next_cursor = self.store.audit_page(c.query["actor_id"], c.query["target_id"], c.query["limit"],
                                                  c.query["cursor"])
        return {"items": [{"audit_id": d["_id"], "at": d["at"].isoformat(), "actor_id": d["actor_id"],
                           "action": d["action"], "target_id": d["target_id"], "reason": d["reason"],
                           "request_id": d["request_id"]} for d in docs], "next_cursor": next_cursor}

    # -- moderation ---------------------------------------------------------------------------------------
    @api("POST", "/moments/<moment_id>/reports", body=ReportInput, response=out.ReportView, status=201,
         tags=["moderation"], errors=[404], summary="Report a moment you can see, for an admin to review")
    def report_moment(self, c):
        return call(self.social_feed.report, c.user_id, "moment", c.path["moment_id"], c.body)

    @api("POST", "/comments/<comment_id>/reports", body=ReportInput, response=out.ReportView, status=201,
         tags=["moderation"], errors=[404], summary="Report a comment on a moment you can see")
    def report_comment(self, c):
        return call(self.social_feed.report, c.user_id, "comment", c.path["comment_id"], c.body)

    @api("GET", "/admin/reports", auth="admin", query=ReportQuery, response=out.ReportPage, tags=["admin"],
         summary="Reports by status (default open), newest first")
    def reports(self, c):
        return call(self.social_feed.reports, c.query)

    @api("POST", "/admin/moments/<moment_id>/takedown", auth="admin", body=TakedownInput, response=out.TakenDown,
         tags=["admin"], errors=[404], audit="moment.takedown",
         summary="Take a moment down: it leaves every timeline and answers 404; its reports are resolved")
    def take_down_moment(self, c):
        return call(self.social_feed.take_down, "moment", c.path["moment_id"], c.body)

    @api("POST", "/admin/comments/<comment_id>/takedown", auth="admin", body=TakedownInput, response=out.TakenDown,
         tags=["admin"], errors=[404], audit="comment.takedown",
         summary="Take a comment down: nobody sees it any more; its reports are resolved")
    def take_down_comment(self, c):
        return call(self.social_feed.take_down, "comment", c.path["comment_id"], c.body)

    @api("POST", "/admin/moments/<moment_id>/reports/dismiss", auth="admin", body=TakedownInput,
         response=out.ReportsDismissed, tags=["admin"], errors=[404], audit="moment.reports_dismissed",
         summary="Keep a reported moment up: its open reports close as dismissed, with the reason (404: none open)")
    def dismiss_moment_reports(self, c):
        return call(self.social_feed.dismiss_reports, "moment", c.path["moment_id"], c.body)

    @api("POST", "/admin/comments/<comment_id>/reports/dismiss", auth="admin", body=TakedownInput,
         response=out.ReportsDismissed, tags=["admin"], errors=[404], audit="comment.reports_dismissed",
         summary="Keep a reported comment up: its open reports close as dismissed, with the reason (404: none open)")
    def dismiss_comment_reports(self, c):
        return call(self.social_feed.dismiss_reports, "comment", c.path["comment_id"], c.body)

    # -- helpers ----------------------------------------------------------------------------------------------
    def _verified(self, user_id, password, field):
        user = self.store.user(user_id)
        if user is None:
            raise Unauthorized("this account no longer exists")
        if not verify_password(password, user["password_hash"]):
            raise Unauthorized("wrong password", {field: ["does not match your current password"]})
        return user


def _expiry(claims):
    from datetime import datetime, timezone
    return datetime.fromtimestamp(claims["exp"], tz=timezone.utc)
