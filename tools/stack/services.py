"""The services of the stack: which ones there are (`SERVICES`) and one `nameko run` process of one."""
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tools.stack.procs import REPO, ChildProcess, killpg, python, tail, write_pid

NAMEKO_CONFIG = REPO / "config" / "nameko.yaml"


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its name, the folder that goes on PYTHONPATH, and `module:Class`, what `nameko run` gets
    (a bare module would also make nameko run every service-like class the module merely imports)."""
    name: str
    pythonpath_dir: str  # relative to REPO (or absolute)
    target: str  # "pkg.service:Class"
    defaults: tuple = ()  # (variable, value) pairs the service runs with unless the environment sets them

    def __post_init__(self):
        if ":" not in self.target:
            raise ValueError(f"service {self.name}: name the class, as in 'pkg.service:Class' (got {self.target!r})")

    @property
    def path(self):
        return REPO / self.pythonpath_dir

    @property
    def module(self):
        return self.target.partition(":")[0]

    @property
    def file(self):
        return self.path / (self.module.replace(".", "/") + ".py")


SERVICES = [
    ServiceSpec("catalog", "services/catalog", "catalog.service:CatalogService"),
    ServiceSpec("orders", "services/orders", "orders.service:OrdersService"),
    ServiceSpec("social_feed", "services/social-feed", "social_feed.service:SocialFeedService"),
    ServiceSpec("commission", "services/commission", "commission.service:CommissionService"),
    # The gateway's workers wait on the other services, so it runs with more of them than the services that do the
    # work: as deploy/k8s/base/services/gateway.yaml does
    ServiceSpec("gateway", "services/gateway", "gateway.service:GatewayService", defaults=(("MAX_WORKERS", "64"),)),
]


class ServiceDied(RuntimeError):
    pass


class ServiceProcess(ChildProcess):
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
        env = {**dict(self.spec.defaults), **os.environ, **self.env,
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
        killpg(self._proc.pid, signal.SIGTERM)  # nameko stops gracefully: running workers finish

    def stop(self, timeout=15):
        super().stop(timeout)
        if self.pid_path:
            Path(self.pid_path).unlink(missing_ok=True)

    def kill(self):
        """SIGKILL at once, as in a crash: no graceful shutdown, unacked messages go back to the queue."""
        if self.is_running():
            killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def log_tail(self, lines=40):
        return tail(self.log_path, lines)

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
                                  f"last lines of {self.log_path}:\n{tail(self.log_path)}")
            try:
                if self._http.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not healthy on {self.url} after {timeout}s; "
                                   f"last lines of {self.log_path}:\n{tail(self.log_path)}")
            time.sleep(0.2)

