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
