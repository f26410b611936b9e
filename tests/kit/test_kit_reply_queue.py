"""An RPC made as a process starts gets its answer (kit.amqp.ReplyListener): its reply queue exists only once the
process consumes it, and a reply sent before that was dropped by the broker, so the call waited out its whole time
budget (10 s). The gateway's first tick met this in about one start in five; the caller here starts its reply
consumer late on purpose, so without the wait it loses the race every time."""
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


def start_early_caller(amqp_uri):
    env = {"AMQP_URI": amqp_uri, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}", "PYTHONPATH": str(REPO),
           "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([sys.executable, "-m", "nameko", "run", "--config", str(REPO / "config" / "nameko.yaml"),
                             "tests.kit.early_caller:EarlyCaller"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def first_line(proc, timeout):
    deadline = time.monotonic() + timeout
    line = ""
    while not line and time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline().strip()
    return line


def test_an_rpc_made_at_start_is_answered_not_lost_with_its_reply(kit_servers, probe):
    # given a running service, when fresh processes each call it at their very start, before they consume
    callers = [start_early_caller(kit_servers.amqp_uri) for _ in range(STARTS)]
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
