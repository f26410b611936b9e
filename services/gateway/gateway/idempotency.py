"""Idempotency-Key for every POST of a signed-in user, at the edge (one mechanism for every route but those
declared idempotency="service", whose service keeps the key with what it makes: POST /orders).

The first request with a key claims it (a unique insert), runs, and stores its answer; a repeat (a client retry,
a double tap) gets the stored answer back, byte for byte, without running the route again. A repeat that
arrives while the first is still running waits for it. A key reused with a different body is refused (422).
Answers of 5xx, and answers that ask to be retried (Retry-After: a rate limit, an in_progress 409 from a service
that is still handling the same key), are not stored, so a retry runs again. A claim whose owner died expires.
When MongoDB is away as a request ends, its answer (or its release, after a 5xx) is written in the background as
soon as MongoDB is back: a retry then runs or replays at once instead of waiting for the claim to expire."""
import hashlib
import time
from datetime import timedelta

import logging

import eventlet
from pymongo import DeleteOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError
from werkzeug.wrappers import Response

from kit import claims
from kit.batching import ALONE, GroupCommit
from kit.errors import InProgress, RuleRefused
from kit.validation import utcnow

CLAIM_LEASE = timedelta(seconds=30)
WAIT_SECONDS = 10
FINISH_RETRY_SECONDS = 0.5
log = logging.getLogger(__name__)


class IdempotencyKeys:
    """Claims and answers of concurrent requests are written in batches (kit.batching): under load, one insert
    claims every key that arrived meanwhile and one bulk update stores their answers."""

    def __init__(self, collection):
        self.records = collection
        self._claims = GroupCommit(self._claim_all, name="gateway.idempotency_claims")
        self._answers = GroupCommit(self._finish_all, name="gateway.idempotency_answers")

    def _claim_all(self, records):
        """Insert the claims; ALONE for a key claimed before (its request then waits for or replays it)."""
        try:
            self.records.insert_many(records, ordered=False)
            return [None] * len(records)
        except BulkWriteError as exc:
            errors = exc.details["writeErrors"]
            if any(error["code"] != 11000 for error in errors):
                raise
            taken = {error["index"] for error in errors}
            return [ALONE if i in taken else None for i in range(len(records))]

    def _finish_all(self, answers):
        self.records.bulk_write([self._finish_op(*answer) for answer in answers], ordered=False)
        return [None] * len(answers)

    @staticmethod
    def _finish_op(record_id, final, status, body):
        if not final:
            return DeleteOne({"_id": record_id, "state": "running"})
        return UpdateOne({"_id": record_id}, {"$set": {"state": "done", "status": status, "body": body}})

    @staticmethod
    def record_id(user_id, method, path, key):
        return hashlib.sha256(f"{user_id}\n{method}\n{path}\n{key}".encode()).hexdigest()

    def begin(self, record_id, body_hash, user_id=None):
        """None when this request owns the key and should run; otherwise the stored Response to replay.
        `user_id` is kept with the record so an erased account's stored answers can be deleted."""
        now = utcnow()
        record = {"_id": record_id, "state": "running", "body_hash": body_hash, "user_id": user_id,
                  **claims.held(now, CLAIM_LEASE), "created_at": now}
        return self._claims.submit(record, alone=lambda: self._claim(record))

    def _claim(self, record):
        if self._claim_all([record])[0] is ALONE:
            return self._wait_for(record["_id"], record["body_hash"], record["user_id"])
        return None

    def _wait_for(self, record_id, body_hash, user_id):
        """The key was claimed before: replay its answer, wait for it, or take a dead owner's claim over."""
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
            # its owner died mid-request: take the claim over
            if claims.take(self.records, record_id, utcnow(), CLAIM_LEASE, {"state": "running"}):
                return None
            if time.monotonic() > deadline:
                raise InProgress("a request with this Idempotency-Key is still in progress; retry later")
            eventlet.sleep(0.05)

    def finish(self, record_id, response):
        """Store the answer (or let go of the key after a 5xx). The caller gets its answer either way: when
        MongoDB cannot take the write now, it is retried in the background for as long as the claim lasts."""
        status, body = response.status_code, response.get_data(as_text=True)
        # a 5xx or an answer asking to be retried later is not the request's answer: let go of the key
        final = status < 500 and "Retry-After" not in response.headers
        try:
            self._finish(record_id, final, status, body)
        except PyMongoError as exc:
            log.warning("idempotency record %s not finished (%s): retrying in the background", record_id[:12],
                        type(exc).__name__)
            eventlet.spawn_n(self._finish_later, record_id, final, status, body)

    def _finish(self, record_id, final, status, body):
        self._answers.submit((record_id, final, status, body),
                             alone=lambda: self._finish_one(record_id, final, status, body))

    def _finish_one(self, record_id, final, status, body):
        if not final:
            self.records.delete_one({"_id": record_id, "state": "running"})
        else:
            self.records.update_one({"_id": record_id}, {"$set": {"state": "done", "status": status, "body": body}})

    def _finish_later(self, record_id, final, status, body):
        deadline = time.monotonic() + CLAIM_LEASE.total_seconds()  # after that, the claim has expired anyway
        while time.monotonic() < deadline:
            eventlet.sleep(FINISH_RETRY_SECONDS)
            try:
                self._finish(record_id, final, status, body)
                return
            except PyMongoError:
                continue


def body_hash(request):
    return hashlib.sha256(request.get_data(cache=True)).hexdigest()
