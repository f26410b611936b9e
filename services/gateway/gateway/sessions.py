"""Token revocation checked in memory, kept fresh in every gateway replica by a MongoDB change stream.

Why this design: a bearer token is a signed JWT, so checking it costs no round trip; revocation must not add
one either (the product page answers from memory). Each replica keeps what is revoked — denied token ids
(logout) and each user's minimum token version (password change, suspension, erasure) — in two dicts, and
learns every new revocation from a change stream on the gateway's `revocations` collection: whichever replica
revokes, all of them know within milliseconds (the writer knows at once). The collection is the source of
truth (TTL: a revocation older than a token's lifetime protects nothing any more), so a replica that starts
loads it, and a change stream that breaks is reopened and the collection reloaded.

Safe fallback: until the stream is open and the collection loaded (start, or after an error), the replica is
`stale` and checks each token against the collection itself (one indexed read): never a revoked token let in
because a notification was missed; only a little slower while it lasts."""
import logging
import time

import eventlet
from prometheus_client import Counter, Gauge

from gateway.protection import token_revoked
from kit.validation import utcnow

log = logging.getLogger(__name__)

REVOCATION_CHECKS = Counter("quanzi_gateway_revocation_checks_total", "Token revocation checks by source",
                            ["source", "outcome"])
REVOCATIONS_STALE = Gauge("quanzi_gateway_revocations_stale", "1 while this replica checks revocations in MongoDB")
REOPEN_DELAY = 1.0


class RevocationCache:
    def __init__(self, collection):
        self.collection = collection
        self.denied_jtis = {}  # jti -> expiry (epoch seconds)
        self.min_versions = {}  # user id -> minimum token version
        self.stale = True
        self.running = False
        REVOCATIONS_STALE.set(1)

    # -- what routes ask -------------------------------------------------------------------------------------
    def is_revoked(self, claims):
        if not self.stale:
            revoked = token_revoked(claims, self.denied_jtis, self.min_versions)
            REVOCATION_CHECKS.labels("memory", "revoked" if revoked else "ok").inc()
            return revoked
        found = self.collection.find_one({"$or": [
            {"_id": f"jti:{claims.get('jti')}"},
            {"user_id": claims["sub"], "min_version": {"$gt": claims.get("ver", 0)}}]}, {"_id": 1})
        REVOCATION_CHECKS.labels("database", "revoked" if found else "ok").inc()
        return found is not None

    def apply(self, doc):
        """Learn one revocation document (from the stream, the initial load, or this replica's own write)."""
        if doc.get("jti"):
            self.denied_jtis[doc["jti"]] = doc["expires_at"].timestamp()
        if doc.get("min_version") is not None:
            user_id = doc["user_id"]
            self.min_versions[user_id] = max(self.min_versions.get(user_id, 0), doc["min_version"])

    # -- keeping it fresh ----------------------------------------------------------------------------------
    def run(self):
        self.running = True
        while self.running:
            try:
                self._follow()
            except Exception as exc:  # the stream broke (primary stepped down, network...): reload and reopen
                if self.running:
                    log.warning("revocation stream interrupted, checking in MongoDB until it is back: %r", exc)
            self._set_stale(True)
            if self.running:
                eventlet.sleep(REOPEN_DELAY)

    def _follow(self):
        with self.collection.watch([{"$match": {"operationType": "insert"}}], max_await_time_ms=500) as stream:
            self._load()  # after the stream is open: nothing written in between is missed
            self._set_stale(False)
            last_prune = time.monotonic()
            while self.running and stream.alive:
                change = stream.try_next()
                if change is not None:
                    self.apply(change["fullDocument"])
                if time.monotonic() - last_prune > 60:
                    self._prune()
                    last_prune = time.monotonic()

    def _load(self):
        jtis, versions = {}, {}
        for doc in self.collection.find({"expires_at": {"$gt": utcnow()}}):
            if doc.get("jti"):
                jtis[doc["jti"]] = doc["expires_at"].timestamp()
            if doc.get("min_version") is not None:
                versions[doc["user_id"]] = max(versions.get(doc["user_id"], 0), doc["min_version"])
        self.denied_jtis.update(jtis)
        for user_id, version in versions.items():
            self.min_versions[user_id] = max(self.min_versions.get(user_id, 0), version)

    def _prune(self):
        now = time.time()
        for jti, expiry in list(self.denied_jtis.items()):
            if expiry < now:
                self.denied_jtis.pop(jti, None)

    def _set_stale(self, stale):
        self.stale = stale
        REVOCATIONS_STALE.set(1 if stale else 0)

    def stop(self):
        self.running = False
