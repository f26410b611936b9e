"""Settings from environment variables (the table in README.md, "Configuration"), validated once at start.

A bad value stops the service with a message naming the variable, instead of failing later at run time.
"""
import math
import os
import re
from pathlib import Path
from dataclasses import dataclass, fields

from nameko.extensions import DependencyProvider


class ConfigError(RuntimeError):
    pass


DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5682/"
DEFAULT_MONGO_URI = "mongodb://127.0.0.1:27027/?replicaSet=rs0"
DEFAULT_BLOCKED_WORDS = Path(__file__).resolve().parent.parent / "config" / "blocked_words.txt"
MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")  # the gateway's login accepts no other shape
ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
# scrypt cost: 2^10 is already weak; 2^15 x 128 x r(8) bytes is the most the 64 MiB maxmem of gateway.auth allows
PASSWORD_HASH_LOG2N_RANGE = (10, 15)


def _parsed(env, name, convert, what):
    """`convert(value)` of the variable, None when it is unset or empty; a ConfigError naming it if malformed."""
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return convert(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {what}")


def _int(env, name, default, minimum=None, allowed=None, maximum=None):
    value = _parsed(env, name, int, "a whole number")
    if value is None:
        return default
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{name}={value} is not allowed; use one of {sorted(allowed)}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is above the maximum {maximum}")
    return value


def _floats(env, name, default):
    raw = env.get(name)
    if not raw:
        return default
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be comma-separated seconds, e.g. 1,5,30")
    # float() also accepts "nan" and "inf", which would only fail later, when a queue TTL is computed.
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(f"{name}={raw!r}: every delay must be a positive number of seconds")
    return values


def _rate(env, name, default):
    """A positive, finite number (per second, or a burst size)."""
    value = _parsed(env, name, float, "a number")
    if value is None:
        return default
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={env[name]!r} must be a positive number")
    return value


def _origins(env, name):
    """Comma-separated origins allowed by CORS ("scheme://host[:port]", or "*"); empty: none."""
    raw = env.get(name) or ""
    origins = frozenset(part.strip() for part in raw.split(",") if part.strip())
    for origin in origins:
        if origin != "*" and not ORIGIN.match(origin):
            raise ConfigError(f"{name}: {origin!r} is not an origin such as https://shop.example.com "
                              "(scheme, host and optional port; no path, no trailing slash)")
    return origins


def _uri(env, name, default, schemes, failover=False):
    """A URI of one of `schemes`; with `failover`, also kombu's `uri1;uri2;...` (one per broker node)."""
    value = env.get(name) or default
    parts = value.split(";") if failover else [value]
    if not all(part.startswith(tuple(f"{scheme}://" for scheme in schemes)) for part in parts):
        what = f"{' or '.join(schemes)}:// URI" + (" (or several joined by ';')" if failover else "")
        raise ConfigError(f"{name} must be a {what}")  # the URI may hold a password: never repeat it
    return value


def _secret(env, name, default, min_length):
    """Unset falls back to the (documented, dev-only) default; set but empty or short is a mistake that
    would leave tokens or signatures forgeable. The message never repeats the value."""
    value = env.get(name)
    if value is None:
        return default
    if len(value) < min_length:
        raise ConfigError(f"{name} must be at least {min_length} characters long")
    return value


def _readable_file(env, name, default):
    """A path to a text file that must exist and be readable now (not at the first request that needs it)."""
    value = env.get(name) or str(default)
    try:
        with open(value, encoding="utf-8") as handle:
            handle.read(1)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}={value!r} cannot be read as a UTF-8 text file ({type(exc).__name__})")
    return value


def _phone(env, name, default):
    value = env.get(name) or default
    if not MAINLAND_MOBILE.match(value):
        raise ConfigError(f"{name}={value!r} is not a mainland mobile number (11 digits, e.g. 13800000000); "
                          "that account could never log in")
    return value


@dataclass(frozen=True)
class Settings:
    amqp_uri: str
    mongo_uri: str
    mongo_db_prefix: str
    gateway_port: int
    admin_phone: str
    admin_password: str
    jwt_secret: str
    payment_hmac_secret: str
    payment_timeout: int
    auto_confirm_after: int
    after_sales_window: int
    refund_response_window: int
    return_ship_window: int
    return_receive_window: int
    attribution_window: int
    commission_max_levels: int
    commission_max_total_bp: int
    sweep_interval: int
    event_retry_delays: tuple
    outbox_partitions: int
    password_hash_log2n: int
    cors_origins: frozenset
    rate_limit_ip_per_sec: float
    rate_limit_ip_burst: float
    rate_limit_user_per_sec: float
    rate_limit_user_burst: float
    payment_notify_url: str
    login_max_failures: int
    blocked_words_file: str
    media_max_bytes: int

    def as_dict(self):
        """Plain values (sets as sorted lists), so the settings can be logged or dumped as JSON."""
        def plain(value):
            return sorted(value) if isinstance(value, (set, frozenset)) else value
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


