"""The payment notification's signature: the (sandbox) provider signs the raw body, the gateway verifies it."""
import hashlib
import hmac

SIGNATURE_HEADER = "X-Quanzi-Signature"


def sign(body, secret):
    """HMAC-SHA256 over the raw body bytes, hex."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(body, signature, secret):
    return bool(signature) and hmac.compare_digest(sign(body, secret), signature.strip().lower())
