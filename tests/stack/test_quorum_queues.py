"""Quorum queues, asked from the broker (rabbitmqctl), the migration of a classic deployment, and services
reaching the broker through a kombu failover URL whose first node is down."""
import json
import random
import string
import subprocess

import kombu
import pytest
import requests

from kit.config import ConfigError, load_settings
from kit.queues import MIGRATING_SUFFIX, spec_for
from tools.cluster import is_quanzi_durable, list_queues
from tools.stack import free_port, python


def _queues(stack):
    return {q["name"]: q for q in list_queues(stack.rabbit.nodename)}


def _letters(n=8):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def test_every_durable_queue_the_services_declare_is_a_quorum_queue(stack):
    # given the whole stack running, when we ask the broker for its queues
    queues = _queues(stack)
    # then every queue of Quanzi's that outlives its consumers is a quorum queue (the shared test stack also has
    # other clients' queues: the tests' standalone RPC proxy, example subscribers)
    durable = {name: q for name, q in queues.items() if is_quanzi_durable(q) and name.startswith(("rpc-", "evt-"))}
    assert {name: q["type"] for name, q in durable.items() if q["type"] != "quorum"} == {}
    # and they are the ones Quanzi declares: every service's RPC queue, event queues with retries and DLQ
    for service in stack.services:
        assert f"rpc-{service}" in durable
    paid = "evt-orders-order.paid--commission.order_paid"
    assert paid in durable and f"{paid}.dlq" in durable
    assert any(name.startswith(f"{paid}.retry.0.") for name in durable)
    assert all(spec_for(name) for name in durable)
    # while the services' per-process reply queues stay classic, transient and auto-deleted
    replies = [q for name, q in queues.items() if name.startswith(tuple(f"rpc.reply-{s}-" for s in stack.services))]
    assert replies and all(q["type"] == "classic" and not q["durable"] and q["auto_delete"] for q in replies)


def _classic(channel, name, arguments=None, bindings=()):
    kombu.Queue(name, durable=True, queue_arguments=arguments or None)(channel).declare()
    for exchange, key in bindings:
        kombu.Exchange(exchange, type="topic", durable=True)(channel).declare()
        channel.queue_bind(queue=name, exchange=exchange, routing_key=key)


