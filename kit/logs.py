"""Structured JSON logs with personal data removed before anything is written.

Ids are fine in logs; phone numbers, passwords, tokens and addresses are not. The filter masks values under
sensitive keys and any mainland mobile number, bearer token or URI password that slips into a message."""
import json
import logging
import re
import time

SENSITIVE_KEYS = {"phone", "password", "token", "access_token", "authorization", "address", "secret"}
# A key is sensitive when it contains one of these (admin_password, jwt_secret, refresh_token, mobile, ...).
SENSITIVE_WORDS = ("phone", "mobile", "password", "passwd", "secret", "token", "authorization", "address",
                   "cookie")
# Mainland mobile numbers as people write them: 13812345678, +8613812345678, +86 138 1234 5678, 138-1234-5678.
PHONE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# The password in a URI's user info: amqp://user:pass@host, also in every part of a failover URL
# (a;b;c), of which nameko masks only the first when it logs a connection error.
URI_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s;]*):([^@/\s;]+)@")
# `password=...`, `token: '...'`, `"secret": "..."` written into a message as text.
KEY_VALUE = re.compile(
    r"(?i)(\b[a-z_]*(?:password|passwd|secret|token)[a-z_]*[\"']?\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&)}\]]+)")


def _sensitive(key):
    key = str(key).lower()
    return key in SENSITIVE_KEYS or any(word in key for word in SENSITIVE_WORDS)


def redact_text(text):
    text = PHONE.sub("[phone]", text)
    text = BEARER.sub("Bearer [token]", text)
    text = JWT.sub("[token]", text)
    text = URI_PASSWORD.sub(r"\1:[redacted]@", text)
    return KEY_VALUE.sub(lambda m: m.group(1) + ("[token]" if "[token]" in m.group(2) else "[redacted]"), text)


def redact(value):
    if isinstance(value, dict):
        return {k: ("[redacted]" if _sensitive(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactFilter(logging.Filter):
    def filter(self, record):
        if record.args:
            # Redact the arguments as structures first: a dict argument's sensitive keys are known here,
            # not after it was formatted into text.
            if isinstance(record.args, dict):
                record.args = redact(record.args)
            else:
                record.args = tuple(redact(a) if isinstance(a, (dict, list, tuple)) else a for a in record.args)
            record.msg = record.getMessage()
            record.args = ()
        record.msg = redact_text(str(record.msg))
        return True


class ExpectedErrorFilter(logging.Filter):
    """A worker that raised one of our deliberate errors (404, 409, bad input) is normal traffic: log it as
    one INFO line, not an ERROR with a traceback that would page someone."""

    def filter(self, record):
        if record.exc_info and record.exc_info[1] is not None:
            from kit.errors import QuanziError, Unavailable
            error = record.exc_info[1]
            if isinstance(error, (QuanziError, Unavailable)):
                # an outage is worth a line (it says what was unreachable), not a traceback
                record.levelno, record.levelname = (logging.INFO, "INFO") if isinstance(error, QuanziError) \
                    else (logging.WARNING, "WARNING")
                record.exc_info = None
                record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    converter = time.gmtime  # UTC whatever the server's local time zone

    def format(self, record):
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "event_id", "event_type", "order_id", "user_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(redact(entry), ensure_ascii=False)
