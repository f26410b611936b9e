"""kit.amqp: what the entrypoints do when the broker or MongoDB goes away (the resilience tests in tests/stack
break the real ones under load; these pin the rules)."""
import ast
import time
from pathlib import Path
from types import SimpleNamespace

import eventlet
import pytest
from kombu.exceptions import OperationalError
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from kit import amqp
from kit.amqp import (REPLY_QUEUE_WAIT, SETTLE_LOST, QueueConsumer, ReplyListener, ReplyQueueNotConsumed,
                      is_transient)
from kit.errors import Conflict, QuanziError, Unavailable

REPO = Path(__file__).resolve().parents[2]


class DeadChannelMessage:
    """A message whose channel's socket the broker has closed (it restarted): acking it raises."""
    channel = SimpleNamespace(connection=object())

    def __init__(self, error):
        self.error = error

    def ack(self):
        raise self.error

    requeue = ack


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(),
                                   OperationalError("[Errno 111] ECONNREFUSED")])
@pytest.mark.parametrize("action", ["ack_message", "requeue_message"])
def test_settling_a_message_on_a_dead_connection_is_counted_not_raised(error, action):
    consumer = QueueConsumer()
    consumer.container = SimpleNamespace(service_name="kitprobe")
    label = "ack" if action == "ack_message" else "requeue"
    before = SETTLE_LOST.labels("kitprobe", label)._value.get()
    getattr(consumer, action)(DeadChannelMessage(error))  # nameko's own raised ConnectionResetError here
    assert SETTLE_LOST.labels("kitprobe", label)._value.get() == before + 1
    assert consumer.connected is False


def test_outages_are_transient_and_refusals_and_bugs_are_not():
    assert is_transient(AutoReconnect("connection closed"))
    assert is_transient(ServerSelectionTimeoutError("no primary"))
    assert is_transient(OperationalError("ECONNREFUSED"))
    assert is_transient(ConnectionResetError())
    assert is_transient(eventlet.Timeout(None))
    assert is_transient(OperationFailure("write conflict", details={"errorLabels": ["TransientTransactionError"]}))
    assert not is_transient(DuplicateKeyError("dup"))
    assert not is_transient(Conflict("sold out"))
    assert not is_transient(KeyError("bug"))


def test_unavailable_is_no_refusal():
    # a saga that catches QuanziError as "refused: nothing was done" must not take an outage for one
    assert not isinstance(Unavailable("catalog.reserve_stock did not answer"), QuanziError)
    assert Unavailable("x").code == "service_unavailable"


def test_services_use_the_kit_entrypoints_not_nameko_s():
    """nameko's rpc, RpcProxy and event_handler would bring back an ack that kills the process after a broker
    restart: services take them from kit.amqp."""
    offenders = []
    for path in sorted((REPO / "services").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in ("nameko.rpc", "nameko.events", "nameko.messaging"):
                offenders += [f"{path.relative_to(REPO)}: from {node.module} import {a.name}" for a in node.names
                              if a.name in ("rpc", "Rpc", "RpcProxy", "event_handler", "EventHandler", "consume")]
    assert offenders == []


def reply_listener_of(consumer):
    listener = ReplyListener()
    listener.queue_consumer = consumer
    return listener


def test_a_request_waits_for_its_reply_queue_to_be_consumed_before_it_goes():
    # given a process whose consumer is not consuming yet (it is starting), and does 0.2 s later
    consumer = QueueConsumer()
    listener = reply_listener_of(consumer)
    eventlet.spawn_after(0.2, setattr, consumer, "connected", True)
    # when a request is about to be published
    started = time.monotonic()
    listener.get_reply_event("corr-1")
    # then it went once the reply queue was consumed, not before and not much after
    assert consumer.connected
    assert 0.15 <= time.monotonic() - started < REPLY_QUEUE_WAIT


def test_a_request_whose_reply_queue_is_not_consumed_in_time_fails_fast_unsent(monkeypatch):
    # given a consumer that does not reconnect in time (the broker is down, or back but not reconnected yet)
    monkeypatch.setattr(amqp, "REPLY_QUEUE_WAIT", 0.3)
    listener = reply_listener_of(QueueConsumer())
    started = time.monotonic()
    # then the request fails after the wait, before it is sent, as an outage: a 503 to retry, not a 10 s wait
    with pytest.raises(ReplyQueueNotConsumed) as raised:
        listener.get_reply_event("corr-2")
    assert 0.3 <= time.monotonic() - started < 1.0
    assert is_transient(raised.value)
    assert "corr-2" not in listener._reply_events


def test_a_request_of_a_consuming_process_does_not_wait():
    consumer = QueueConsumer()
    consumer.connected = True
    started = time.monotonic()
    event = reply_listener_of(consumer).get_reply_event("corr-3")
    assert time.monotonic() - started < 0.01
    assert not event.ready()
