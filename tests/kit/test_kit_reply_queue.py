"""An RPC gets its answer, or fails fast, never waits out its budget for a reply the broker dropped
(kit.amqp.ReplyListener): a process's reply queue exists only while the process consumes it, at start (once its
consumer started) and after a broker restart (once it reconnected). The gateway's first tick met this in about one
start in five; the early caller here starts its reply consumer late on purpose, so without the wait it loses the
race every time."""
import time

import pytest

from tests.kit.support import PROBE, running_probe, unique
from tools.stack import ServiceProcess, ServiceSpec, free_port

pytestmark = pytest.mark.slow

STARTS = 2


@pytest.fixture(scope="module")
def probe(kit_servers):
    proc = running_probe(kit_servers, PROBE, "kitprobe-reply.log")
    yield proc
    proc.stop()


class Caller:
    """A caller of tests/kit/early_caller.py run as a service is (`nameko run`); `next_outcome` reads the next
    outcome it printed to its log."""
    PREFIX = "call: "

    def __init__(self, kit_servers, target):
        name = unique("kitcaller-")
        spec = ServiceSpec(name, ".", f"tests.kit.early_caller:{target}")
        self.proc = ServiceProcess(spec, {"AMQP_URI": kit_servers.amqp_uri}, free_port(),
                                   kit_servers.home / "logs" / f"{name}.log")
        self.proc.start()
        self._read = 0

    def next_outcome(self, timeout):
        """The next outcome printed, or "" when none came within `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            printed = [line[len(self.PREFIX):].strip() for line in self.proc.log_path.read_text().splitlines(True)
                       if line.startswith(self.PREFIX) and line.endswith("\n")]  # whole lines only
            if len(printed) > self._read:
                self._read += 1
                return printed[self._read - 1]
            time.sleep(0.05)
        return ""

    def kill(self):
        self.proc.kill()


def test_an_rpc_made_at_start_is_answered_not_lost_with_its_reply(kit_servers, probe):
    # given a running service, when fresh processes each call it at their very start, before they consume
    callers = [Caller(kit_servers, "EarlyCaller") for _ in range(STARTS)]
    try:
        answers = [caller.next_outcome(30) for caller in callers]
    finally:
        for caller in callers:
            caller.kill()
    # then each first call is answered once its reply queue is consumed: none waits out its time budget for a
    # reply the broker dropped
    assert all(line.startswith("answered in") for line in answers), answers
    assert all(float(line.split()[2]) < 2 for line in answers), answers


def test_rpcs_across_a_broker_restart_are_answered_or_fail_fast_none_waits_out_its_budget(kit_servers, probe):
    # given a process calling a service every 0.2 s, answered
    caller = Caller(kit_servers, "SteadyCaller")
    try:
        lines = [caller.next_outcome(30) for _ in range(3)]
        assert all(line.startswith("ok ") for line in lines), lines
        # when the broker restarts
        kit_servers.rabbit.stop()
        time.sleep(2)
        kit_servers.rabbit.start()
        # then the calls go on: once the caller and the service have reconnected they are answered again (one sent
        # before the service reconnected waits for it in its queue); until then each fails within the time the
        # wait and the publish retries take, and none waits out its 10 s for a reply that had nowhere to go
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(line.startswith("ok ") for line in seen[-5:]) < 5:
            seen.append(caller.next_outcome(30))
    finally:
        caller.kill()
    assert sum(line.startswith("ok ") for line in seen[-5:]) == 5, seen
    failed = [line for line in seen if line.startswith("failed")]
    assert not [line for line in failed if "TimeoutError" in line or float(line.split()[1]) >= 2], seen
