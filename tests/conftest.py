"""Fixtures for tests against the real stack: `stack`, `api`, `rpc`, `mongo`, `kombu_listener`.

The stack (broker, database, every service, on free ports under .stack/test-<pid>) starts on first
use only: a test that requests none of these starts nothing. AMQP_URI / MONGO_URI in the environment make
it use those servers instead of starting its own. Its home is deleted after a green run and kept (its path
printed at the end) when anything failed.
"""
import os
import shutil

import pytest

from tests.helpers import Api, Listener
from tools.stack import REPO, Stack, stop_leftovers

# Short business timers so the tests see timeouts happen; each can be overridden from the environment.
TEST_ENV = {
    "PAYMENT_TIMEOUT": "10",
    "AUTO_CONFIRM_AFTER": "15",
    "AFTER_SALES_WINDOW": "8",
    # long enough for a test's merchant to answer, short enough to watch the timers approve an unanswered one
    "REFUND_RESPONSE_WINDOW": "12",
    "ATTRIBUTION_WINDOW": "30",
    "SWEEP_INTERVAL": "1",
    "EVENT_RETRY_DELAYS": "0.2,0.4,0.8",
    # Scenario tests drive hundreds of requests from one IP and one user in seconds: the shared stack's limits are
    # wide open, and the rate-limit test starts a gateway replica of its own with tight ones.
    "RATE_LIMIT_IP_PER_SEC": "100000", "RATE_LIMIT_IP_BURST": "100000",
    "RATE_LIMIT_USER_PER_SEC": "100000", "RATE_LIMIT_USER_BURST": "100000",
    "CORS_ORIGINS": "https://shop.example.com",
    "PASSWORD_HASH_LOG2N": "12",
}

_kept_home = None


def _stop_stale_test_stacks():
    """Stop what earlier test sessions left running when they were killed (their folders stay)."""
    for home in (REPO / ".stack").glob("test-*"):
        stop_leftovers(home)  # does nothing for a session that is still running


@pytest.fixture(scope="session")
def stack(request):
    global _kept_home
    _stop_stale_test_stacks()
    home = REPO / ".stack" / f"test-{os.getpid()}"
    shutil.rmtree(home, ignore_errors=True)  # a kept folder of an earlier session with the same pid
    _kept_home = home
    running = Stack(home, env={name: os.environ.get(name, value) for name, value in TEST_ENV.items()})
    running.start()  # stops what it started if anything fails; the home (logs) is kept then
    yield running
    running.stop()
    if request.session.testsfailed == 0:
        shutil.rmtree(home, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    if _kept_home is not None and _kept_home.exists():
        terminalreporter.write_line(f"Test stack kept for inspection: {_kept_home} (service logs in logs/)")


@pytest.fixture(scope="session")
def api(stack):
    client = Api(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"])
    yield client
    client.session.close()


@pytest.fixture(scope="session")
def rpc(stack):
    from nameko.standalone.rpc import ClusterRpcProxy  # imports eventlet: only when needed

    from kit.errors import register_with_nameko
    register_with_nameko()  # services' deliberate errors arrive as the same classes (Conflict, NotFound...)

    proxy = ClusterRpcProxy({"AMQP_URI": stack.amqp_uri}, timeout=30)
    yield proxy.start()
    proxy.stop()


@pytest.fixture(scope="session")
def mongo(stack):
    import pymongo

    client = pymongo.MongoClient(stack.mongo_uri)
    yield client
    client.close()


@pytest.fixture
def kombu_listener(stack):
    """kombu_listener(exchange_name, routing_keys) -> Listener, closed at the end of the test."""
    listeners = []

    def make(exchange_name, routing_keys):
        listener = Listener(stack.amqp_uri, exchange_name, routing_keys)
        listeners.append(listener)
        return listener

    yield make
    for listener in listeners:
        listener.close()
