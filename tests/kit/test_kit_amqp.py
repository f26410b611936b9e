"""kit.amqp: what the entrypoints do when the broker or MongoDB goes away (the resilience tests in tests/stack
break the real ones under load; these pin the rules)."""
import ast
from pathlib import Path
from types import SimpleNamespace

import eventlet
import pytest
from kombu.exceptions import OperationalError
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from kit.amqp import SETTLE_LOST, QueueConsumer, is_transient
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
