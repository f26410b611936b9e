"""One outbox relay in a process of its own, so a test can SIGKILL it like a crashed service replica.

    python -m tests.kit.relay_proc --mongo URI --db NAME --service NAME --amqp URI --relay-id ID [--delay S]

Prints `published <event id>` (flushed, one write for each chunk the broker confirmed); `--delay` slows each
confirm down so a test can kill the relay half-way through a batch.
"""
import argparse
import logging
import sys
import time

from kit.mongo import connect
from kit.outbox import Outbox, OutboxRelay


def main():
    parser = argparse.ArgumentParser()
    for name in ("--mongo", "--db", "--service", "--amqp", "--relay-id"):
        parser.add_argument(name, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def on_published(docs):
        print("\n".join(f"published {doc['_id']}" for doc in docs), flush=True)
        if args.delay:
            time.sleep(args.delay * len(docs))

    outbox = Outbox(connect(args.mongo)[args.db], args.service, args.partitions)
    relay = OutboxRelay(outbox, args.amqp, idle_wait=0.2, relay_id=args.relay_id, on_published=on_published)
    print("ready", flush=True)
    relay.run()


if __name__ == "__main__":
    main()
