"""The gateway's revocation cache against a real mongod: the database fallback while it is stale, then the
change stream feeding memory (what lets every replica refuse an ended token without a round trip)."""
import threading
import uuid
from datetime import timedelta

from gateway.sessions import RevocationCache
from kit.validation import utcnow
from tests.helpers import eventually


def test_stale_checks_the_database_then_the_stream_keeps_memory_fresh(mongo):
    collection = mongo.quanzi_revocation_test[f"revocations_{uuid.uuid4().hex[:8]}"]
    later = utcnow() + timedelta(hours=1)
    collection.insert_one({"_id": "jti:before", "user_id": "usr_a", "jti": "before", "expires_at": later})
    cache = RevocationCache(collection)
    # given a replica that has not loaded anything yet: it asks the database (never lets a revoked token in)
    assert cache.stale
    assert cache.is_revoked({"sub": "usr_a", "jti": "before", "ver": 0})
    assert not cache.is_revoked({"sub": "usr_a", "jti": "other", "ver": 0})
    follower = threading.Thread(target=cache.run, daemon=True)
    follower.start()
    try:
        # when it follows the stream, it loaded what was there and answers from memory
        eventually(lambda: _true(not cache.stale))
        assert cache.denied_jtis.keys() >= {"before"}
        # and learns what any other replica writes afterwards
        collection.insert_one({"_id": "ver:usr_b:3", "user_id": "usr_b", "min_version": 3, "expires_at": later})
        collection.insert_one({"_id": "jti:after", "user_id": "usr_a", "jti": "after", "expires_at": later})
        eventually(lambda: _true(cache.is_revoked({"sub": "usr_b", "jti": "x", "ver": 2})), timeout=5, interval=0.01)
        eventually(lambda: _true(cache.is_revoked({"sub": "usr_a", "jti": "after", "ver": 0})), timeout=5,
                   interval=0.01)
        assert not cache.is_revoked({"sub": "usr_b", "jti": "y", "ver": 3})
    finally:
        cache.stop()
        follower.join(5)
        collection.database.client.drop_database(collection.database.name)


def _true(condition):
    assert condition
