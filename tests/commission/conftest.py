"""Fixtures of the commission tests: publish producer-shaped events and read the service's answers."""
import pytest

from tests.commission.bus import Bus, consumed
from tests.helpers import eventually


@pytest.fixture(scope="session")
def bus(stack):
    publisher = Bus(stack.amqp_uri)
    yield publisher
    publisher.close()


def subject_of(data):
    for key in ("order_id", "group_id", "share_code", "user_id"):
        if data.get(key):
            return data[key]
    return None


@pytest.fixture
def send(bus, mongo):
    """send((type, data), ...): publish the events and wait until the commission service applied each one.
    Returns their envelopes. wait=False publishes only."""
    def send(*events, wait=True, timeout=20):
        envelopes = [bus.publish(event_type, data, subject=subject_of(data)) for event_type, data in events]
        if wait:
            wait_consumed(mongo, envelopes, timeout)
        return envelopes
    return send


def wait_consumed(mongo, envelopes, timeout=20):
    def all_applied():
        missing = [e["type"] for e in envelopes if not consumed(mongo, e)]
        assert not missing, f"not applied yet: {missing}"
    eventually(all_applied, timeout=timeout, interval=0.05)


@pytest.fixture
def books(rpc):
    """Read a user's balances and ledger through the service's RPCs."""
    class Books:
        @staticmethod
        def summary(user_id):
            return rpc.commission.summary(user_id)

        @staticmethod
        def ledger(user_id):
            return rpc.commission.ledger(user_id, {"limit": 100})["items"]

        @staticmethod
        def kinds(user_id):
            """[(kind, level, amount_fen)], in lifecycle order of kinds (entries of one transaction share a time)."""
            return sorted(((e["kind"], e["level"], e["amount_fen"]) for e in Books.ledger(user_id)),
                          key=lambda row: ["accrual", "reversal", "freeze", "settle", "withdrawal",
                                           "withdrawal_paid", "withdrawal_returned"].index(row[0]))

        @staticmethod
        def wait_summary(user_id, timeout=20, **expected):
            def check():
                current = rpc.commission.summary(user_id)
                assert {k: current[k] for k in expected} == expected, current
                return current
            return eventually(check, timeout=timeout, interval=0.1)
    return Books()
