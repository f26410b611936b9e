"""Passwords (scrypt, salted, cost stored with the hash) and bearer tokens (JWT, HS256)."""
import base64
import hashlib
import hmac
import secrets
import time

import jwt
from eventlet import tpool

from gateway.errors import Unauthorized

TOKEN_TTL = 24 * 3600
VERIFIED_MAX = 50_000  # tokens remembered as verified (a few MB at most); past that the memory starts afresh
_verified = {}  # (secret, token) -> its claims, checked once: HMAC verification is a tenth of a request's CPU


def _scrypt(password, salt, log2n):
    return hashlib.scrypt(password.encode(), salt=salt, n=2 ** log2n, r=8, p=1, dklen=32, maxmem=2 ** 26)


def hash_password(password, log2n):
    """log2n: the scrypt cost of new hashes (settings.password_hash_log2n, PASSWORD_HASH_LOG2N)."""
    salt = secrets.token_bytes(16)
    digest = tpool.execute(_scrypt, password, salt, log2n)  # ~50 ms of CPU: keep it off the event loop
    return "scrypt${}${}${}".format(log2n, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def verify_password(password, stored):
    try:
        scheme, log2n, salt, digest = stored.split("$")
    except (AttributeError, ValueError):
        return False
    if scheme != "scrypt":
        return False
    candidate = tpool.execute(_scrypt, password, base64.b64decode(salt), int(log2n))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def issue_token(secret, user_id, roles, version=0):
    """`ver` is the user's token version: raising it (password change, suspension) ends every older token."""
    now = int(time.time())
    claims = {"sub": user_id, "roles": roles, "iat": now, "exp": now + TOKEN_TTL, "jti": secrets.token_hex(8),
              "ver": version}
    return jwt.encode(claims, secret, algorithm="HS256")


def read_token(secret, header):
    """The principal {user_id, roles} of an `Authorization: Bearer` header, or None when there is none."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    claims = _verified.get((secret, token))
    if claims is None or claims["exp"] <= time.time():  # a remembered token still expires on time
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]})
        except jwt.PyJWTError:
            raise Unauthorized("invalid or expired token")
        if len(_verified) >= VERIFIED_MAX:
            _verified.clear()
        _verified[(secret, token)] = claims
    return {"user_id": claims["sub"], "roles": claims.get("roles", ["shopper"]), "claims": claims}
