"""The gateway's own database: credentials (users), idempotency records of HTTP requests, failed-login
counters, token revocations, the append-only audit log and the pictures people upload (media: who uploaded what,
for which purpose; media_blobs: the bytes, kept apart so an export lists pictures without carrying them)."""
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import CollectionInvalid, DuplicateKeyError

from gateway.protection import FAILURE_WINDOW
from kit import paging
from kit.errors import Conflict, NotFound
from kit.mongo import BaseStore
from kit.validation import new_id, utcnow

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ERASED_VERSION = 2 ** 31  # the minimum token version of an erased account: no token of it is ever valid again
AUDIT_FIELDS = ("at", "actor_id", "action", "target_id", "reason", "request_id")
# Enforced by MongoDB on every insert: an audit entry always says who did what to which target, when, and why.
AUDIT_VALIDATOR = {"$jsonSchema": {
    "bsonType": "object", "required": list(AUDIT_FIELDS),
    "properties": {"at": {"bsonType": "date"}, "actor_id": {"bsonType": "string"},
                   "action": {"bsonType": "string"}, "target_id": {"bsonType": ["string", "null"]},
                   "reason": {"bsonType": ["string", "null"]}, "request_id": {"bsonType": "string"}}}}


class GatewayStore(BaseStore):
    COLLECTIONS = ("users", "idempotency", "login_failures", "revocations", "audit", "media", "media_blobs")
    PERSONAL_DATA = {"users": ("_id",), "media": ("owner_id",)}
    INDEXES = {
        "users": [IndexModel([("phone", ASCENDING)], unique=True)],
        "idempotency": [IndexModel([("created_at", ASCENDING)], expireAfterSeconds=24 * 3600),
                        IndexModel([("user_id", ASCENDING)])],
        "login_failures": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)],
        "revocations": [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),
                        IndexModel([("user_id", ASCENDING), ("min_version", DESCENDING)])],
        "audit": [IndexModel([("actor_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]),
                  IndexModel([("target_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]),
                  IndexModel([("at", DESCENDING), ("_id", DESCENDING)])],
        "media": [IndexModel([("owner_id", ASCENDING), ("purpose", ASCENDING)])],
    }

    def insert_user(self, user):
        try:
            self.users.insert_one(user)
        except DuplicateKeyError:
            raise Conflict("this phone number is already registered", {"phone": ["already registered"]})

    def delete_user(self, user_id):
        self.users.delete_one({"_id": user_id})

    def user_by_phone(self, phone):
        return self.users.find_one({"phone": phone})

    def user(self, user_id):
        return self.users.find_one({"_id": user_id})

    def ensure_indexes(self):
        try:  # the audit log's shape is checked by MongoDB itself; there is no code path that updates or deletes
            self.db.create_collection("audit", validator=AUDIT_VALIDATOR, validationLevel="strict",
                                      validationAction="error")
        except CollectionInvalid:
            pass  # exists already (another replica, a restart)
        super().ensure_indexes()
        self.ensure_admin()

    def ensure_admin(self):
        """The first admin comes from ADMIN_PHONE / ADMIN_PASSWORD, created at start if missing."""
        from gateway.auth import hash_password
        phone = self.settings.admin_phone
        if self.users.find_one({"phone": phone}) is None:
            try:
                self.users.insert_one({"_id": new_id("usr"), "phone": phone,
                                       "password_hash": hash_password(self.settings.admin_password,
                                                                     self.settings.password_hash_log2n),
                                       "nickname": "admin", "roles": ["shopper", "admin"], "created_at": utcnow()})
            except DuplicateKeyError:
                pass  # another gateway replica created it first

    # -- failed logins (per phone, shared by every replica) -------------------------------------------------
    def claim_login_attempt(self, key, now):
        """Count one login attempt for `key` atomically, starting a new window when the last one is over (and
        no lock runs); returns the counter after it: {count, locked_until}."""
        fresh = {"$and": [{"$lt": [{"$ifNull": ["$window_start", EPOCH]}, now - FAILURE_WINDOW]},
                          {"$lt": [{"$ifNull": ["$locked_until", EPOCH]}, now]}]}
        pipeline = [{"$set": {
            "window_start": {"$cond": [fresh, now, "$window_start"]},
            "locked_until": {"$cond": [fresh, None, "$locked_until"]},
            "count": {"$add": [{"$cond": [fresh, 0, {"$ifNull": ["$count", 0]}]}, 1]},
            "expires_at": now + 2 * FAILURE_WINDOW}}]
        for attempt in range(2):
            try:
                return self.login_failures.find_one_and_update({"_id": key}, pipeline, upsert=True,
                                                               return_document=ReturnDocument.AFTER)
            except DuplicateKeyError:  # two first attempts at once: the other upsert won, count on it
                if attempt:
                    raise

    def lock_login(self, key, until):
        self.login_failures.update_one({"_id": key}, {"$max": {"locked_until": until}})

    def reset_login(self, key):
        self.login_failures.delete_one({"_id": key})

    # -- sessions: token versions and revocations --------------------------------------------------------
    def revoke_token(self, user_id, jti, expires_at):
        doc = {"_id": f"jti:{jti}", "user_id": user_id, "jti": jti, "expires_at": expires_at, "at": utcnow()}
        try:
            self.revocations.insert_one(doc)
        except DuplicateKeyError:
            pass  # logged out twice
        return doc

    def end_sessions(self, user_id, token_ttl, changes=None, version=None):
        """Raise the user's token version (every token issued before dies) together with `changes` to the
        user; returns (the revocation document, the user after it)."""
        now = utcnow()
        if version is None:
            user = self.users.find_one_and_update({"_id": user_id}, {"$inc": {"token_version": 1},
                                                                     "$set": changes or {}},
                                                  return_document=ReturnDocument.AFTER)
            if user is None:
                raise NotFound("user not found")
            version = user["token_version"]
        else:
            user = None
        doc = {"_id": f"ver:{user_id}:{version}", "user_id": user_id, "min_version": version,
               "expires_at": now + timedelta(seconds=token_ttl), "at": now}
        try:
            self.revocations.insert_one(doc)
        except DuplicateKeyError:
            pass
        return doc, user

    def set_suspension(self, user_id, suspension):
        user = self.users.find_one_and_update({"_id": user_id}, {"$set": {"suspended": suspension}},
                                              return_document=ReturnDocument.AFTER)
        if user is None:
            raise NotFound("user not found")
        return user

    def erase_credentials(self, user_id):
        """DELETE /me, last step: the credentials (phone, nickname, password hash) and every stored response
        of the user's requests go; the phone can register again."""
        self.users.delete_one({"_id": user_id})
        self.idempotency.delete_many({"user_id": user_id})

    # -- uploaded pictures -------------------------------------------------------------------------------
    def save_media(self, record, data):
        """Store an upload under its name (the record first: a crash in between leaves a listed picture without
        bytes, which the same upload again completes and erasure removes, never bytes nobody can find). The name
        derives from the uploader and the bytes, so sending the same picture again is the same upload."""
        try:
            self.media.insert_one(record)
            saved = record
        except DuplicateKeyError:
            saved = self.media.find_one({"_id": record["_id"]})
        self.media_blobs.update_one({"_id": record["_id"]}, {"$setOnInsert": {
            "data": data, "content_type": saved["content_type"]}}, upsert=True)
        return saved

    def media_blob(self, name):
        """(content type, bytes) of an uploaded picture, or None: one read (the blob carries its type)."""
        blob = self.media_blobs.find_one({"_id": name})
        return (blob["content_type"], bytes(blob["data"])) if blob else None

    def erase_media(self, user_id, purposes):
        """The user's personal pictures (moments, avatar) go with the account; pictures of a shop's products are
        the merchant's business records and stay."""
        names = [m["_id"] for m in self.media.find({"owner_id": user_id, "purpose": {"$in": list(purposes)}},
                                                   {"_id": 1})]
        self.media.delete_many({"_id": {"$in": names}})
        self.media_blobs.delete_many({"_id": {"$in": names}})
        return len(names)

    # -- the audit log: appended, read, never changed ----------------------------------------------------
    def append_audit(self, entry):
        self.audit.insert_one({"_id": new_id("aud"), **{name: entry.get(name) for name in AUDIT_FIELDS}})

    def audit_page(self, actor_id, target_id, limit, cursor):
        query = {}
        if actor_id:
            query["actor_id"] = actor_id
        if target_id:
            query["target_id"] = target_id
        return paging.find_page(self.audit, query, limit, cursor, "at")
