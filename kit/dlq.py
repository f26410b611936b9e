"""Operator tool for events parked in a dead-letter queue by `kit.events.on_event`.

    python -m kit.dlq show <queue> [--limit N]   # peek: type, id, attempts, error; messages stay parked
    python -m kit.dlq replay <queue>             # move every parked message back to <queue>, attempts reset

<queue> is the consumer's own queue, e.g. `evt-orders-order.paid--commission.on_order_paid` (the `.dlq`
suffix may be given too); its parked messages are in `<queue>.dlq`. The broker is AMQP_URI from the
environment. Replay publishes each copy with publisher confirms and acks the parked message only once the
broker confirmed the copy, so a crash or a lost connection half-way loses nothing (at worst one message is
replayed twice, and the consumer dedupes it by event id). Fix the handler first: a message that fails again
goes through its retries and back to the dead-letter queue, and is never replayed twice in one run.
"""
import argparse
import json
import sys

from amqp.exceptions import NotFound
from kombu import Connection, Producer, Queue

from kit.config import ConfigError, load_amqp_uri
from kit.events import ATTEMPTS_HEADER, ERROR_HEADER, dlq_name

REPLAYED_HEADER = "x-quanzi-replayed"  # how often an operator sent this message back
# Headers of the failed attempts, not to be carried into a fresh start (x-death & co. are RabbitMQ's own).
_DROPPED = {ATTEMPTS_HEADER, ERROR_HEADER, "x-death", "x-first-death-exchange", "x-first-death-queue",
            "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason"}


def describe(message):
    """(type, id, attempts, error) of a parked message; tolerant of bodies that are not an envelope."""
    try:
        envelope = json.loads(message.body)
        event_type, event_id = envelope.get("type", "?"), envelope.get("id", "?")
    except (ValueError, TypeError, AttributeError):
        event_type, event_id = "?", "?"
    headers = message.headers or {}
    return event_type, event_id, headers.get(ATTEMPTS_HEADER, "?"), headers.get(ERROR_HEADER, "")


def depth(connection, queue_name):
    """Messages ready in `queue_name`; NotFound when there is no such queue."""
    with connection.channel() as channel:
        return channel.queue_declare(queue=queue_name, passive=True).message_count


def show(connection, queue_name, limit=100, out=sys.stdout):
    parked = dlq_name(queue_name)
    total = depth(connection, parked)
    print(f"{parked}: {total} parked message(s)", file=out)
    channel = connection.channel()
    held = []
    try:
        for _ in range(min(total, limit)):
            message = Queue(parked, no_declare=True)(channel).get(no_ack=False)
            if message is None:
                break
            held.append(message)
            event_type, event_id, attempts, error = describe(message)
            print(f"{len(held)}. type={event_type} id={event_id} attempts={attempts} error={error}", file=out)
    finally:
        # Nothing was acked: hand every message back (RabbitMQ puts each at its old place in the queue).
        for message in held:
            message.requeue()
        channel.close()
    if total > len(held):
        print(f"... {total - len(held)} more not shown (--limit)", file=out)
    return len(held)


def replay(connection, queue_name, out=sys.stdout):
    parked = dlq_name(queue_name)
    depth(connection, queue_name)  # the consumer's queue must exist, or the copies would go nowhere
    total = depth(connection, parked)
    channel = connection.channel()
    producer = Producer(channel)
    replayed, seen = 0, set()
    try:
        # At most the messages parked when we started: one that fails again and comes back meanwhile
        # waits for the next replay instead of looping.
        for _ in range(total):
            message = Queue(parked, no_declare=True)(channel).get(no_ack=False)
            if message is None:
                break
            event_type, event_id, _, _ = describe(message)
            if event_id != "?" and event_id in seen:
                message.requeue()
                break
            headers = {k: v for k, v in (message.headers or {}).items() if k not in _DROPPED}
            headers[REPLAYED_HEADER] = int(headers.get(REPLAYED_HEADER, 0)) + 1
            # confirm_publish: returns once the broker has the copy; mandatory: an unroutable copy raises.
            producer.publish(message.body, exchange="", routing_key=queue_name, headers=headers,
                             content_type=message.content_type, content_encoding=message.content_encoding,
                             delivery_mode=2, mandatory=True)
            message.ack()
            seen.add(event_id)
            replayed += 1
            print(f"replayed type={event_type} id={event_id}", file=out)
    finally:
        channel.close()
    print(f"{replayed} message(s) moved from {parked} back to {queue_name}", file=out)
    return replayed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kit.dlq", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show_cmd = commands.add_parser("show", help="peek at parked messages (they stay parked)")
    show_cmd.add_argument("queue")
    show_cmd.add_argument("--limit", type=int, default=100)
    replay_cmd = commands.add_parser("replay", help="move every parked message back to its queue")
    replay_cmd.add_argument("queue")
    args = parser.parse_args(argv)

    queue_name = args.queue[:-len(".dlq")] if args.queue.endswith(".dlq") else args.queue
    try:
        uri = load_amqp_uri()
    except ConfigError as exc:
        print(f"bad configuration: {exc}", file=sys.stderr)
        return 2
    with Connection(uri, transport_options={"confirm_publish": True}, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=2)
        try:
            if args.command == "show":
                show(connection, queue_name, args.limit)
            else:
                replay(connection, queue_name)
        except NotFound as exc:
            print(f"no such queue: {exc.reply_text if hasattr(exc, 'reply_text') else exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
