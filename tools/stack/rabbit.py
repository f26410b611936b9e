"""A RabbitMQ node of the stack's own (node name, ports, data), started and stopped with Debian's scripts."""
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import kombu

from tools.stack.procs import kill_tree, start_time, tail


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
                                       f" while booting:\n{self._logtail()}")
                time.sleep(0.2)
        finally:
            if waiter.poll() is None:
                kill_tree(waiter.pid)  # su runs rabbitmqctl in a session of its own
                waiter.wait()
        if waiter.returncode != 0:
            raise RuntimeError(f"rabbitmqctl wait failed for {self.nodename}:\n{tail(wait_log)}\n"
                               f"{self._logtail()}")
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

    def _logtail(self):
        return tail(self.log_dir / "server.out") + "\n" + tail(self.log_dir / f"{self.nodename}.log")

    def is_running(self):
        wrapper_alive = self._proc is not None and self._proc.poll() is None
        return wrapper_alive or _node_pid(self.nodename, self.pidfile) is not None

    def stop(self, timeout=60):
        stop_node(self.nodename, self.pidfile, timeout)
        if self._proc is not None:
            # The su/sh wrapper and anything under it, e.g. a node stopped before it wrote its pid file.
            kill_tree(self._proc.pid)
            self._proc.wait()


def _node_pid(nodename, pidfile):
    """Pid of the live beam process of `nodename` (per its pid file), else None."""
    try:
        pid = int(Path(pidfile).read_text().strip())
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # Pids get recycled: only a process started for this node counts (the name is in its environment).
    return pid if start_time(pid) and f"RABBITMQ_NODENAME={nodename}".encode() in environ else None


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
        while start_time(pid) and time.monotonic() < deadline:
            time.sleep(0.1)



def _check_reachable_by_others(path):
    """The node runs as the rabbitmq user: every parent folder must let it through (e.g. not /root)."""
    for parent in Path(path).parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise RuntimeError(f"the rabbitmq user cannot reach {path}: {parent} is not searchable by "
                               f"others (chmod o+x {parent}, or put the stack home elsewhere)")

