"""The kit's reliability tests run against a RabbitMQ node and a replica set of their own (free ports,
under .stack/kit-<pid>): the outbox tests stop and restart that broker, which must never happen to the
shared test stack's broker, and the kit needs no Quanzi service running. Started once, on the first
test that needs them, and stopped at the end of the session (idle, they cost well under 1 % of a core);
their folder (logs) is kept when a test failed."""
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.stack import REPO, LocalMongo, LocalRabbit, free_port, owner_pid, stop_leftovers, write_pid


@dataclass
class Servers:
    rabbit: LocalRabbit
    mongo: LocalMongo
    home: Path

    @property
    def amqp_uri(self):
        return self.rabbit.uri

    @property
    def mongo_uri(self):
        return self.mongo.uri


@pytest.fixture(scope="package")
def kit_servers(request):
    for stale in (REPO / ".stack").glob("kit-*"):  # left running by a killed earlier session
        if owner_pid(stale) is None:
            stop_leftovers(stale)
    home = REPO / ".stack" / f"kit-{os.getpid()}"
    shutil.rmtree(home, ignore_errors=True)
    port = free_port()
    servers = Servers(LocalRabbit(home / "rabbit", port, free_port(), f"quanzi-kit-{port}@localhost"),
                      LocalMongo(home / "mongo", free_port()), home)
    pids = home / "pids"  # the layout tools.stack.stop_leftovers understands
    try:
        write_pid(pids / "owner.pid", os.getpid())
        (pids / "rabbit.json").write_text(json.dumps({"node": servers.rabbit.nodename,
                                                      "pidfile": str(servers.rabbit.pidfile)}))
        servers.rabbit._spawn()  # both boot side by side
        servers.mongo._spawn()
        write_pid(pids / "mongod.pid", servers.mongo.pid)
        servers.rabbit._wait_ready()
        servers.mongo._wait_ready()
        yield servers
    finally:
        servers.mongo.terminate()
        servers.rabbit.stop()
        servers.mongo.stop()
        shutil.rmtree(pids, ignore_errors=True)
        if request.session.testsfailed == 0:
            shutil.rmtree(home, ignore_errors=True)
