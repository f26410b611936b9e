"""`make cluster`: Quanzi on one machine the way it runs past one: a 3-node RabbitMQ cluster, a 3-member MongoDB
replica set and two replicas of every service.

- RabbitMQ: three nodes (`quanzi-cluster-<n>-<port>@localhost`, each its own AMQP and distribution port), one
  Erlang cookie (the rabbitmq user's, shared by every node on the machine), nodes 2 and 3 joined to node 1 with
  `rabbitmqctl join_cluster`. Every durable queue Quanzi declares is a quorum queue, replicated on all three.
  Erlang's schedulers do not busy-wait (`+sbwt none`): three idle nodes cost little CPU on a 2-core machine.
- MongoDB: three mongod (`--wiredTigerCacheSizeGB 0.25`) initiated once as the replica set `rs0`; a lost
  primary is replaced within seconds (electionTimeoutMillis lowered to 5 s for the local set).
- Services: two processes of each, on their own web ports; `AMQP_URI` lists the three nodes (kombu failover
  URL, each replica starting with another node) and `MONGO_URI` the three members (`retryWrites`, `w=majority`).

The services are supervised as `make run`'s are (a process that exits is restarted with backoff, and the terminal
says so). The data lives under .stack/cluster and is started afresh on every run. Ctrl-C stops it all (services, then
mongod and the broker nodes). `python -m tools.cluster --stop` stops a cluster left behind by a killed run.
Also used by `python -m tools.chaos_cluster` (failover under load) and `tests/cluster`.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymongo

from tools.run import _interrupt as interrupt
from tools.run import stop as stop_stack
from tools.run import serve, start_or_report
from tools.stack import REPO, LocalMongo, LocalRabbit, Stack, free_port, owner_pid, stop_leftovers, stop_node, write_pid
from tools.stack.procs import start_time as _start_time
from tools.stack.rabbit import _ctl_env, _node_pid, _rabbit_command

HOME = REPO / ".stack" / "cluster"
REPLICA_SET = "rs0"
NODES = 3
QUIET_ERLANG = "+sbwt none +sbwtdcpu none +sbwtdio none"  # no scheduler busy-waiting while idle


def rabbitmqctl(nodename, *args, timeout=60, check=True):
    result = subprocess.run([_rabbit_command("rabbitmqctl"), "-n", nodename, *args], env=_ctl_env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                            start_new_session=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl -n {nodename} {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


def list_queues(nodename):
    """What the broker says about every queue: [{name, type, durable, exclusive, auto_delete, messages}]."""
    out = rabbitmqctl(nodename, "-q", "list_queues", "name", "type", "durable", "exclusive", "auto_delete",
                      "messages", "--formatter", "json")
    return json.loads(out or "[]")


def is_quanzi_durable(queue):
    """A queue that outlives its consumers: durable, not exclusive, not auto-deleted."""
    return queue["durable"] and not queue["exclusive"] and not queue["auto_delete"]


class ClusterRabbit(LocalRabbit):
    """A node of the local cluster: LocalRabbit with idle-friendly Erlang flags."""

    def _env(self):
        env = super()._env()
        env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] += f" {QUIET_ERLANG}"
        return env

    def kill(self):
        """kill -9 of the node's beam process (a crash: no clean leave)."""
        pid = _node_pid(self.nodename, self.pidfile)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _start_time(pid):
                time.sleep(0.05)
        if self._proc is not None:
            self._proc.wait()


