"""The gateway's own database: credentials (users) and idempotency records of HTTP requests."""
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from kit.errors import Conflict
from kit.mongo import BaseStore
from kit.validation import new_id, utcnow


class GatewayStore(BaseStore):
    COLLECTIONS = ("users", "idempotency")
    INDEXES = {
        "users": [IndexModel([("phone", ASCENDING)], unique=True)],
        "idempotency": [IndexModel([("created_at", ASCENDING)], expireAfterSeconds=24 * 3600)],
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
        super().ensure_indexes()
        self.ensure_admin()

    def ensure_admin(self):
        """The first admin comes from ADMIN_PHONE / ADMIN_PASSWORD, created at start if missing."""
        from gateway.auth import hash_password
        phone = self.settings.admin_phone
        if self.users.find_one({"phone": phone}) is None:
            try:
                self.users.insert_one({"_id": new_id("usr"), "phone": phone,
                                       "password_hash": hash_password(self.settings.admin_password),
                                       "nickname": "admin", "roles": ["shopper", "admin"], "created_at": utcnow()})
            except DuplicateKeyError:
                pass  # another gateway replica created it first