def load_amqp_uri(env=None):
    """AMQP_URI alone (the DLQ tool needs nothing else), validated like in load_settings."""
    env = os.environ if env is None else env
    return _uri(env, "AMQP_URI", DEFAULT_AMQP_URI, ("amqp", "amqps", "pyamqp"), failover=True)


def load_settings(env=None):
    env = os.environ if env is None else env
    levels_raw = env.get("COMMISSION_MAX_LEVELS")
    try:
        levels = _int(env, "COMMISSION_MAX_LEVELS", 1, allowed={1, 2})
    except ConfigError:
        # C1: depth is a compliance rule, not a tuning knob.
        raise ConfigError(
            f"COMMISSION_MAX_LEVELS={levels_raw!r} refused: commissions may go 1 or 2 levels deep, never more "
            "(China's anti-pyramid-selling rules, see docs/rules.md C1)"
        )
    gateway_port = _int(env, "GATEWAY_PORT", 8000, minimum=1, maximum=65535)
    total_bp = _int(env, "COMMISSION_MAX_TOTAL_BP", 3000, minimum=0)
    if total_bp > 10000:
        raise ConfigError(f"COMMISSION_MAX_TOTAL_BP={total_bp} exceeds 10000 basis points (100%)")
    return Settings(
        amqp_uri=load_amqp_uri(env),
        mongo_uri=_uri(env, "MONGO_URI", DEFAULT_MONGO_URI, ("mongodb", "mongodb+srv")),
        mongo_db_prefix=env.get("MONGO_DB_PREFIX", "quanzi_"),
        gateway_port=gateway_port,
        admin_phone=_phone(env, "ADMIN_PHONE", "13800000000"),
        admin_password=_secret(env, "ADMIN_PASSWORD", "admin-change-me", 8),  # the register rule's minimum
        jwt_secret=_secret(env, "JWT_SECRET", "dev-only-jwt-secret-change-me-0123456789", 32),  # HS256: 256 bits
        payment_hmac_secret=_secret(env, "PAYMENT_HMAC_SECRET", "dev-only-payment-secret", 16),
        payment_timeout=_int(env, "PAYMENT_TIMEOUT", 1800, minimum=1),
        auto_confirm_after=_int(env, "AUTO_CONFIRM_AFTER", 604800, minimum=1),
        after_sales_window=_int(env, "AFTER_SALES_WINDOW", 604800, minimum=1),
        # a merchant's time to answer a refund request before the timers approve it (docs/api.md, "Trust")
        refund_response_window=_int(env, "REFUND_RESPONSE_WINDOW", 172800, minimum=1),
        # a return's two waits: the buyer sends the goods back (else it closes), the merchant confirms them
        # (else they count as received and the money goes back)
        return_ship_window=_int(env, "RETURN_SHIP_WINDOW", 604800, minimum=1),
        return_receive_window=_int(env, "RETURN_RECEIVE_WINDOW", 864000, minimum=1),
        attribution_window=_int(env, "ATTRIBUTION_WINDOW", 604800, minimum=1),
        commission_max_levels=levels,
        commission_max_total_bp=total_bp,
        sweep_interval=_int(env, "SWEEP_INTERVAL", 5, minimum=1),
        event_retry_delays=_floats(env, "EVENT_RETRY_DELAYS", (1.0, 5.0, 30.0)),
        outbox_partitions=_int(env, "OUTBOX_PARTITIONS", 8, minimum=1),
        password_hash_log2n=_int(env, "PASSWORD_HASH_LOG2N", 14, minimum=PASSWORD_HASH_LOG2N_RANGE[0],
                                 maximum=PASSWORD_HASH_LOG2N_RANGE[1]),
        cors_origins=_origins(env, "CORS_ORIGINS"),
        rate_limit_ip_per_sec=_rate(env, "RATE_LIMIT_IP_PER_SEC", 200.0),
        rate_limit_ip_burst=_rate(env, "RATE_LIMIT_IP_BURST", 400.0),
        rate_limit_user_per_sec=_rate(env, "RATE_LIMIT_USER_PER_SEC", 20.0),
        rate_limit_user_burst=_rate(env, "RATE_LIMIT_USER_BURST", 60.0),
        # where the sandbox payment provider posts its notifications: the gateway's public address
        payment_notify_url=_uri(env, "PAYMENT_NOTIFY_URL",
                                f"http://127.0.0.1:{gateway_port}/api/v1/payments/notify", ("http", "https")),
        login_max_failures=_int(env, "LOGIN_MAX_FAILURES", 5, minimum=1, maximum=100),
        blocked_words_file=_readable_file(env, "BLOCKED_WORDS_FILE", DEFAULT_BLOCKED_WORDS),
        # an uploaded picture's size limit (a document holds at most 16 MiB; object storage takes over beyond)
        media_max_bytes=_int(env, "MEDIA_MAX_BYTES", 5 * 1024 * 1024, minimum=1024, maximum=15 * 1024 * 1024),
    )


class Config(DependencyProvider):
    """Injects the validated Settings; a bad value fails the container at setup, before it serves."""
    same_for_every_worker = True  # kit.workerless

    def setup(self):
        self.settings = load_settings()

    def get_dependency(self, worker_ctx):
        return self.settings
