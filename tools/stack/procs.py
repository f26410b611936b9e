"""Processes a stack spawns: free ports, log tails, pid files that survive a killed owner, and the one stop
sequence (SIGTERM once, wait, kill) shared by mongod and the services."""
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def python():
    """The interpreter services run with: the repo's .venv when there is one."""
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


# Listening ports come from below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
# default): a port the kernel handed out as free can be taken again as the local end of any outbound connection
# (a client, another stack) in the seconds before a slow starter such as RabbitMQ binds it (eaddrinuse).
LISTEN_PORTS = range(20000, 32000)
_handed_out = set()  # never the same port twice from one process (two asked before either is bound)


def free_port():
    for _ in range(200):
        port = random.choice(LISTEN_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS.start}-{LISTEN_PORTS.stop - 1}")


def tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- pid files: "<pid> <start time>" identifies one process for good (pids get recycled) -------------

def start_time(pid):
    """Start time of a live (non-zombie) process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # fields[19] is field 22, starttime


def write_pid(path, pid):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {start_time(pid)}\n")


def read_pid(path):
    """The pid recorded in `path` if that very process is still alive, else None."""
    try:
        pid, started = Path(path).read_text().split()
    except (OSError, ValueError):
        return None
    return int(pid) if start_time(int(pid)) == started else None


def stop_recorded(path, timeout=15):
    """SIGTERM the process group recorded in `path`, SIGKILL it if still alive after `timeout`."""
    pid = read_pid(path)
    if pid is not None:
        killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while read_pid(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        if read_pid(path):
            killpg(pid, signal.SIGKILL)
    Path(path).unlink(missing_ok=True)


def kill_tree(pid):
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



class ChildProcess:
    """A server or service this stack spawned: SIGTERM once (a second one breaks off a clean shutdown), wait,
    then kill. Subclasses say how to signal (`_send_term`) and how to kill."""
    _proc = None
    _terminated = None  # pid already sent SIGTERM

    def is_running(self):
        return self._proc is not None and self._proc.poll() is None

    @property
    def expected_exit(self):
        """True when not started, or when this stack asked the current process to stop (not a crash)."""
        return self._proc is None or self._proc.pid == self._terminated

    def terminate(self):
        """SIGTERM, once, without waiting for the exit (stop waits)."""
        if self.is_running() and self._proc.pid != self._terminated:
            self._terminated = self._proc.pid
            self._send_term()

    def stop(self, timeout=30):
        if self._proc is None:
            return
        self.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

