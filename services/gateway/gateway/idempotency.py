"""Idempotency-Key for every POST of a signed-in user, at the edge (one mechanism for every route).

The first request with a key claims it (a unique insert), runs, and stores its answer; a repeat (a client retry,
a double tap) gets the stored answer back, byte for byte, without running the route again. A repeat that
arrives while the first is still running waits for it. A key reused with a different body is refused (422).
Answers of 5xx are not stored, so a retry after a server error runs again. A claim whose owner died expires."""
import hashlib
import time
from datetime import timedelta

import eventlet
from pymongo.errors import DuplicateKeyError
from werkzeug.wrappers import Response

from kit.errors import Conflict, RuleRefused
from kit.validation import utcnow

CLAIM_SECONDS = 30
WAIT_SECONDS = 10


class IdempotencyKeys:
    def __init__(self, collection):
        self.records = collection

    @staticmethod
    def record_id(user_id, method, path, key):
        return hashlib.sha256(f"{user_id}\n{method}\n{path}\n{key}".encode()).hexdigest()

    def begin(self, record_id, body_hash, user_id=None):
        """None when this request owns the key and should run; otherwise the stored Response to replay.
        `user_id` is kept with the record so an erased account's stored answers can be deleted."""
        now = utcnow()
        try:
            self.records.insert_one({"_id": record_id, "state": "running", "body_hash": body_hash, "user_id": user_id,
                                     "claimed_until": now + timedelta(seconds=CLAIM_SECONDS), "created_at": now})
            return None
        except DuplicateKeyError:
            pass
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            record = self.records.find_one({"_id": record_id})
            if record is None:  # the first attempt failed with a 5xx and let go: run again
                return self.begin(record_id, body_hash, user_id)
            if record["body_hash"] != body_hash:
                raise RuleRefused("this Idempotency-Key was already used with a different request",
                                  {"Idempotency-Key": ["reused with a different body"]})
            if record["state"] == "done":
                response = Response(record["body"], status=record["status"], mimetype="application/json")
                response.headers["Idempotent-Replayed"] = "true"
                return response
            taken = self.records.update_one(  # its owner died mid-request: take the claim over
                {"_id": record_id, "state": "running", "claimed_until": {"$lt": utcnow()}},
                {"$set": {"claimed_until": utcnow() + timedelta(seconds=CLAIM_SECONDS)}})
            if taken.modified_count:
                return None
            if time.monotonic() > deadline:
                raise Conflict("a request with this Idempotency-Key is still in progress; retry later")
            eventlet.sleep(0.05)

    def finish(self, record_id, response):
        if response.status_code >= 500:
            self.records.delete_one({"_id": record_id, "state": "running"})
            return
        self.records.update_one({"_id": record_id}, {"$set": {
            "state": "done", "status": response.status_code, "body": response.get_data(as_text=True)}})


def body_hash(request):
    return hashlib.sha256(request.get_data(cache=True)).hexdigest()