class RabbitCluster:
    def __init__(self, home, nodes=NODES):
        self.home = Path(home).resolve()
        self.nodes = []
        for n in range(1, nodes + 1):
            port = free_port()
            self.nodes.append(ClusterRabbit(self.home / f"rabbit{n}", port, free_port(),
                                            f"quanzi-cluster-{n}-{port}@localhost"))

    @property
    def uris(self):
        return [node.uri for node in self.nodes]

    def uri(self, first=0):
        """kombu failover URL over every node, starting with node `first`."""
        order = self.nodes[first:] + self.nodes[:first]
        return ";".join(node.uri for node in order)

    def spawn(self):
        for node in self.nodes:
            node._spawn()

    def wait_and_join(self, timeout=90):
        for node in self.nodes:
            node._wait_ready(timeout)
        seed = self.nodes[0].nodename
        for node in self.nodes[1:]:
            rabbitmqctl(node.nodename, "stop_app")
            rabbitmqctl(node.nodename, "join_cluster", seed)
            rabbitmqctl(node.nodename, "start_app")
        running = self.running_nodes()
        if len(running) != len(self.nodes):
            raise RuntimeError(f"RabbitMQ cluster has {running}, expected {len(self.nodes)} nodes")

    def running_nodes(self, via=None):
        via = via or next(n for n in self.nodes if n.is_running())
        status = json.loads(rabbitmqctl(via.nodename, "-q", "cluster_status", "--formatter", "json"))
        return status.get("running_nodes", [])

    def stop(self):
        for node in reversed(self.nodes):
            node.stop()


class ReplicaSet:
    """Three mongod of one replica set, initiated once with three members."""

    def __init__(self, home, members=NODES):
        self.home = Path(home).resolve()
        self.members = [LocalMongo(self.home / f"mongo{n}", free_port()) for n in range(1, members + 1)]
        hosts = ",".join(f"127.0.0.1:{m.port}" for m in self.members)
        self.uri = f"mongodb://{hosts}/?replicaSet={REPLICA_SET}&retryWrites=true&w=majority"

    def spawn(self):
        for member in self.members:
            member._spawn()

    def _direct(self, member):
        return pymongo.MongoClient(f"mongodb://127.0.0.1:{member.port}/?directConnection=true",
                                   serverSelectionTimeoutMS=1000)

    def wait_and_initiate(self, timeout=90):
        deadline = time.monotonic() + timeout
        for member in self.members:
            with self._direct(member) as client:
                _until(deadline, lambda: client.admin.command("ping"), member)
        with self._direct(self.members[0]) as client:
            client.admin.command("replSetInitiate", {
                "_id": REPLICA_SET,
                "members": [{"_id": i, "host": f"127.0.0.1:{m.port}"} for i, m in enumerate(self.members)],
                "settings": {"electionTimeoutMillis": 5000},
            })
        self.wait_primary(deadline - time.monotonic())

    def primary(self):
        """The member that is primary now (asked from each member), or None."""
        for member in self.members:
            if not member.is_running():
                continue
            try:
                with self._direct(member) as client:
                    if client.admin.command("hello").get("isWritablePrimary"):
                        return member
            except pymongo.errors.PyMongoError:
                continue
        return None

    def wait_primary(self, timeout=60, not_member=None):
        deadline = time.monotonic() + timeout
        while True:
            member = self.primary()
            if member is not None and member is not not_member:
                return member
            if time.monotonic() > deadline:
                raise TimeoutError(f"no primary in replica set {REPLICA_SET} after {timeout:.0f} s")
            time.sleep(0.2)

    def wait_secondaries(self, timeout=60):
        """Until every running member is primary or secondary (a restarted one has caught up)."""
        deadline = time.monotonic() + timeout
        with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000) as client:
            while True:
                states = [m["stateStr"] for m in client.admin.command("replSetGetStatus")["members"]]
                if all(s in ("PRIMARY", "SECONDARY") for s in states):
                    return states
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica set members: {states}")
                time.sleep(0.5)

    def kill(self, member):
        """kill -9 of one member (LocalMongo.kill: SIGKILL, a crash without a clean shutdown)."""
        member.kill()

    def restart(self, member, timeout=60):
        """Start a killed member again on its data; it rejoins the set and catches up as a secondary."""
        member._spawn()
        with self._direct(member) as client:
            _until(time.monotonic() + timeout, lambda: client.admin.command("ping"), member)

    def stop(self):
        for member in self.members:
            member.terminate()
        for member in self.members:
            member.stop()


def _until(deadline, fn, what):
    while True:
        try:
            return fn()
        except pymongo.errors.PyMongoError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer")
            time.sleep(0.2)


