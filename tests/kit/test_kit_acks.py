"""Acks sent together (kit.amqp.ChannelAcks): the acks made in one tick of the event loop leave as one `multiple`
ack below every message still being handled, and single acks above it. A `multiple` ack settles every delivery
up to its tag on the channel, so the one rule that matters is that it never reaches a message still in a handler:
such a message must come back when its consumer dies, not be lost."""
import time
from types import SimpleNamespace

import eventlet
import kombu
import pytest
import requests
from kombu.exceptions import MessageStateError
from kombu.message import Message
from nameko.standalone.events import event_dispatcher
from prometheus_client.parser import text_string_to_metric_families

from kit.amqp import ChannelAcks, QueueConsumer, plan_acks
from tests.kit.ack_probe import EVENT_TYPE, QUEUE, SOURCE
from tests.kit.support import running_probe, until
from tools.stack import ServiceSpec

pytestmark = pytest.mark.slow


# -- the plan ----------------------------------------------------------------------------------------------
def test_acks_below_every_open_delivery_go_as_one_multiple_ack():
    # given deliveries 1..5 of a channel, 4 still being handled; when 1, 2, 3 and 5 are acked in one tick
    # then one `multiple` ack of 3 settles three of them, and 5 (above the open 4) goes alone
    assert plan_acks({1, 2, 3, 4, 5}, [5, 2, 1, 3]) == (3, 3, [5])


def test_with_nothing_left_open_every_ack_is_in_the_multiple_one():
    assert plan_acks({7, 8, 9}, [9, 7, 8]) == (9, 3, [])


def test_a_lone_ack_or_acks_all_above_an_open_delivery_go_one_by_one():
    # a single ack below the floor is sent as it is: a `multiple` one would buy nothing
    assert plan_acks({2, 3}, [2]) == (None, 0, [2])
    # the lowest delivery still in a handler: nothing may be acked with `multiple`
    assert plan_acks({1, 3, 4}, [3, 4]) == (None, 0, [3, 4])


# -- one tick, one send ------------------------------------------------------------------------------------
class Sent:
    def __init__(self):
        self.plans = []

    def __call__(self, acks, upto, together, singles):
        self.plans.append((upto, together, singles))


def test_the_acks_of_one_tick_are_sent_once_at_its_end_and_a_requeued_delivery_is_never_covered():
    # given a channel with deliveries 1..6
    sent = Sent()
    acks = ChannelAcks(object(), sent)
    for tag in range(1, 7):
        acks.deliver(tag)
    # when 3 is requeued (settled on its own), then 1, 2, 4 and 6 are acked in one tick
    acks.settled(3)
    for tag in (1, 2, 4, 6):
        acks.ack(tag)
    assert sent.plans == []  # nothing sent before the tick ends
    eventlet.sleep(0)
    # then one send: a `multiple` ack of 4 (3 is gone from the channel, 5 is still in its handler), 6 alone
    assert sent.plans == [(4, 3, [6])]
    # and when 5 is acked later, it goes by itself
    acks.ack(5)
    eventlet.sleep(0)
    assert sent.plans[1:] == [(None, 0, [5])]


def test_a_message_acked_twice_is_refused_as_kombu_refuses_it_and_its_ack_goes_once():
    # given a consumer's channel with one delivery
    consumer = QueueConsumer()
    consumer.container = SimpleNamespace(service_name="kitprobe")
    channel, sent = SimpleNamespace(connection=object()), Sent()
    consumer._acks = ChannelAcks(channel, sent)
    consumer._acks.deliver(1)
    message = Message(body=b"{}", delivery_tag=1, channel=channel)
    # when it is acked twice
    consumer.ack_message(message)
    with pytest.raises(MessageStateError):
        consumer.ack_message(message)
    # then one ack goes (a second one, of a tag the broker no longer knows, would close the channel)
    eventlet.sleep(0)
    assert sent.plans == [(None, 0, [1])] and message.acknowledged


# -- against the broker ------------------------------------------------------------------------------------
@pytest.fixture
def probe(kit_servers):
    proc = running_probe(kit_servers, ServiceSpec("kitackprobe", ".", "tests.kit.ack_probe:AckProbe"),
                         "kitackprobe.log")
    yield proc
    proc.kill()
    with kombu.Connection(kit_servers.amqp_uri) as connection:
        connection.default_channel.queue_delete(QUEUE)


def acked(proc):
    """{how: messages acked} from the service's /metrics (quanzi_amqp_acked_total)."""
    text = requests.get(proc.url + "/metrics", timeout=5).text
    return {sample.labels["how"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "quanzi_amqp_acked_total"}


def queue_depth(amqp_uri):
    with kombu.Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue=QUEUE, passive=True).message_count


def test_a_message_still_in_its_handler_is_never_acked_with_those_after_it(kit_servers, probe):
    # given eight events delivered to one consumer, the fifth staying in its handler
    dispatch = event_dispatcher({"AMQP_URI": kit_servers.amqp_uri})
    for n in range(1, 9):
        dispatch(SOURCE, EVENT_TYPE, {"n": n, "slow": n == 5, "fast": 7})
    # when the seven others finish in one tick
    # then their acks leave together: 1..4 in one `multiple` ack, 6, 7 and 8 one by one (above the fifth)
    assert until(lambda: sum(acked(probe).values()) == 7 and acked(probe)) == {"together": 4, "alone": 3}
    assert queue_depth(kit_servers.amqp_uri) == 0  # all eight delivered, none ready
    # and when the consumer dies (kill -9) with the fifth still in its handler
    probe.kill()
    # then the broker gives back the fifth, and only it: none of the seven acked comes back, nothing is lost
    until(lambda: queue_depth(kit_servers.amqp_uri) == 1)
    time.sleep(0.5)
    with kombu.Connection(kit_servers.amqp_uri) as connection:
        message = connection.SimpleQueue(QUEUE, no_ack=True).get(timeout=5)
        assert message.payload == {"n": 5, "slow": True, "fast": 7}
        assert connection.default_channel.queue_declare(queue=QUEUE, passive=True).message_count == 0
