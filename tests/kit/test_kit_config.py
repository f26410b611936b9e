"""Settings: every variable operators and tests rely on is read from the environment, and a bad value stops
the service at start with a message naming the variable (instead of failing later, at run time)."""
import pytest

from kit.config import ConfigError, load_settings

# Each variable of the api-outline table (plus the kit's own), a value other than its default, and where
# the parsed value lands.
PARSED = [
    ("AMQP_URI", "amqp://guest:guest@10.0.0.5:5672/", "amqp_uri", "amqp://guest:guest@10.0.0.5:5672/"),
    ("MONGO_URI", "mongodb://db1:27017,db2:27017/?replicaSet=rs1", "mongo_uri",
     "mongodb://db1:27017,db2:27017/?replicaSet=rs1"),
    ("GATEWAY_PORT", "8080", "gateway_port", 8080),
    ("ADMIN_PHONE", "13912345678", "admin_phone", "13912345678"),
    ("ADMIN_PASSWORD", "a-long-admin-password", "admin_password", "a-long-admin-password"),
    ("PAYMENT_TIMEOUT", "10", "payment_timeout", 10),
    ("AUTO_CONFIRM_AFTER", "15", "auto_confirm_after", 15),
    ("AFTER_SALES_WINDOW", "8", "after_sales_window", 8),
    ("REFUND_RESPONSE_WINDOW", "12", "refund_response_window", 12),
    ("ATTRIBUTION_WINDOW", "30", "attribution_window", 30),
    ("COMMISSION_MAX_LEVELS", "2", "commission_max_levels", 2),
    ("COMMISSION_MAX_TOTAL_BP", "2500", "commission_max_total_bp", 2500),
    ("SWEEP_INTERVAL", "1", "sweep_interval", 1),
    ("EVENT_RETRY_DELAYS", "0.2,0.4,0.8", "event_retry_delays", (0.2, 0.4, 0.8)),
    ("OUTBOX_PARTITIONS", "4", "outbox_partitions", 4),
    ("JWT_SECRET", "k" * 40, "jwt_secret", "k" * 40),
    ("PAYMENT_HMAC_SECRET", "p" * 20, "payment_hmac_secret", "p" * 20),
    ("LOGIN_MAX_FAILURES", "3", "login_max_failures", 3),
    ("BLOCKED_WORDS_FILE", __file__, "blocked_words_file", __file__),
]


@pytest.mark.parametrize("variable, raw, attribute, expected", PARSED, ids=[row[0] for row in PARSED])
def test_each_variable_is_read_from_the_environment(variable, raw, attribute, expected):
    defaults = load_settings({})
    assert getattr(defaults, attribute) != expected  # the value under test is not the default
    assert getattr(load_settings({variable: raw}), attribute) == expected


def test_defaults_are_the_documented_ones():
    settings = load_settings({})
    assert (settings.payment_timeout, settings.auto_confirm_after, settings.after_sales_window,
            settings.attribution_window, settings.refund_response_window) == (1800, 604800, 604800, 604800, 172800)
    assert (settings.commission_max_levels, settings.commission_max_total_bp, settings.sweep_interval) == (1, 3000, 5)
    assert settings.gateway_port == 8000 and settings.admin_phone == "13800000000"
    assert settings.login_max_failures == 5 and settings.blocked_words_file.endswith("config/blocked_words.txt")


def test_an_empty_number_falls_back_to_the_default():
    assert load_settings({"PAYMENT_TIMEOUT": ""}).payment_timeout == 1800


BAD = [
    ("PAYMENT_TIMEOUT", "30m"),
    ("PAYMENT_TIMEOUT", "0"),
    ("AUTO_CONFIRM_AFTER", "-1"),
    ("AFTER_SALES_WINDOW", "1.5"),
    ("REFUND_RESPONSE_WINDOW", "0"),
    ("ATTRIBUTION_WINDOW", "seven days"),
    ("SWEEP_INTERVAL", "0"),
    ("GATEWAY_PORT", "http"),
    ("GATEWAY_PORT", "0"),
    ("GATEWAY_PORT", "70000"),
    ("COMMISSION_MAX_TOTAL_BP", "10001"),
    ("COMMISSION_MAX_TOTAL_BP", "-5"),
    ("OUTBOX_PARTITIONS", "0"),
    ("EVENT_RETRY_DELAYS", "1,,5"),
    ("EVENT_RETRY_DELAYS", "1,0,5"),
    ("EVENT_RETRY_DELAYS", "nan"),
    ("EVENT_RETRY_DELAYS", "1,inf"),
    ("AMQP_URI", "http://127.0.0.1:5672/"),
    ("AMQP_URI", "127.0.0.1:5672"),
    ("MONGO_URI", "postgres://127.0.0.1/db"),
    ("ADMIN_PHONE", "admin"),
    ("ADMIN_PHONE", "+86 138 0000 0000"),
    ("ADMIN_PASSWORD", ""),
    ("ADMIN_PASSWORD", "short"),
    ("JWT_SECRET", ""),
    ("JWT_SECRET", "too-short"),
    ("PAYMENT_HMAC_SECRET", ""),
    ("LOGIN_MAX_FAILURES", "0"),
    ("LOGIN_MAX_FAILURES", "five"),
    ("LOGIN_MAX_FAILURES", "1000"),
    ("BLOCKED_WORDS_FILE", "/nonexistent/blocked.txt"),
    ("BLOCKED_WORDS_FILE", "/"),
]


@pytest.mark.parametrize("variable, raw", BAD, ids=[f"{v}={r}" for v, r in BAD])
def test_a_bad_value_is_refused_naming_the_variable(variable, raw):
    with pytest.raises(ConfigError) as err:
        load_settings({variable: raw})
    assert variable in str(err.value)


@pytest.mark.parametrize("raw", ["3", "0", "10", "two"])
def test_commission_depth_beyond_two_levels_is_refused_as_a_compliance_rule(raw):
    with pytest.raises(ConfigError) as err:
        load_settings({"COMMISSION_MAX_LEVELS": raw})
    message = str(err.value)
    assert "COMMISSION_MAX_LEVELS" in message and "1 or 2 levels" in message
    assert "pyramid" in message and "C1" in message


def test_secrets_never_appear_in_a_config_error():
    # An operator reading the start-up failure must not see the secret that was almost right.
    with pytest.raises(ConfigError) as err:
        load_settings({"JWT_SECRET": "s3cr3t-but-short"})
    assert "s3cr3t-but-short" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings({"ADMIN_PASSWORD": "hunter2"})
    assert "hunter2" not in str(err.value)
