"""The local-stack tooling against real servers: a private broker and replica set on free ports, and a
throwaway nameko service run the way the real ones are (ServiceProcess, Stack)."""
import json
import os
import shutil
import socket
import textwrap
import time

import kombu
import pymongo
import pytest
import requests

from tests.helpers import Listener, eventually
from tools.stack import (REPO, LocalMongo, LocalRabbit, ServiceDied, ServiceProcess, ServiceSpec, Stack, free_port,
                         stop_leftovers)

SERVICE = textwrap.dedent('''
    import json, os

    from nameko.events import EventDispatcher
    from nameko.rpc import rpc
    from nameko.web.handlers import http

    if os.environ.get("CRASH_AT_IMPORT"):
        raise RuntimeError("boom at import")


    class Echo:
        name = "echo_tooling"
        dispatch = EventDispatcher()

        @http("GET", "/health")
        def health(self, request):
            return json.dumps({"pid": os.getpid(), "flavour": os.environ.get("FLAVOUR", ""),
                               "secret": os.environ.get("JWT_SECRET", "")})

        @rpc
        def ping(self, value):
            self.dispatch("pinged", {"value": value})
            return {"pong": value, "pid": os.getpid()}
''')

# Not config/nameko.yaml: that one needs kit.logs, which other engineers are writing.
CONFIG = "AMQP_URI: ${AMQP_URI}\nWEB_SERVER_ADDRESS: ${WEB_SERVER_ADDRESS}\nserializer: json\n"


@pytest.fixture(scope="module")
def home(request):
    # Under the repo, not pytest's tmp_path: the broker runs as the rabbitmq user, who cannot enter
    # /tmp/pytest-of-root (mode 0700).
    path = REPO / ".stack" / f"tooling-{os.getpid()}"
    yield path
    if request.session.testsfailed == 0:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def servers(home):
    port = free_port()
    rabbit = LocalRabbit(home / "rabbit", port, free_port(), f"quanzi-tooling-{port}@localhost")
    mongo = LocalMongo(home / "mongo", free_port())
    started = time.monotonic()
    try:
        rabbit._spawn()
        mongo._spawn()
        rabbit._wait_ready()
        mongo._wait_ready()
        print(f"broker and replica set up in {time.monotonic() - started:.1f} s")
        yield rabbit, mongo
    finally:
        mongo.stop()
        rabbit.stop()


@pytest.fixture
def echo_spec(tmp_path):
    (tmp_path / "echo_tooling").mkdir()
    (tmp_path / "echo_tooling" / "__init__.py").write_text("")
    (tmp_path / "echo_tooling" / "service.py").write_text(SERVICE)
    (tmp_path / "nameko.yaml").write_text(CONFIG)
    return ServiceSpec("echo", str(tmp_path), "echo_tooling.service:Echo")


def test_replica_set_runs_transactions(servers):
    _, mongo = servers
    with pymongo.MongoClient(mongo.uri) as client:
        orders = client.tooling_test.orders
        with client.start_session() as session:
            with session.start_transaction():
                orders.insert_one({"_id": "committed", "n": 1}, session=session)
                client.tooling_test.outbox.insert_one({"order": "committed"}, session=session)
            with pytest.raises(RuntimeError):
                with session.start_transaction():
                    orders.insert_one({"_id": "aborted"}, session=session)
                    raise RuntimeError("abort")
        assert orders.find_one({"_id": "committed"}) == {"_id": "committed", "n": 1}
        assert orders.find_one({"_id": "aborted"}) is None


def test_the_replica_set_keeps_no_snapshot_history_beyond_open_transactions(servers):
    # mongod keeps 5 minutes by default, and with them the index entries of every event an outbox marked sent:
    # each relay poll steps over them. Nothing reads at a past time outside its own transaction (BaseStore.snapshot).
    _, mongo = servers
    with pymongo.MongoClient(mongo.uri) as client:
        window = client.admin.command("getParameter", 1, minSnapshotHistoryWindowInSeconds=1)
    assert window["minSnapshotHistoryWindowInSeconds"] == 0


