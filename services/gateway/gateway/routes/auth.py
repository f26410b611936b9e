"""Registration, login and the signed-in user's profile."""
import time
from datetime import timedelta

from prometheus_client import Counter

from gateway import protection, schemas
from gateway.auth import TOKEN_TTL, hash_password, issue_token, verify_password
from gateway.errors import RateLimited, ServiceUnavailable, Unauthorized
from gateway.http import api
from gateway.rpc import DEFAULT_TIMEOUT, call, call_all
from kit.amqp import RpcProxy
from kit.errors import Forbidden, InvalidInput
from kit.validation import new_id, utcnow

LOGINS = Counter("quanzi_gateway_logins_total", "Login attempts by outcome", ["outcome"])
OVERVIEW_BUDGET = 0.5  # seconds for the three parts of /me/overview together

# social_feed refuses a create_profile older than this (it sat in its queue while the service was down), so a
# registration we already undid is never completed behind our back; it is inside our own time budget.
PROFILE_DEADLINE = DEFAULT_TIMEOUT - 2


class AuthRoutes:
    social_feed = RpcProxy("social_feed")

    @api("POST", "/auth/register", auth=None, body=schemas.RegisterBody, response=schemas.Registered, status=201,
         tags=["auth"], summary="Register; a valid share_code makes its sharer the new user's inviter",
         errors=[409, 503])
    def register(self, c):
        user = {"_id": new_id("usr"), "phone": c.body["phone"], "password_hash": hash_password(c.body["password"]),
                "nickname": c.body["nickname"], "roles": ["shopper"], "created_at": utcnow()}
        self.store.insert_user(user)
        # The profile (and inviter) lives in social-feed: made now, so every feature works right away. An unknown
        # share_code is ignored there (a stale link never blocks signing up).
        try:
            call(self.social_feed.create_profile, user["_id"], user["nickname"], c.body.get("share_code"),
                 time.time() + PROFILE_DEADLINE)
        except Exception as exc:
            self.store.delete_user(user["_id"])  # never leave a half-registered user
            if isinstance(exc, InvalidInput):
                raise
            raise ServiceUnavailable("could not create your profile; please try again") from exc
        return {"user_id": user["_id"]}

    @api("POST", "/auth/login", auth=None, body=schemas.LoginBody, response=schemas.Token, tags=["auth"],
         summary="Exchange phone and password for a bearer token. After LOGIN_MAX_FAILURES failures for one phone "
                 "within 15 minutes, from any IP: 429 with a growing Retry-After; a success resets. A suspended "
                 "account: 403", errors=[401, 403])
    def login(self, c):
        key = protection.phone_key(self.config.jwt_secret, c.body["phone"])
        now = utcnow()
        attempt = self.store.claim_login_attempt(key, now)  # counted before the password is checked
        allowed, wait, lock = protection.attempt_decision(attempt["count"], attempt["locked_until"], now,
                                                          self.config.login_max_failures)
        if lock is not None:
            self.store.lock_login(key, now + timedelta(seconds=lock))
        if not allowed:
            LOGINS.labels("throttled").inc()
            raise RateLimited(protection.retry_after(wait))
        user = self.store.user_by_phone(c.body["phone"])
        if user is None or not verify_password(c.body["password"], user["password_hash"]):
            lock = protection.lock_after_failure(attempt["count"], self.config.login_max_failures)
            if lock is not None:
                self.store.lock_login(key, utcnow() + timedelta(seconds=lock))
            LOGINS.labels("failed").inc()
            raise Unauthorized("wrong phone number or password")
        self.store.reset_login(key)
        if user.get("suspended"):
            LOGINS.labels("suspended").inc()
            raise Forbidden("this account is suspended")
        LOGINS.labels("ok").inc()
        return {"access_token": issue_token(self.config.jwt_secret, user["_id"], user["roles"],
                                            user.get("token_version", 0)),
                "token_type": "bearer", "expires_in": TOKEN_TTL}

    @api("GET", "/me/overview", response=schemas.Overview, tags=["auth"],
         summary="Home screen in one call: recent orders, commission balances, friend requests waiting")
    def overview(self, c):
        """Asked of three services in parallel; a part that is slow or down is null and named in `degraded`."""
        answers, degraded = call_all({
            "orders": (self.orders.list_orders, ({"user_id": c.user_id, "is_admin": False}, {"limit": 5})),
            "commission": (self.commission.summary, (c.user_id,)),
            "friend_requests": (self.social_feed.friend_requests, (c.user_id, {"limit": 5})),
        }, timeout=OVERVIEW_BUDGET)
        requests = answers["friend_requests"]
        return {"recent_orders": answers["orders"] and answers["orders"]["items"],
                "commission": answers["commission"],
                "friend_requests": requests and {"items": requests["items"],
                                                 "has_more": requests["next_cursor"] is not None},
                "degraded": sorted(degraded)}

    @api("GET", "/me", response=schemas.Me, tags=["auth"], summary="The signed-in user's own profile")
    def me(self, c):
        user = self.store.user(c.user_id)
        if user is None:
            raise Unauthorized("this account no longer exists")
        answers, _ = call_all({"merchants": (self.catalog.merchants_of, (user["_id"],)),
                               "profile": (self.social_feed.get_profile, (user["_id"], user["_id"]))}, timeout=5)
        if answers["merchants"] is None:
            raise ServiceUnavailable("the catalog did not answer in time")
        profile = answers["profile"] or {}  # social-feed owns the profile (nickname, avatar); none for the admin
        return {"user_id": user["_id"], "phone": user["phone"], "nickname": profile.get("nickname", user["nickname"]),
                "avatar_url": profile.get("avatar_url"), "inviter_id": profile.get("inviter_id"),
                "roles": user["roles"], "merchants": answers["merchants"]}
