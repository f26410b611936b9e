"""Logs: structured JSON, and personal data (phone numbers, passwords, tokens, addresses) removed before
anything is written, whichever way it reached the log call. Deliberate errors are INFO, not ERROR."""
import io
import json
import logging
import os
import time
import uuid

import pytest

from kit.config import load_settings
from kit.errors import Conflict, NotFound
from kit.logs import ExpectedErrorFilter, JsonFormatter, RedactFilter, redact, redact_text

PHONE = "13812345678"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c3JfMTIzIiwiZXhwIjoxNzAwMDAwMDAwfQ."
       "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")


@pytest.fixture
def capture():
    """A logger wired exactly like config/nameko.yaml: JSON formatter, filters [expected, redact]."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ExpectedErrorFilter())
    handler.addFilter(RedactFilter())
    logger = logging.getLogger(f"kit-logs-test-{uuid.uuid4().hex[:8]}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)

    def lines():
        return [json.loads(line) for line in stream.getvalue().splitlines()]
    yield logger, lines
    logger.removeHandler(handler)


@pytest.mark.parametrize("text", [
    f"buyer {PHONE} paid",
    f"buyer +86{PHONE} paid",
    "buyer +86 138 1234 5678 paid",
    "buyer 138-1234-5678 paid",
])
def test_phone_numbers_are_masked_in_any_common_shape(text):
    out = redact_text(text)
    assert "[phone]" in out
    assert "1234" not in out and "5678" not in out


def test_ids_amounts_and_timestamps_are_left_alone():
    # Over-eager masking would make logs useless: ids and fen amounts stay readable.
    text = "order ord_3f9a2c1b paid 19900 fen at 2026-11-22T08:00:00+00:00 (trade 20261122123456789012)"
    assert redact_text(text) == text


@pytest.mark.parametrize("text", [
    f"Authorization: Bearer {JWT}",
    f"got token {JWT} from client",
    "authorization: bearer opaque-token_value.123",
])
def test_bearer_tokens_and_jwts_are_masked(text):
    out = redact_text(text)
    assert JWT not in out and "opaque-token_value" not in out and "[token]" in out


def test_passwords_in_broker_and_database_uris_are_masked_in_every_failover_part():
    # nameko logs a failover URL with only its first password masked
    text = ("Error connecting to broker at amqp://guest:********@10.0.0.1:5672/;amqp://quanzi:s3cret@10.0.0.2:5672/;"
            "amqps://quanzi:p%40ss@rabbit-2:5671/q (refused); mongodb://app:m0ngo@m-0,m-1/?replicaSet=rs0")
    masked = redact_text(text)
    assert "s3cret" not in masked and "p%40ss" not in masked and "m0ngo" not in masked
    assert "amqp://quanzi:[redacted]@10.0.0.2:5672/" in masked and "mongodb://app:[redacted]@m-0,m-1/" in masked
    assert redact_text("amqp://10.0.0.1:5672/;http://host:8000/x") == "amqp://10.0.0.1:5672/;http://host:8000/x"


def test_values_under_sensitive_keys_are_redacted_at_any_depth():
    payload = {
        "user_id": "usr_1", "phone": PHONE, "password": "hunter2-secret",
        "order": {"order_id": "ord_1", "Address": "Room 5, 1 Chaoyang Road", "total_fen": 19900},
        "headers": [{"Authorization": "Bearer abc"}],
    }
    out = redact(payload)
    assert out["user_id"] == "usr_1" and out["order"]["order_id"] == "ord_1" and out["order"]["total_fen"] == 19900
    flat = json.dumps(out)
    for secret in (PHONE, "hunter2-secret", "Chaoyang", "abc"):
        assert secret not in flat


def test_settings_dumped_into_a_log_reveal_no_secret():
    # Logging the settings at start is common; the secrets among them carry longer key names.
    settings = load_settings({"ADMIN_PASSWORD": "admin-pass-xyz", "JWT_SECRET": "j" * 40,
                              "PAYMENT_HMAC_SECRET": "h" * 20, "ADMIN_PHONE": "13900001111"})
    flat = json.dumps(redact(settings.as_dict()))
    for secret in ("admin-pass-xyz", "j" * 40, "h" * 20, "13900001111"):
        assert secret not in flat
    assert '"payment_timeout": 1800' in flat  # the rest stays readable


def test_log_arguments_are_redacted_before_they_are_formatted(capture):
    logger, lines = capture
    logger.info("login attempt %s", {"phone": PHONE, "password": "hunter2-secret", "user_id": "usr_9"})
    logger.info("login by %(phone)s with %(password)s", {"phone": PHONE, "password": "hunter2-secret"})
    logger.warning("retrying with password=hunter2-secret token: 'opaque.value'")
    messages = [line["message"] for line in lines()]
    for message in messages:
        assert PHONE not in message and "hunter2-secret" not in message and "opaque.value" not in message
    assert "usr_9" in messages[0]


@pytest.fixture
def shanghai_local_time():
    """The process runs with a non-UTC local time zone, as a server set to Beijing time would."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_json_formatter_writes_one_json_object_per_record_with_ids(capture, shanghai_local_time):
    logger, lines = capture
    logger.info("order paid", extra={"order_id": "ord_42", "user_id": "usr_7", "event_id": "evt-1"})
    [entry] = lines()
    assert entry["level"] == "INFO" and entry["message"] == "order paid" and entry["logger"] == logger.name
    assert (entry["order_id"], entry["user_id"], entry["event_id"]) == ("ord_42", "usr_7", "evt-1")
    assert entry["time"].endswith("+0000")  # UTC, like every other time in Quanzi


def test_an_unexpected_error_keeps_its_traceback_with_personal_data_removed(capture):
    logger, lines = capture
    try:
        raise RuntimeError(f"payment provider refused card of {PHONE}")
    except RuntimeError as exc:
        logger.exception("error handling worker %s: %s", "<WorkerContext [orders.pay]>", exc)
    [entry] = lines()
    assert entry["level"] == "ERROR"
    assert "Traceback" in entry["exception"] and "RuntimeError" in entry["exception"]
    assert PHONE not in json.dumps(entry)


@pytest.mark.parametrize("error", [NotFound("order not found"), Conflict("sold out")])
def test_a_deliberate_error_is_one_info_line_without_traceback(capture, error):
    logger, lines = capture
    try:
        raise error
    except Exception as exc:
        # exactly how nameko logs a worker that raised
        logger.exception("error handling worker %s: %s", "<WorkerContext [catalog.reserve]>", exc)
    [entry] = lines()
    assert entry["level"] == "INFO"
    assert "exception" not in entry and str(error) in entry["message"]