def test_classic_queues_of_an_existing_deployment_migrate_to_quorum_keeping_messages_and_bindings(stack):
    # given an older deployment's classic queues with messages waiting in them
    service = f"legacy_{_letters()}"
    rpc_queue = f"rpc-{service}"
    event_queue = f"evt-catalog-product.updated--{service}.on_updated"
    retry_queue = f"{event_queue}.retry.0.60000ms"
    with kombu.Connection(stack.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        _classic(channel, rpc_queue, bindings=[("nameko-rpc", f"{service}.*")])
        _classic(channel, event_queue, bindings=[("catalog.events", "product.updated")])
        _classic(channel, retry_queue, {"x-message-ttl": 60000, "x-dead-letter-exchange": "",
                                        "x-dead-letter-routing-key": event_queue})
        _classic(channel, f"{event_queue}.dlq")
        producer = kombu.Producer(channel)
        for queue, count in ((rpc_queue, 3), (event_queue, 2), (retry_queue, 4), (f"{event_queue}.dlq", 1)):
            for i in range(count):
                producer.publish({"n": i}, exchange="", routing_key=queue, headers={"x-test": queue})
        names = [rpc_queue, event_queue, retry_queue, f"{event_queue}.dlq"]
        before = _queues(stack)
        assert {before[n]["type"] for n in names} == {"classic"}
        # redeclaring one as quorum (what the new code does) is refused by the broker
        with pytest.raises(Exception, match="PRECONDITION_FAILED"):
            kombu.Queue(rpc_queue, durable=True, queue_arguments={"x-queue-type": "quorum"})(
                connection.channel()).declare()

    # when the operator pipes the broker's classic queues into the migration
    env = {"AMQP_URI": stack.amqp_uri, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([python(), "-m", "kit.queues", "migrate", "-"], input="\n".join(names), text=True,
                          capture_output=True, env=env, timeout=120, cwd=str(stack.home.parent.parent))
    assert done.returncode == 0, done.stderr

    # then the broker has them as quorum queues, every message kept, no stand-in left behind
    after = _queues(stack)
    assert {n: after[n]["type"] for n in names} == {n: "quorum" for n in names}
    assert {n: _depth(stack, n) for n in names} == {rpc_queue: 3, event_queue: 2, retry_queue: 4,
                                                     f"{event_queue}.dlq": 1}
    assert not [n for n in after if n.endswith(MIGRATING_SUFFIX)]
    # and the check passes, a second run changes nothing, and the bindings route as before
    check = subprocess.run([python(), "-m", "kit.queues", "check", *names], capture_output=True, text=True,
                           env=env, timeout=60, cwd=str(stack.home.parent.parent))
    assert check.returncode == 0, check.stderr
    again = subprocess.run([python(), "-m", "kit.queues", "migrate", rpc_queue], capture_output=True, text=True,
                           env=env, timeout=60, cwd=str(stack.home.parent.parent))
    assert "already a quorum queue" in again.stdout
    with kombu.Connection(stack.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = kombu.Producer(connection.channel())
        producer.publish({"routed": True}, exchange="nameko-rpc", routing_key=f"{service}.ping", mandatory=True)
        assert _depth(stack, rpc_queue) == 4
        # the retry queue kept its delay and target: the new code's declaration is accepted as equal
        assert subprocess.run([python(), "-m", "kit.queues", "check", retry_queue], env=env,
                              cwd=str(stack.home.parent.parent), timeout=60).returncode == 0


def _depth(stack, name):
    """Messages ready in `name`, from the queue itself (rabbitmqctl's counts of quorum queues lag by seconds)."""
    with kombu.Connection(stack.amqp_uri) as connection:
        return connection.channel().queue_declare(queue=name, passive=True).message_count


def test_a_queue_name_quanzi_does_not_declare_is_refused_by_the_migration():
    with pytest.raises(ValueError):
        spec_for("someone-elses-queue")
    assert spec_for("rpc-orders").bindings == [("nameko-rpc", "orders.*")]
    assert spec_for("evt-orders-order.paid--commission.order_paid").bindings == [("orders.events", "order.paid")]
    retry = spec_for("evt-orders-order.paid--commission.order_paid.retry.1.5000ms").arguments
    assert retry["x-message-ttl"] == 5000
    assert retry["x-dead-letter-routing-key"] == "evt-orders-order.paid--commission.order_paid"


def test_settings_take_a_failover_broker_url_and_a_replica_set_and_refuse_a_bad_alternative():
    env = {"AMQP_URI": "amqp://u:p@rabbit-0:5672/q;amqp://u:p@rabbit-1:5672/q;amqp://u:p@rabbit-2:5672/q",
           "MONGO_URI": "mongodb://m-0:27017,m-1:27017,m-2:27017/?replicaSet=rs0&retryWrites=true&w=majority"}
    settings = load_settings(env)
    assert settings.amqp_uri == env["AMQP_URI"] and settings.mongo_uri == env["MONGO_URI"]
    with pytest.raises(ConfigError, match="AMQP_URI"):
        load_settings({"AMQP_URI": "amqp://a:5672/;redis://b:6379/"})


def test_a_service_whose_first_broker_node_is_down_serves_through_the_next_one(stack):
    # given a failover URL whose first node refuses connections (a dead node), the live broker second
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    failover = f"{dead};{stack.amqp_uri}"
    # when another catalog replica starts with it (RPC consumer, reply queue, outbox relay, health check)
    replica = stack.add_replica("catalog", {"AMQP_URI": failover})
    # then it is ready: its broker check got through, and it answers RPCs from its queue
    health = requests.get(replica.url + "/health", timeout=10).json()
    assert health["checks"]["broker"] == "ok"
    # the DLQ tool uses the same URL
    done = subprocess.run([python(), "-m", "kit.dlq", "show", "evt-orders-order.paid--commission.order_paid"],
                          capture_output=True, text=True, env={"AMQP_URI": failover, "PATH": "/usr/bin:/bin"},
                          timeout=60, cwd=str(stack.home.parent.parent))
    assert done.returncode == 0, done.stderr
    assert "parked message(s)" in done.stdout
    replica.stop()
    stack.replicas.remove(replica)
