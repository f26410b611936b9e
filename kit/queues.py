"""Every durable queue Quanzi declares is a RabbitMQ quorum queue (replicated over the cluster's nodes).

- `quorum(queue)` / `quorum_queue(name, ...)`: the one place the queue type is set. The kit's entrypoints use
  them: `kit.amqp.rpc` (the `rpc-<service>` queues), `kit.events.on_event` (event handler queues, their
  `.retry.<n>.<ms>ms` delay queues and `.dlq`). RPC reply queues (`kit.amqp.RpcProxy`) stay classic, but
  transient and auto-deleted: a reply queue is per process, and a durable classic one whose node is down could
  not be declared again anywhere else.
- Quorum queues are always durable, never exclusive or auto-delete; they support what the kit uses (per-queue
  `x-message-ttl` and dead-lettering since RabbitMQ 3.10: the retry queues dead-letter `at-least-once`, so an
  expiring retry is never dropped on the way back to its queue).

RabbitMQ refuses to declare an existing queue with another type (PRECONDITION_FAILED, inequivalent arg
'x-queue-type'): a deployment whose queues are classic migrates them once, with the consumers stopped:

    rabbitmqctl -q list_queues name type durable exclusive \\
        | awk '$1 ~ /^(rpc|evt)-/ && $2=="classic" && $3=="true" && $4=="false" {print $1}' \\
        | python -m kit.queues migrate -        # or: python -m kit.queues migrate <queue> [<queue> ...]
    python -m kit.queues check <queue> ...      # exit 1 unless each is a quorum queue with Quanzi's arguments

Per queue Q (only Quanzi's own names: `rpc-*`, `evt-*` and their retry / dead-letter queues): declare the
quorum queue `Q.migrating` with Q's bindings, unbind Q, move Q's messages there (each with publisher confirms
before it is acked), delete Q, declare Q as a quorum queue with its arguments and bindings, unbind
`Q.migrating`, move the messages back, delete it. Publishers may keep publishing throughout: a message is always
routed to at least one of the two queues (at worst to both for an instant: consumers dedupe events by id). A
crash half-way is safe to re-run: the tool finishes what it finds (`Q.migrating` holding messages is drained
back into Q).
"""
import argparse
import os
import re
import sys
from dataclasses import dataclass, field

from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Connection, Exchange, Queue

QUORUM_ARGUMENTS = {"x-queue-type": "quorum"}
# Dead-lettering from a quorum queue is at-most-once unless the source queue rejects publishes when full.
AT_LEAST_ONCE_DEAD_LETTERING = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
MIGRATING_SUFFIX = ".migrating"
RPC_EXCHANGE = "nameko-rpc"


def quorum(queue):
    """A copy of kombu `queue` declared as a quorum queue (durable, shared, replicated)."""
    if queue.exclusive or queue.auto_delete:
        raise ValueError(f"{queue.name}: a quorum queue cannot be exclusive or auto-delete")
    arguments = {**(queue.queue_arguments or {}), **QUORUM_ARGUMENTS}
    return Queue(queue.name, exchange=queue.exchange, routing_key=queue.routing_key, durable=True,
                 queue_arguments=arguments, bindings=queue.bindings or None,
                 no_declare=queue.no_declare)


def quorum_queue(name, arguments=None, **kwargs):
    return quorum(Queue(name, durable=True, queue_arguments=dict(arguments or {}), **kwargs))


