"""Supervision of the service processes a stack started, as Kubernetes would do it for a pod.

A service process that exits (a crash, kill -9, an exit status of its own) is started again after a backoff that
doubles with every exit in the window, and the terminal says so: `orders exited (1), restarting in 2 s`. A crash
loop (`crash_limit` exits within `window` seconds) is reported loudly and the supervisor gives up on that service
(restarting it forever would hide the bug). A process the stack stops on purpose is not restarted.
"""
import threading
import time
from collections import deque


class Supervisor:
    def __init__(self, processes, *, say=print, backoff=(1, 2, 4, 8, 16), crash_limit=5, window=60.0,
                 interval=0.5, clock=time.monotonic):
        self.processes = processes  # a list or a dict's values() view: replicas added later are supervised too
        self.say = say
        self.backoff, self.crash_limit, self.window = tuple(backoff), crash_limit, window
        self.interval, self.clock = interval, clock
        self.exits = {}  # process -> deque of exit times within the window
        self.pending = {}  # process -> when to start it again
        self.given_up = set()
        self.restarts = []  # (name, exit status) of every restart, for tools and tests
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # never let supervision die quietly
                self.say(f"!! supervisor: {type(exc).__name__}: {exc}")

    def check(self):
        """One round: notice exits, start what is due. Returns nothing; `say` tells what happened."""
        with self._lock:
            now = self.clock()
            for proc in list(self.processes):
                if proc in self.given_up or proc.is_running() or proc.expected_exit:
                    continue
                if proc in self.pending:
                    if now >= self.pending[proc]:
                        del self.pending[proc]
                        self._restart(proc)
                    continue
                self._exited(proc, now)

    def _exited(self, proc, now):
        exits = self.exits.setdefault(proc, deque())
        exits.append(now)
        while exits and exits[0] < now - self.window:
            exits.popleft()
        status = proc.returncode
        if len(exits) >= self.crash_limit:
            self.given_up.add(proc)
            self.say(f"!! {proc.name} is crash-looping: exited ({status}) {len(exits)} times within "
                     f"{self.window:g} s; giving up on it. Last lines of {proc.log_path}:\n{proc.log_tail(15)}")
            return
        delay = self.backoff[min(len(exits), len(self.backoff)) - 1]
        self.say(f"{proc.name} exited ({status}), restarting in {delay:g} s")
        self.pending[proc] = now + delay
        self.restarts.append((proc.name, status))

    def _restart(self, proc):
        try:
            proc.start()
        except Exception as exc:
            self.say(f"!! {proc.name} could not be started again: {type(exc).__name__}: {exc}")
            return
        self.say(f"{proc.name} restarted (pid {proc.pid})")
