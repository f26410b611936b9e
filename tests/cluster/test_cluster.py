"""`make cluster`'s machinery (tools.cluster) against real servers: three RabbitMQ nodes joined into one cluster,
a three-member replica set, a service on it that rides out the loss of the MongoDB primary and of a broker node.

Starting the cluster takes a minute or more on 2 cores, so these tests are not in the default run:
    QUANZI_CLUSTER_TESTS=1 make test ARGS="tests/cluster"
The full failover under load with the invariants is `make chaos-cluster` (tools/chaos_cluster.py)."""
import os
import shutil
import time

import pytest
import requests

from tools.cluster import Cluster, list_queues, rabbitmqctl
from tools.stack import REPO, SERVICES

pytestmark = pytest.mark.skipif(not os.environ.get("QUANZI_CLUSTER_TESTS"),
                                reason="starts a 3-node cluster: QUANZI_CLUSTER_TESTS=1 to run")


@pytest.fixture(scope="module")
def cluster(request):
    home = REPO / ".stack" / f"cluster-test-{os.getpid()}"
    shutil.rmtree(home, ignore_errors=True)
    running = Cluster(home, replicas=1, specs=[s for s in SERVICES if s.name == "catalog"])
    running.start()
    yield running
    running.stop()
    if request.session.testsfailed == 0:
        shutil.rmtree(home, ignore_errors=True)


def healthy_within(proc, seconds):
    """Seconds until the service's /health says ok (raises after `seconds`)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if requests.get(proc.url + "/health", timeout=3).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{proc.name} not healthy within {seconds} s")


def answers_rpc_within(cluster, seconds):
    """Until catalog answers an RPC through the cluster's failover URL (a fresh client each try)."""
    from nameko.standalone.rpc import ClusterRpcProxy
    started = time.monotonic()
    while True:
        try:
            with ClusterRpcProxy({"AMQP_URI": cluster.amqp_uri}, timeout=5) as rpc:
                assert rpc.catalog.health()["status"] == "ok"
            return time.monotonic() - started
        except Exception:
            if time.monotonic() - started > seconds:
                raise
            time.sleep(0.5)


def test_three_broker_nodes_form_one_cluster_and_the_rpc_queue_has_a_member_on_each(cluster):
    assert sorted(cluster.rabbit.running_nodes()) == sorted(n.nodename for n in cluster.rabbit.nodes)
    queues = {q["name"]: q for q in list_queues(cluster.rabbit.nodes[1].nodename)}
    assert queues["rpc-catalog"]["type"] == "quorum"
    status = rabbitmqctl(cluster.rabbit.nodes[0].nodename, "-q", "list_queues", "name", "members")
    members = next(line for line in status.splitlines() if line.startswith("rpc-catalog"))
    assert all(node.nodename in members for node in cluster.rabbit.nodes)
    assert len(cluster.amqp_uri.split(";")) == 3 and cluster.mongo_uri.count(",") == 2


def test_the_service_rides_out_the_loss_of_the_mongodb_primary(cluster):
    (catalog,) = cluster.processes
    primary = cluster.mongo.wait_primary()
    cluster.mongo.kill(primary)
    try:
        new = cluster.mongo.wait_primary(30, not_member=primary)
        assert new is not primary
        healthy_within(catalog, 20)
        answers_rpc_within(cluster, 20)
    finally:
        cluster.mongo.restart(primary)
    cluster.mongo.wait_secondaries(60)
    assert catalog.is_running()


def test_the_service_rides_out_the_loss_of_a_broker_node_and_its_return(cluster):
    (catalog,) = cluster.processes
    node = cluster.rabbit.nodes[0]  # the first of the service's failover list: the node it is connected to
    node.kill()
    try:
        healthy_within(catalog, 20)
        answers_rpc_within(cluster, 20)  # its consumer moved to another node, the queue kept serving
        queues = {q["name"]: q for q in list_queues(cluster.rabbit.nodes[1].nodename)}
        assert queues["rpc-catalog"]["type"] == "quorum"  # still there, served by the other two members
    finally:
        node.start()
    assert len(cluster.rabbit.running_nodes()) == 3
    healthy_within(catalog, 20)
    answers_rpc_within(cluster, 20)
    assert catalog.is_running()
