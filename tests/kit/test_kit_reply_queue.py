"""An RPC gets its answer, or fails fast, never waits out its budget for a reply the broker dropped
(kit.amqp.ReplyListener): a process's reply queue exists only while the process consumes it, at start (once its
consumer started) and after a broker restart (once it reconnected). The gateway's first tick met this in about one
start in five; the early caller here starts its reply consumer late on purpose, so without the wait it loses the
race every time."""
import subprocess
import sys
import time

import pytest

from tests.kit.test_kit_consumer import SPEC
from tools.stack import REPO, ServiceProcess, free_port

pytestmark = pytest.mark.slow

STARTS = 2


@pytest.fixture(scope="module")
def probe(kit_servers):
    env = {"AMQP_URI": kit_servers.amqp_uri, "MONGO_URI": kit_servers.mongo_uri}
    proc = ServiceProcess(SPEC, env, free_port(), kit_servers.home / "logs" / "kitprobe-reply.log")
    proc.start()
    proc.wait_healthy(60)
    yield proc
    proc.stop()


def start_caller(amqp_uri, target="EarlyCaller"):
    env = {"AMQP_URI": amqp_uri, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}", "PYTHONPATH": str(REPO),
           "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([sys.executable, "-m", "nameko", "run", "--config", str(REPO / "config" / "nameko.yaml"),
                             f"tests.kit.early_caller:{target}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def first_line(proc, timeout):
    deadline = time.monotonic() + timeout
    line = ""
    while not line and time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline().strip()
    return line


def test_an_rpc_made_at_start_is_answered_not_lost_with_its_reply(kit_servers, probe):
    # given a running service, when fresh processes each call it at their very start, before they consume
    callers = [start_caller(kit_servers.amqp_uri) for _ in range(STARTS)]
    try:
        answers = [first_line(proc, 30) for proc in callers]
    finally:
        for proc in callers:
            proc.kill()
            proc.wait()
    # then each first call is answered once its reply queue is consumed: none waits out its time budget for a
    # reply the broker dropped
    assert all(line.startswith("answered in") for line in answers), answers
    assert all(float(line.split()[2]) < 2 for line in answers), answers


def test_rpcs_across_a_broker_restart_are_answered_or_fail_fast_none_waits_out_its_budget(kit_servers, probe):
    # given a process calling a service every 0.2 s, answered
    caller = start_caller(kit_servers.amqp_uri, "SteadyCaller")
    try:
        lines = [first_line(caller, 30) for _ in range(3)]
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
            seen.append(first_line(caller, 30))
    finally:
        caller.kill()
        caller.wait()
    assert sum(line.startswith("ok ") for line in seen[-5:]) == 5, seen
    failed = [line for line in seen if line.startswith("failed")]
    assert not [line for line in failed if "TimeoutError" in line or float(line.split()[1]) >= 2], seen
