"""One local Quanzi stack: a RabbitMQ node, a single-node MongoDB replica set and the nameko services.

Used by `make run` (tools/run.py: fixed dev ports, data kept under .stack/dev) and by the tests
(tests/conftest.py: free ports, a fresh home per session). Every stack has its own ports, Erlang node name
and data folder, so several stacks (a developer's `make run`, concurrent `make test`s) share one machine.

Each server and service runs in a process group of its own, so a Ctrl-C in the terminal reaches only the
owner (tools.run or pytest), which then stops everything in order: services first, then mongod and the
broker. The owner records pid files under <home>/pids so what a killed owner left behind can be stopped
later (`make stop`, `stop_leftovers`); a pid is only signalled if its process start time still matches,
so a recycled pid never hits someone else's process.

The package: procs.py (pid files, the stop sequence), rabbit.py, mongo.py, services.py (SERVICES, one `nameko run`
process), supervisor.py (restart what exits, give up on a crash loop), and here the Stack that owns them all,
with the faults tools/chaos.py injects (restart_broker, kill_mongo/start_mongo).
"""
import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path

from tools.stack.mongo import LocalMongo, mongod_path
from tools.stack.procs import REPO, free_port, python, read_pid, stop_recorded, write_pid
from tools.stack.rabbit import LocalRabbit, stop_node
from tools.stack.services import NAMEKO_CONFIG, SERVICES, ServiceDied, ServiceProcess, ServiceSpec
from tools.stack.supervisor import Supervisor

__all__ = ["REPO", "NAMEKO_CONFIG", "SERVICES", "LocalMongo", "LocalRabbit", "ServiceDied", "ServiceProcess",
           "ServiceSpec", "Stack", "Supervisor", "free_port", "mongod_path", "owner_pid", "python", "read_pid",
           "stop_leftovers", "stop_node", "write_pid"]

# Dev (`make run`) ports; the tests always take free ports.
DEV_AMQP_PORT, DEV_DIST_PORT, DEV_MONGO_PORT = 5682, 25682, 27027
DEV_WEB_PORTS = {"catalog": 8101, "orders": 8102, "social_feed": 8103, "commission": 8104}
DEFAULT_GATEWAY_PORT = 8000


