"""examples/subscriber.py, run as another team would run it, against the real broker."""
import copy
import os
import subprocess
import sys
import uuid
from pathlib import Path

import kombu

from contracts.asyncapi import EXAMPLES

REPO = Path(__file__).resolve().parents[2]


def golden(event_type):
    import json
    event = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    event["id"] = str(uuid.uuid4())
    return event


def publish(amqp_uri, exchange_name, event):
    exchange = kombu.Exchange(exchange_name, type="topic", durable=True, delivery_mode=2)
    with kombu.Connection(amqp_uri) as connection:
        connection.Producer().publish(event, exchange=exchange, routing_key=event["type"], serializer="json",
                                      declare=[exchange])


def test_the_example_subscriber_prints_paid_orders_and_share_clicks_once_each(stack):
    queue = f"example-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "AMQP_URI": stack.amqp_uri, "SUBSCRIBER_QUEUE": queue, "SUBSCRIBER_MAX_EVENTS": "2",
           "PYTHONPATH": ""}  # nothing of Quanzi importable: the example must stand alone
    process = subprocess.Popen([sys.executable, str(REPO / "examples" / "subscriber.py")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    assert "listening on" in process.stdout.readline()
    paid, clicked = golden("order.paid"), golden("share.clicked")
    publish(stack.amqp_uri, "orders.events", paid)
    publish(stack.amqp_uri, "orders.events", copy.deepcopy(paid))  # redelivered: printed once
    publish(stack.amqp_uri, "orders.events", golden("order.created"))  # not subscribed
    publish(stack.amqp_uri, "social_feed.events", clicked)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    lines = out.strip().splitlines()
    assert lines == [f"order {paid['data']['order_id']} paid: 406.00 yuan by {paid['data']['buyer_id']} via share "
                     f"{paid['data']['share_code']}",
                     f"share {clicked['data']['share_code']} of {clicked['data']['product_id']} opened by "
                     f"{clicked['data']['viewer_id']}"]