def test_publish_with_confirms(servers):
    rabbit, _ = servers
    queue = kombu.Queue("tooling-confirms", kombu.Exchange("tooling", type="direct", durable=True),
                        routing_key="confirms", durable=True)
    with kombu.Connection(rabbit.uri, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        for n in range(3):  # with confirm_publish, publish returns once the broker acknowledged
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="confirms", declare=[queue],
                             serializer="json", delivery_mode=2)
        got = [queue(conn.default_channel).get(no_ack=True) for _ in range(3)]
    assert [m.decode() for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_listener_collects_topic_events(servers):
    rabbit, _ = servers
    listener = Listener(rabbit.uri, "tooling.events", ["order.*"])
    try:
        exchange = kombu.Exchange("tooling.events", type="topic", durable=True, delivery_mode=2)
        with kombu.Connection(rabbit.uri) as conn:
            producer = conn.Producer(serializer="json")
            producer.publish({"skip": True}, exchange=exchange, routing_key="user.created")
            producer.publish({"order_id": "o1"}, exchange=exchange, routing_key="order.paid")
        assert listener.wait_for(lambda body: body.get("order_id") == "o1", timeout=5) == {"order_id": "o1"}
        assert listener.messages == [{"order_id": "o1"}]
        assert listener.received[0].routing_key == "order.paid"
        with pytest.raises(AssertionError):
            listener.wait_for(lambda body: "never" in body, timeout=0.3)
    finally:
        listener.close()


def test_stack_runs_replaces_and_scales_a_service(servers, home, echo_spec):
    rabbit, mongo = servers
    stack = Stack(home / "stack", amqp_uri=rabbit.uri, mongo_uri=mongo.uri, specs=[echo_spec],
                  config=echo_spec.path / "nameko.yaml")
    assert stack.rabbit is None and stack.mongo is None  # given URIs: no servers of its own
    started = time.monotonic()
    stack.start()
    try:
        print(f"service healthy in {time.monotonic() - started:.1f} s")
        echo = stack.services["echo"]
        health = requests.get(echo.url + "/health").json()
        assert health["pid"] == echo.pid and health["secret"] == stack.env["JWT_SECRET"]
        assert stack.env["AMQP_URI"] == rabbit.uri and stack.env["ADMIN_PHONE"] == "13800000000"

        from nameko.standalone.rpc import ClusterRpcProxy

        listener = Listener(rabbit.uri, "echo_tooling.events", "pinged")
        try:
            with ClusterRpcProxy({"AMQP_URI": rabbit.uri}, timeout=10) as rpc:
                assert rpc.echo_tooling.ping(7)["pong"] == 7
            assert listener.wait_for(timeout=5) == {"value": 7}
        finally:
            listener.close()

        echo.kill()  # a crash: gone at once
        assert not echo.is_running() and echo.returncode == -9
        stack.restart_service("echo", {"FLAVOUR": "vanilla"})
        assert requests.get(echo.url + "/health").json()["flavour"] == "vanilla"

        replica = stack.add_replica("echo")
        assert replica.web_port != echo.web_port
        assert requests.get(replica.url + "/health").json()["pid"] == replica.pid
        assert (stack.pids_dir / "echo-2.pid").exists()
    finally:
        stack.stop()
    assert not echo.is_running() and not replica.is_running()
    assert not stack.pids_dir.exists()
    assert "start echo" in echo.log_path.read_text()


def test_a_service_that_dies_at_start_shows_its_log(servers, home, echo_spec):
    rabbit, _ = servers
    proc = ServiceProcess(echo_spec, {"AMQP_URI": rabbit.uri, "CRASH_AT_IMPORT": "1"}, free_port(),
                          home / "crash.log", config=echo_spec.path / "nameko.yaml")
    proc.start()
    with pytest.raises(ServiceDied, match="boom at import"):
        proc.wait_healthy(timeout=30)
    proc.stop()


def test_what_a_killed_owner_left_running_is_stopped(servers, home, echo_spec):
    rabbit, mongo = servers
    stack = Stack(home / "leftover", amqp_uri=rabbit.uri, mongo_uri=mongo.uri, specs=[echo_spec],
                  config=echo_spec.path / "nameko.yaml")
    stack.start()
    try:
        assert stop_leftovers(stack.home) is False  # its owner (this process) is alive: hands off
        (stack.pids_dir / "owner.pid").write_text("1 0\n")  # as if the owner had died
        assert stop_leftovers(stack.home) is True
        stack.services["echo"]._proc.wait(timeout=5)
        assert not stack.pids_dir.exists()
    finally:
        stack.stop()


def test_a_taken_port_refuses_the_start_plainly(home, echo_spec):
    stack = Stack(home / "taken", amqp_uri="amqp://unused/", mongo_uri="mongodb://unused/", specs=[echo_spec])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", stack.services["echo"].web_port))
        taken.listen()
        with pytest.raises(RuntimeError, match="already in use"):
            stack.start()
    assert not stack.services["echo"].is_running()


def test_stack_secrets_are_stable_and_env_uris_are_used(home, monkeypatch):
    monkeypatch.setenv("AMQP_URI", "amqp://guest:guest@127.0.0.1:1/")
    monkeypatch.setenv("MONGO_URI", "mongodb://127.0.0.1:1/?replicaSet=rs0")
    first = Stack(home / "secrets", specs=[])
    second = Stack(home / "secrets", specs=[])
    assert first.rabbit is None and first.mongo is None
    assert first.amqp_uri == "amqp://guest:guest@127.0.0.1:1/"
    assert first.env["JWT_SECRET"] == second.env["JWT_SECRET"] != second.env["PAYMENT_HMAC_SECRET"]
    assert json.loads((home / "secrets" / "secrets.json").read_text())["JWT_SECRET"] == first.env["JWT_SECRET"]


def test_restart_keeps_the_data(servers):
    """Last: stops and restarts the module's servers on the same homes and ports."""
    rabbit, mongo = servers
    queue = kombu.Queue("tooling-durable", kombu.Exchange("tooling", type="direct", durable=True),
                        routing_key="durable", durable=True)
    with kombu.Connection(rabbit.uri, transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish({"kept": True}, exchange=queue.exchange, routing_key="durable",
                                declare=[queue], serializer="json", delivery_mode=2)
    with pymongo.MongoClient(mongo.uri) as client:
        client.tooling_test.kept.insert_one({"_id": "survivor"})

    started = time.monotonic()
    rabbit.stop()
    mongo.stop()
    assert not rabbit.is_running() and not mongo.is_running()
    rabbit._spawn()
    mongo._spawn()
    rabbit._wait_ready()
    mongo._wait_ready()
    print(f"stopped and restarted in {time.monotonic() - started:.1f} s")

    with pymongo.MongoClient(mongo.uri) as client:
        assert eventually(lambda: client.tooling_test.kept.find_one({"_id": "survivor"})) == {"_id": "survivor"}
    with kombu.Connection(rabbit.uri) as conn:
        assert queue(conn.default_channel).get(no_ack=True).decode() == {"kept": True}


def test_the_supervisor_restarts_a_service_that_exits_and_gives_up_on_a_crash_loop(servers, home, echo_spec):
    rabbit, mongo = servers
    stack = Stack(home / "supervised", amqp_uri=rabbit.uri, mongo_uri=mongo.uri, specs=[echo_spec],
                  config=echo_spec.path / "nameko.yaml")
    stack.start()
    said = []
    try:
        echo = stack.services["echo"]
        stack.supervise(say=said.append, backoff=(0.5, 1.0), crash_limit=3, window=60, interval=0.1)
        # given a healthy service, when it is killed -9, then it is started again and the terminal says so
        crashed = echo.pid
        echo.kill()
        restarted = eventually(lambda: requests.get(echo.url + "/health", timeout=2).json()["pid"], timeout=30)
        assert restarted not in (None, crashed)
        assert said[0] == "echo exited (-9), restarting in 0.5 s"
        assert said[1] == f"echo restarted (pid {echo.pid})"

        # a stop on purpose is no crash: nothing to restart, nothing said
        stack.restart_service("echo")
        time.sleep(0.5)
        assert len(said) == 2

        # when it now exits at every start, the third exit within the window is a crash loop: said loudly, given up
        echo.env = {**echo.env, "CRASH_AT_IMPORT": "1"}
        echo.kill()
        loop = eventually(lambda: next(line for line in said if "crash-looping" in line), timeout=60)
        assert said[2] == "echo exited (-9), restarting in 1 s"
        assert loop.startswith("!! echo is crash-looping: exited (1) 3 times within 60 s; giving up on it")
        assert "boom at import" in loop  # the end of its log says why
        time.sleep(1)
        assert not echo.is_running()  # given up: it stays down
    finally:
        stack.stop()


def test_a_services_defaults_apply_unless_the_environment_or_the_stack_sets_them(tmp_path, monkeypatch):
    # given a service that runs with 64 workers by default (as the gateway does)
    spec = ServiceSpec("echo", str(tmp_path), "echo_tooling.service:Echo", defaults=(("MAX_WORKERS", "64"),))
    monkeypatch.delenv("MAX_WORKERS", raising=False)
    process = ServiceProcess(spec, {}, free_port(), tmp_path / "echo.log")
    # then it gets them when nobody says otherwise
    assert process.process_env()["MAX_WORKERS"] == "64"
    # and an operator's environment wins, and so does the stack's own setting (a restart's override included)
    monkeypatch.setenv("MAX_WORKERS", "32")
    assert process.process_env()["MAX_WORKERS"] == "32"
    assert ServiceProcess(spec, {"MAX_WORKERS": "12"}, free_port(), tmp_path / "echo.log").process_env()[
        "MAX_WORKERS"] == "12"
    # and the gateway is such a service
    from tools.stack import SERVICES
    assert dict(next(s for s in SERVICES if s.name == "gateway").defaults) == {"MAX_WORKERS": "64"}