def retry_arguments(target_queue, delay_ms):
    """A delay queue: every message waits `delay_ms`, then goes back to `target_queue`."""
    return {"x-message-ttl": int(delay_ms), "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target_queue, **AT_LEAST_ONCE_DEAD_LETTERING}


# --- what a queue name says about its arguments and bindings (for the migration) -----------------------

_RETRY = re.compile(r"^(?P<target>.+)\.retry\.\d+\.(?P<ms>\d+)ms$")
_EVENT = re.compile(r"^evt-(?P<source>[a-z_]+)-(?P<type>[a-z0-9_.]+)--[a-z_]+\.[A-Za-z0-9_]+$")
_RPC = re.compile(r"^rpc-(?P<service>[a-z_]+)$")


@dataclass
class QueueSpec:
    name: str
    arguments: dict
    bindings: list = field(default_factory=list)  # (exchange, routing key)

    def queue(self, name=None, with_arguments=True):
        return quorum_queue(name or self.name, self.arguments if with_arguments else None)


def spec_for(name):
    """Arguments and bindings Quanzi declares for queue `name`; ValueError for a queue that is not Quanzi's."""
    if name.endswith(".dlq") and (_EVENT.match(name[:-4])):
        return QueueSpec(name, {})
    retry = _RETRY.match(name)
    if retry and _EVENT.match(retry["target"]):
        return QueueSpec(name, retry_arguments(retry["target"], retry["ms"]))
    event = _EVENT.match(name)
    if event:
        return QueueSpec(name, {}, [(f"{event['source']}.events", event["type"])])
    rpc = _RPC.match(name)
    if rpc:
        return QueueSpec(name, {}, [(RPC_EXCHANGE, f"{rpc['service']}.*")])
    raise ValueError(f"{name!r} is not a queue Quanzi declares (rpc-<service>, evt-..., .retry..., .dlq)")


# --- migration ----------------------------------------------------------------------------------------

class _Broker:
    """One connection; a channel that a refused declaration closed is replaced transparently."""

    def __init__(self, connection):
        self.connection = connection
        self._channel = None

    @property
    def channel(self):
        if self._channel is None or not self._channel.is_open:
            self._channel = self.connection.channel()
        return self._channel

    def exists(self, name):
        try:
            self.channel.queue_declare(queue=name, passive=True)
            return True
        except NotFound:
            self._channel = None
            return False

    def depth(self, name):
        return self.channel.queue_declare(queue=name, passive=True).message_count

    def is_declared_as(self, spec, name=None):
        """Whether `name` exists with exactly spec's quorum arguments (a redeclaration is accepted)."""
        try:
            spec.queue(name)(self.channel).declare()
            return True
        except PreconditionFailed:
            self._channel = None
            return False

    def declare(self, queue, bindings):
        bound = queue(self.channel)
        bound.declare()
        for exchange, key in bindings:
            # declared as nameko declares them (topic, durable): harmless when they exist
            self.channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
            self.channel.queue_bind(queue=queue.name, exchange=exchange, routing_key=key)

    def unbind(self, name, bindings):
        for exchange, key in bindings:
            self.channel.queue_unbind(queue=name, exchange=exchange, routing_key=key)

    def move(self, source, target):
        """Every message of `source` into `target` (default exchange), acked after the broker confirmed it."""
        moved = 0
        while True:
            message = self.channel.basic_get(queue=source, no_ack=False)
            if message is None:
                return moved
            # publisher confirms (the connection's confirm_publish): returns once the broker has the copy
            self.channel.basic_publish(message, exchange="", routing_key=target, mandatory=True)
            self.channel.basic_ack(message.delivery_tag)
            moved += 1

    def delete(self, name):
        self.channel.queue_delete(queue=name)
        # A channel that used the classic queue keeps state for its name: RabbitMQ 3.10 crashes that channel
        # (INTERNAL_ERROR) when the quorum queue of the same name is used on it. Go on with a fresh channel.
        self._channel.close()
        self._channel = None


def migrate_queue(connection, name, out=sys.stdout):
    """Make Quanzi's queue `name` a quorum queue keeping its messages and bindings; returns messages moved."""
    spec = spec_for(name)
    broker = _Broker(connection)
    temp = name + MIGRATING_SUFFIX
    if not broker.exists(name) and not broker.exists(temp):
        print(f"{name}: no such queue, nothing to migrate", file=out)
        return 0
    moved = 0
    if broker.exists(name) and broker.is_declared_as(spec):
        if not broker.exists(temp):
            print(f"{name}: already a quorum queue", file=out)
            return 0
    else:
        if broker.exists(name):
            # 1. new messages go to the quorum stand-in, then the classic queue is emptied into it
            broker.declare(spec.queue(temp, with_arguments=False), spec.bindings)
            broker.unbind(name, spec.bindings)
            moved = broker.move(name, temp)
            broker.delete(name)
        # 2. the queue again, as a quorum queue, taking over the bindings before the stand-in lets go
        broker.declare(spec.queue(), spec.bindings)
    broker.unbind(temp, spec.bindings)
    back = broker.move(temp, name)
    if broker.depth(temp) == 0:
        broker.delete(temp)
    print(f"{name}: now a quorum queue ({back} message(s) kept{'' if back == moved else f', {moved} moved out'})",
          file=out)
    return back


def check_queue(connection, name):
    """True when `name` exists as a quorum queue with the arguments Quanzi declares."""
    broker = _Broker(connection)
    return broker.exists(name) and broker.is_declared_as(spec_for(name))


def _names(args):
    names = []
    for item in args:
        if item == "-":
            names += [line.strip() for line in sys.stdin if line.strip()]
        else:
            names.append(item)
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kit.queues", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_cmd = commands.add_parser("migrate", help="re-declare classic queues as quorum queues, keeping messages")
    migrate_cmd.add_argument("queues", nargs="+", help="queue names, or - to read them from stdin")
    check_cmd = commands.add_parser("check", help="exit 1 unless every queue is a quorum queue")
    check_cmd.add_argument("queues", nargs="+")
    args = parser.parse_args(argv)

    from kit.config import DEFAULT_AMQP_URI
    uri = os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI
    names = _names(args.queues)
    for name in names:
        try:
            spec_for(name.removesuffix(MIGRATING_SUFFIX))
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
    with Connection(uri, connect_timeout=5, transport_options={"confirm_publish": True}) as connection:
        connection.ensure_connection(max_retries=2)
        if args.command == "check":
            bad = [name for name in names if not check_queue(connection, name)]
            for name in bad:
                print(f"{name}: not a quorum queue with Quanzi's arguments", file=sys.stderr)
            return 1 if bad else 0
        for name in dict.fromkeys(n.removesuffix(MIGRATING_SUFFIX) for n in names):
            migrate_queue(connection, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
