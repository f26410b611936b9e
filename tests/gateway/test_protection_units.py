"""Account protection rules (pure): the failed-login decision, growing locks, and token revocation."""
from datetime import datetime, timedelta, timezone

from gateway import protection

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def test_attempts_within_the_allowance_check_their_password():
    assert protection.attempt_decision(1, None, NOW, 5) == (True, None, None)
    assert protection.attempt_decision(5, None, NOW, 5) == (True, None, None)


def test_the_last_allowed_failure_locks_the_phone():
    assert protection.lock_after_failure(4, 5) is None
    assert protection.lock_after_failure(5, 5) == 15


def test_attempts_beyond_the_allowance_are_refused_with_a_growing_wait_while_locked():
    locked_until = NOW + timedelta(seconds=15)
    waits = [protection.attempt_decision(n, locked_until, NOW, 5)[1] for n in range(6, 12)]
    assert waits == [30, 60, 120, 240, 480, 900]
    assert protection.attempt_decision(40, locked_until, NOW, 5) == (False, 900, 900)  # capped at the window


def test_concurrent_guesses_beyond_the_allowance_are_refused_before_any_lock_is_written():
    allowed, wait, _ = protection.attempt_decision(6, None, NOW, 5)
    assert not allowed and wait == 30


def test_after_the_lock_ran_out_one_more_attempt_may_check_its_password_and_locks_again_longer():
    assert protection.attempt_decision(7, NOW - timedelta(seconds=1), NOW, 5) == (True, None, 60)


def test_the_counter_never_holds_a_phone_number():
    key = protection.phone_key("secret-0123456789-0123456789-0123", "13812345678")
    assert "13812345678" not in key and len(key) == 64
    assert key != protection.phone_key("another-secret-0123456789-012345", "13812345678")


def test_a_token_is_revoked_by_its_jti_or_an_older_version():
    claims = {"sub": "usr_1", "jti": "abc", "ver": 2}
    assert not protection.token_revoked(claims, {}, {})
    assert protection.token_revoked(claims, {"abc": 0}, {})
    assert protection.token_revoked(claims, {}, {"usr_1": 3})
    assert not protection.token_revoked(claims, {}, {"usr_1": 2, "usr_2": 9})
    assert protection.token_revoked({"sub": "usr_1", "jti": "old"}, {}, {"usr_1": 1})  # tokens from before `ver`
