"""Fixtures of the orders tests."""
import pytest


@pytest.fixture
def crashing_orders(stack):
    """Runs the orders service with a crash point; the test restarts it normally, and so does the teardown."""
    def arm(point):
        stack.restart_service("orders", {"ORDERS_CRASH_AT": point})
    yield arm
    if stack.services["orders"].env.get("ORDERS_CRASH_AT") or not stack.services["orders"].is_running():
        stack.restart_service("orders")


@pytest.fixture(scope="module")
def patient_orders(stack):
    """The orders service with a payment timeout of 10 minutes for a module whose orders must stay unpaid and
    uncancelled while it looks at them (the test stack's 10 s is too tight on a busy 2-core machine), then as it
    was."""
    stack.restart_service("orders", {"PAYMENT_TIMEOUT": "600"})
    yield
    stack.restart_service("orders")