class Stack:
    """Broker + database (unless given, or AMQP_URI / MONGO_URI are set) + the services."""

    def __init__(self, home, *, amqp_uri=None, mongo_uri=None, gateway_port=None, env=None,
                 fixed_ports=False, specs=None, config=NAMEKO_CONFIG):
        self.home = Path(home).resolve()
        self.logs_dir = self.home / "logs"
        self.pids_dir = self.home / "pids"
        self.config = config

        amqp_uri = amqp_uri or os.environ.get("AMQP_URI")
        self.rabbit = None
        if not amqp_uri:
            port, dist = (DEV_AMQP_PORT, DEV_DIST_PORT) if fixed_ports else (free_port(), free_port())
            node = "quanzi-dev@localhost" if fixed_ports else f"quanzi-test-{port}@localhost"
            self.rabbit = LocalRabbit(self.home / "rabbit", port, dist, node)
            amqp_uri = self.rabbit.uri
        mongo_uri = mongo_uri or os.environ.get("MONGO_URI")
        self.mongo = None
        if not mongo_uri:
            self.mongo = LocalMongo(self.home / "mongo", DEV_MONGO_PORT if fixed_ports else free_port())
            mongo_uri = self.mongo.uri
        self.amqp_uri, self.mongo_uri = amqp_uri, mongo_uri

        if fixed_ports:
            gateway_port = gateway_port or int(os.environ.get("GATEWAY_PORT", DEFAULT_GATEWAY_PORT))
        self.gateway_port = gateway_port or free_port()
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"

        stored = self._secrets()
        self.env = {
            "AMQP_URI": amqp_uri,
            "MONGO_URI": mongo_uri,
            "GATEWAY_PORT": str(self.gateway_port),
            "JWT_SECRET": os.environ.get("JWT_SECRET") or stored["JWT_SECRET"],
            "PAYMENT_HMAC_SECRET": os.environ.get("PAYMENT_HMAC_SECRET") or stored["PAYMENT_HMAC_SECRET"],
            "ADMIN_PHONE": os.environ.get("ADMIN_PHONE", "13800000000"),
            "ADMIN_PASSWORD": os.environ.get("ADMIN_PASSWORD", "admin-change-me"),
            **(env or {}),
        }

        self.services = {}
        for spec in (SERVICES if specs is None else specs):
            if spec.name == "gateway":
                port = self.gateway_port
            else:
                port = DEV_WEB_PORTS.get(spec.name) if fixed_ports else None
            self.services[spec.name] = ServiceProcess(
                spec, self.env, port or free_port(), self.logs_dir / f"{spec.name}.log",
                config=config, pid_path=self.pids_dir / f"{spec.name}.pid")
        self.replicas = []
        self.supervisor = None

    def _secrets(self):
        """Generated once per home, so tokens stay valid across `make run` restarts."""
        path = self.home / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        values = {"JWT_SECRET": secrets.token_hex(32), "PAYMENT_HMAC_SECRET": secrets.token_hex(32)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(values))
        return values

    def _all_processes(self):
        return [*self.services.values(), *self.replicas]

    def start(self, timeout=90):
        """Start everything; on any failure (or Ctrl-C) stop what was started and re-raise."""
        self._check_ports_free()  # before the try: a refused start must not touch the running stack
        try:
            write_pid(self.pids_dir / "owner.pid", os.getpid())
            # Boot broker and database side by side (about 7 s and 2 s), then the services side by side.
            if self.rabbit:
                (self.pids_dir / "rabbit.json").write_text(
                    json.dumps({"node": self.rabbit.nodename, "pidfile": str(self.rabbit.pidfile)}))
                self.rabbit._spawn()
            if self.mongo:
                self.mongo._spawn()
                write_pid(self.pids_dir / "mongod.pid", self.mongo.pid)
            if self.rabbit:
                self.rabbit._wait_ready(timeout)
            if self.mongo:
                self.mongo._wait_ready(timeout)
            for proc in self.services.values():
                proc.start()
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _check_ports_free(self):
        """Say plainly when a port is taken (another `make run`, from another clone, say)."""
        ports = [proc.web_port for proc in self.services.values()]
        if self.rabbit:
            ports += [self.rabbit.port, self.rabbit.dist_port]
        if self.mongo:
            ports.append(self.mongo.port)
        for port in ports:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    raise RuntimeError(f"port {port} is already in use on 127.0.0.1 (another stack running?)")

    def wait_healthy(self, timeout=60):
        deadline = time.monotonic() + timeout
        for proc in self._all_processes():
            proc.wait_healthy(max(1.0, deadline - time.monotonic()))

    def add_replica(self, name, env_overrides=None):
        """Another process of service `name` on a new port (healthy when returned)."""
        spec = self.services[name].spec
        n = 2 + sum(1 for r in self.replicas if r.name == name)
        proc = ServiceProcess(spec, {**self.env, **(env_overrides or {})}, free_port(),
                              self.logs_dir / f"{name}-{n}.log", config=self.config,
                              pid_path=self.pids_dir / f"{name}-{n}.pid")
        self.replicas.append(proc)
        proc.start()
        proc.wait_healthy()
        return proc

    def restart_service(self, name, env_overrides=None):
        proc = self.services[name]
        proc.restart(env_overrides)
        proc.wait_healthy()
        return proc

    def supervise(self, say=print, **options):
        """Restart services (and replicas) that exit, with backoff; see tools/stack/supervisor.py."""
        self.supervisor = Supervisor(_AllProcesses(self), say=say, **options).start()
        return self.supervisor

    # --- faults (tools/chaos.py, the resilience tests): same ports, same data ---------------------------------
    def restart_broker(self, down_seconds=0.0):
        """Stop the RabbitMQ node (rabbitmqctl stop), keep it down `down_seconds`, start it again."""
        self.rabbit.stop()
        time.sleep(down_seconds)
        self.rabbit.start()

    def kill_mongo(self):
        """SIGKILL mongod, as a crash: no clean shutdown (the journal recovers what was acknowledged)."""
        self.mongo.kill()

    def start_mongo(self, timeout=60):
        self.mongo.start(timeout)
        write_pid(self.pids_dir / "mongod.pid", self.mongo.pid)

    def stop(self):
        """Services first (all signalled at once), then mongod and the broker."""
        if self.supervisor is not None:
            self.supervisor.stop()
        processes = self._all_processes()
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.stop()
        if self.mongo:
            self.mongo.terminate()  # shuts down while rabbitmqctl stops the node
        if self.rabbit:
            self.rabbit.stop()
        if self.mongo:
            self.mongo.stop()
        shutil.rmtree(self.pids_dir, ignore_errors=True)


class _AllProcesses:
    """The stack's service processes and replicas, as they are when iterated (replicas come and go)."""

    def __init__(self, stack):
        self.stack = stack

    def __iter__(self):
        return iter(self.stack._all_processes())


def owner_pid(home):
    """Pid of the live process that started the stack under `home` (tools.run, pytest), else None."""
    return read_pid(Path(home) / "pids" / "owner.pid")


def stop_leftovers(home):
    """Stop whatever a stack under `home` left running after its owner died (e.g. killed with -9).

    Does nothing while the owner lives (it stops its own stack) or when it stopped cleanly (no pid files
    then); returns whether there was anything to stop.
    """
    pids = Path(home) / "pids"
    if not (pids / "owner.pid").exists() or owner_pid(home) is not None:
        return False
    for path in sorted(pids.glob("*.pid")):
        if path.stem not in ("owner", "mongod"):
            stop_recorded(path)
    stop_recorded(pids / "mongod.pid", timeout=30)
    rabbit = pids / "rabbit.json"
    if rabbit.exists():
        node = json.loads(rabbit.read_text())
        stop_node(node["node"], node["pidfile"])
    shutil.rmtree(pids, ignore_errors=True)
    return True