class Cluster:
    """Broker cluster + replica set + `replicas` processes of every service."""

    def __init__(self, home=HOME, *, replicas=2, env=None, specs=None):
        self.home = Path(home).resolve()
        self.rabbit = RabbitCluster(self.home / "rabbit")
        self.mongo = ReplicaSet(self.home / "mongo")
        self.replica_count = replicas
        self.amqp_uri = self.rabbit.uri()
        self.mongo_uri = self.mongo.uri
        self.stack = Stack(self.home / "services", amqp_uri=self.amqp_uri, mongo_uri=self.mongo_uri, env=env,
                           specs=specs)
        self.pids_dir = self.stack.pids_dir

    @property
    def services(self):
        return self.stack.services

    @property
    def processes(self):
        return self.stack._all_processes()

    @property
    def gateway_urls(self):
        return [p.url for p in self.processes if p.name == "gateway"]

    def start(self, timeout=120):
        try:
            write_pid(self.pids_dir / "owner.pid", os.getpid())
            (self.pids_dir / "rabbit-nodes.json").write_text(json.dumps(
                [{"node": n.nodename, "pidfile": str(n.pidfile)} for n in self.rabbit.nodes]))
            self.rabbit.spawn()
            self.mongo.spawn()
            for n, member in enumerate(self.mongo.members, 1):
                write_pid(self.pids_dir / f"mongod{n}.pid", member.pid)
            self.rabbit.wait_and_join(timeout)
            self.mongo.wait_and_initiate(timeout)
            for proc in self.stack.services.values():
                proc.start()
            self.stack.wait_healthy(timeout)
            for n in range(1, self.replica_count):
                for name in list(self.stack.services):
                    # each further replica starts its failover list with another broker node
                    self.stack.add_replica(name, {"AMQP_URI": self.rabbit.uri(n % len(self.rabbit.nodes))})
        except BaseException:
            self.stop()
            raise

    def stop(self):
        self.stack.stop()  # the services (it started no servers of its own); removes the pid files
        for member in self.mongo.members:
            member.terminate()
        self.rabbit.stop()
        self.mongo.stop()


def stop_cluster_leftovers(home=HOME):
    """Stop what a killed `make cluster` left running (services, mongods, broker nodes)."""
    pids = Path(home) / "services" / "pids"
    nodes_file = pids / "rabbit-nodes.json"
    nodes = json.loads(nodes_file.read_text()) if nodes_file.exists() else []
    left = stop_leftovers(Path(home) / "services")  # services and mongod*.pid (all but owner)
    for node in nodes:
        stop_node(node["node"], node["pidfile"])
    return left


def run():
    pid = owner_pid(HOME / "services")
    if pid is not None:
        print(f"A cluster is already running from {HOME} (pid {pid}); `python -m tools.cluster --stop` stops it.",
              file=sys.stderr)
        return 1
    stop_cluster_leftovers(HOME)
    shutil.rmtree(HOME, ignore_errors=True)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    cluster = Cluster(HOME)
    started = time.monotonic()
    print(f"starting a 3-node RabbitMQ cluster, a 3-member replica set and 2 replicas of each service under {HOME}"
          " ...", flush=True)
    failed = start_or_report(cluster.start, "cluster")
    if failed is not None:
        return failed
    print(f"Quanzi gateways: {' '.join(cluster.gateway_urls)}")
    print(f"AMQP_URI={cluster.amqp_uri}")
    print(f"MONGO_URI={cluster.mongo_uri}")
    for node in cluster.rabbit.nodes:
        print(f"  rabbit   {node.nodename:<40} amqp 127.0.0.1:{node.port}  log: {node.log_dir}")
    for member in cluster.mongo.members:
        print(f"  mongod   127.0.0.1:{member.port:<34} log: {member.log_path}")
    for proc in cluster.processes:
        print(f"  {proc.name:<12} {proc.url}  log: {proc.log_path}")
    print(f"Started in {time.monotonic() - started:.1f} s. Ctrl-C stops it.", flush=True)
    return serve(cluster.stack, cluster.stop)

def stop():
    return stop_stack(HOME / "services", lambda _: stop_cluster_leftovers(HOME), "`make cluster`")

if __name__ == "__main__":
    sys.exit(stop() if "--stop" in sys.argv[1:] else run())
