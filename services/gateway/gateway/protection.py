"""Account protection rules (pure, no I/O): failed logins per phone, and when a bearer token is revoked.

Failed logins (api-outline.md, Safety): LOGIN_MAX_FAILURES failures for one phone within FAILURE_WINDOW answer
429 whatever the client IP, with a Retry-After that grows while the guessing goes on; a success resets.
The counter lives in the gateway's MongoDB (shared by every replica) and is claimed atomically BEFORE the
password is checked, so N concurrent guesses can never verify more than LOGIN_MAX_FAILURES passwords.

Revocation: a token carries `ver` (the user's token version when it was issued) and `jti`. Logout denies one
jti; a password change, a suspension or an erasure raises the user's minimum version (every older token dies)."""
import hashlib
import hmac
import math
from datetime import timedelta

FAILURE_WINDOW = timedelta(minutes=15)
LOCK_BASE_SECONDS = 15  # the first lock; each further attempt while locked doubles it
LOCK_MAX_SECONDS = int(FAILURE_WINDOW.total_seconds())


def phone_key(secret, phone):
    """The counter's key: an HMAC of the phone, so the collection never holds a phone number."""
    return hmac.new(secret.encode(), phone.encode(), hashlib.sha256).hexdigest()


def lock_seconds(excess):
    """How long a phone is locked after its `excess`-th attempt beyond the allowance (0 = the last allowed
    failure): 15 s, 30 s, 60 s ... never more than the 15-minute window."""
    return min(LOCK_MAX_SECONDS, LOCK_BASE_SECONDS * 2 ** min(max(excess, 0), 16))


def attempt_decision(count, locked_until, now, max_failures):
    """After claiming attempt number `count` in the window: (allowed, retry_after seconds when refused, new
    lock seconds to set or None). Within the allowance every attempt may check its password; beyond it only
    an attempt that comes after the lock ran out may (and it locks again, longer); the others are refused and
    lengthen the lock. A phone past the allowance with no lock yet is being guessed concurrently: refused."""
    if count <= max_failures:
        return True, None, None
    excess = count - max_failures
    if locked_until is not None and locked_until <= now:
        return True, None, lock_seconds(excess)
    return False, lock_seconds(excess), lock_seconds(excess)


def lock_after_failure(count, max_failures):
    """Seconds to lock a phone after a failed attempt number `count`, or None while failures are allowed."""
    return lock_seconds(count - max_failures) if count >= max_failures else None


def retry_after(seconds):
    return max(1, math.ceil(seconds))


def token_revoked(claims, denied_jtis, min_versions):
    """Whether a decoded token is revoked by what the replica knows: its jti denied (logout), or its version
    older than the user's minimum (password change, suspension, erasure)."""
    if claims.get("jti") in denied_jtis:
        return True
    return claims.get("ver", 0) < min_versions.get(claims["sub"], 0)
