"""Registration, login and the signed-in user's profile."""
from gateway import schemas
from gateway.auth import TOKEN_TTL, hash_password, issue_token, verify_password
from gateway.errors import Unauthorized
from gateway.http import api
from gateway.rpc import call
from kit.validation import new_id, utcnow


class AuthRoutes:
    @api("POST", "/auth/register", auth=None, body=schemas.RegisterBody, response=schemas.Registered, status=201,
         tags=["auth"], summary="Register; a valid share_code makes its sharer the new user's inviter",
         errors=[409])
    def register(self, c):
        user = {"_id": new_id("usr"), "phone": c.body["phone"], "password_hash": hash_password(c.body["password"]),
                "nickname": c.body["nickname"], "roles": ["shopper"], "created_at": utcnow()}
        self.store.insert_user(user)
        self.after_register(user, c.body.get("share_code"))
        return {"user_id": user["_id"]}

    def after_register(self, user, share_code):
        """Hook for services that keep a user's profile (social-feed creates it here)."""

    @api("POST", "/auth/login", auth=None, body=schemas.LoginBody, response=schemas.Token, tags=["auth"],
         summary="Exchange phone and password for a bearer token", errors=[401])
    def login(self, c):
        user = self.store.user_by_phone(c.body["phone"])
        if user is None or not verify_password(c.body["password"], user["password_hash"]):
            raise Unauthorized("wrong phone number or password")
        return {"access_token": issue_token(self.config.jwt_secret, user["_id"], user["roles"]),
                "token_type": "bearer", "expires_in": TOKEN_TTL}

    @api("GET", "/me", response=schemas.Me, tags=["auth"], summary="The signed-in user's own profile")
    def me(self, c):
        user = self.store.user(c.user_id)
        if user is None:
            raise Unauthorized("this account no longer exists")
        return {"user_id": user["_id"], "phone": user["phone"], "nickname": user["nickname"], "roles": user["roles"],
                "merchants": call(self.catalog.merchants_of, user["_id"])}
