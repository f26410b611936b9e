#!/usr/bin/env python3
"""Another team's subscriber to Quanzi events: plain kombu, no nameko, nothing imported from Quanzi.

It declares its own durable queue (it keeps events while this program is down), binds it to the topic exchanges
`orders.events` and `social_feed.events`, and prints paid orders and share clicks. Delivery is at least once,
so it skips an event id it has seen (kept in memory here; a real consumer keeps them with its own writes).

    pip install kombu
    AMQP_URI=amqp://guest:guest@127.0.0.1:5682/ python examples/subscriber.py   # the URI `make run` prints
"""
import os
import signal
import socket

from kombu import Connection, Exchange, Queue, binding

QUEUE_NAME = os.environ.get("SUBSCRIBER_QUEUE", "example-team.quanzi-events")
BINDINGS = {"orders.events": ["order.paid"], "social_feed.events": ["share.clicked"]}


def describe(event):
    data = event["data"]
    if event["type"] == "order.paid":
        return (f"order {data['order_id']} paid: {data['total_fen'] / 100:.2f} yuan by {data['buyer_id']}"
                f"{' via share ' + data['share_code'] if data.get('share_code') else ''}")
    if event["type"] == "share.clicked":
        viewer = data["viewer_id"] or "an anonymous visitor"
        return f"share {data['share_code']} of {data['product_id']} opened by {viewer}"
    return f"{event['type']} {event['id']}"


def main():
    uri = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5682/")
    limit = int(os.environ.get("SUBSCRIBER_MAX_EVENTS", "0"))  # stop after this many (0: run until Ctrl-C)
    exchanges = {name: Exchange(name, type="topic", durable=True) for name in BINDINGS}
    queue = Queue(QUEUE_NAME, durable=True, bindings=[
        binding(exchanges[name], routing_key=key) for name, keys in BINDINGS.items() for key in keys])
    seen, handled, running = set(), 0, [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))

    def on_message(body, message):
        nonlocal handled
        if body["id"] not in seen:
            seen.add(body["id"])
            handled += 1
            print(describe(body), flush=True)
        message.ack()  # after handling: a crash before this line means redelivery, never loss

    with Connection(uri) as connection:
        with connection.Consumer(queue, callbacks=[on_message], accept=["json"], prefetch_count=50):
            print(f"listening on {QUEUE_NAME} for {BINDINGS}", flush=True)
            while running[0] and not (limit and handled >= limit):
                try:
                    connection.drain_events(timeout=1)
                except socket.timeout:
                    pass
                except KeyboardInterrupt:
                    break


if __name__ == "__main__":
    main()
