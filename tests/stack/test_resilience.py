"""The stack under load while its broker or its database goes away, and the short `make chaos` (tools/chaos.py).

These break the broker and mongod, so they run on a stack of their own (not the session's: its standalone RPC
proxy and listeners would not survive a broker restart), supervised as `make run` is.
"""
import os
import shutil
import time

import pytest
import requests

from tools import chaos
from tools.stack import REPO, Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chaos_stack(request):
    home = REPO / ".stack" / f"resilience-{os.getpid()}"
    shutil.rmtree(home, ignore_errors=True)
    stack = Stack(home, env={**chaos.CHAOS_ENV, "LOG_LEVEL": "INFO"})
    stack.start()
    said = []
    stack.supervise(say=said.append)
    stack.said = said
    yield stack
    stack.stop()
    if request.session.testsfailed == 0:
        shutil.rmtree(home, ignore_errors=True)


def pids(stack):
    return {name: proc.pid for name, proc in stack.services.items()}


def readiness(proc):
    try:
        return requests.get(proc.url + "/health", timeout=5).json()
    except requests.RequestException as exc:
        return {"status": type(exc).__name__}


def assert_nothing_lost(report):
    assert report["paid"] > 0, "the load did not run"
    assert report["lost_orders"] == report["lost_payments"] == 0
    assert report["stock_drift"] == 0
    assert report["commission_drift"] == report["commission_missing"] == 0
    assert report["paid_event_missing"] == report["paid_event_twice"] == 0
    assert 500 not in report["errors_during"] and not report["errors_after"], report


def under_load(stack, break_it, mend_it, watched):
    """Shoppers buy for 3 s, then break_it(); a second later `watched`'s readiness is read, then mend_it(); the
    shoppers keep buying until QUIET_AFTER s after every service is healthy again. Returns (report, readiness
    while broken, seconds to healthy)."""
    load = chaos.Load(stack, threads=4).start()
    time.sleep(3)
    break_it()
    time.sleep(1)
    down = readiness(stack.services[watched])
    mend_it()
    healthy_in = chaos.wait_all_healthy(stack, timeout=30)
    last_fault = time.monotonic()
    time.sleep(chaos.QUIET_AFTER + 1)
    report = load.finish(last_fault)
    print(f"healthy {healthy_in:.1f} s after the repair\n{chaos.render(report)}")
    return report, down, healthy_in


def test_a_broker_restart_under_load_kills_no_service_and_loses_nothing(chaos_stack):
    # given shoppers buying through a share link, when RabbitMQ is down for a second, then back
    before = pids(chaos_stack)
    report, down, _ = under_load(chaos_stack, chaos_stack.rabbit.stop, chaos_stack.rabbit.start, "orders")
    # then no service process exited, readiness said so while it was down, and nothing was lost or doubled
    assert pids(chaos_stack) == before and chaos_stack.supervisor.restarts == []
    assert down["status"] != "ok" and down["checks"]["broker"].startswith("down")
    assert_nothing_lost(report)


def test_mongod_killed_and_restarted_under_load_kills_no_service_and_loses_nothing(chaos_stack):
    before = pids(chaos_stack)
    report, down, _ = under_load(chaos_stack, chaos_stack.kill_mongo, chaos_stack.start_mongo, "catalog")
    assert pids(chaos_stack) == before and chaos_stack.supervisor.restarts == []
    assert down["status"] != "ok" and down["checks"]["mongo"].startswith("down")
    assert_nothing_lost(report)


def test_short_chaos_run_keeps_every_invariant(chaos_stack):
    """The six faults of `make chaos`, closer together: kill -9 of four services (the supervisor restarts them),
    a broker restart, kill -9 of mongod and its restart."""
    report = chaos.run(chaos_stack, seconds=25, threads=4, say=print)
    print(chaos.render(report))
    assert [f["fault"] for f in report["faults"]] == [name for name, _ in chaos.faults(chaos_stack)]
    assert sorted(name for name, _ in chaos_stack.supervisor.restarts) == ["catalog", "commission", "gateway",
                                                                            "orders"]
    assert any(line.startswith("orders exited (-9), restarting in") for line in chaos_stack.said)
    assert chaos.violations(report) == []
