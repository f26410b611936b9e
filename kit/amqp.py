"""Entrypoints and proxies that survive the broker going away (a restart, an outage of a minute).

nameko 2.14.1 acks a message on the channel it arrived on, in the worker that handled it. When the broker
restarted meanwhile, that channel's socket is dead: `message.ack()` raises `ConnectionResetError` (nameko's
`QueueConsumer.ack_message` catches only amqp's own `ConnectionError`), and an RPC worker's reply publish raises
`kombu.exceptions.OperationalError`. Both escape from `handle_result`, which nameko treats as fatal: the container
dies and the process exits 1. Yet nothing is wrong that the broker does not repair by itself: a message whose
ack did not arrive is redelivered (consumers dedupe by event id, RPC callers time out and retry with their own
idempotency), and kombu's consumer loop reconnects on its own.

So every Quanzi entrypoint that consumes from the broker goes through `QueueConsumer` below:
- an ack or requeue on a dead connection is logged and counted as "will be redelivered", never raised;
- the acks made in one tick of the event loop are sent together, as one `multiple` ack where no message still
  being handled lies below it (ChannelAcks): a batch of events applied together costs the broker one settle;
- an RPC reply that cannot be published is logged (the caller's time budget runs out), never raised;
- an RPC that failed because MongoDB or the broker is unreachable answers `kit.errors.Unavailable` (the gateway's
  503), not the driver's exception (a 500);
- an RPC request waits (at most REPLY_QUEUE_WAIT) until its process consumes its reply queue, else fails fast
  (ReplyQueueNotConsumed, transient): a reply sent to a queue not declared yet is dropped, and its caller would
  wait out its time budget;
- reconnecting backs off from 0.5 s to at most 5 s (kombu's default grows to 30 s: too slow to be ready again
  soon after the broker is back), and the consumer's state is readiness (`consumer_ready()`, in /health).

Services import `rpc`, `RpcProxy` and `event_handler` from here, never from nameko (a test checks it). The RPC
queues `rpc-<service>` are quorum queues (kit.queues: replicated over a broker cluster), reply queues transient,
and replies are published transient and unconfirmed (ReplyPublisher).
"""
import logging
import sys
import time
from contextlib import contextmanager

import eventlet
import eventlet.semaphore
import kombu
import kombu.exceptions
from amqp.exceptions import AMQPError
from nameko import events as nameko_events
from nameko import messaging
from nameko import rpc as nameko_rpc
from nameko.amqp.publish import Publisher
from nameko.constants import (AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, LOGIN_METHOD_CONFIG_KEY,
                              SERIALIZER_CONFIG_KEY)
from prometheus_client import Counter
from pymongo.errors import ConnectionFailure, PyMongoError

from kit.errors import Unavailable
from kit.queues import quorum

log = logging.getLogger(__name__)

# Reconnect backoff of the consumer loop (seconds): first retry, growth per retry, ceiling.
RECONNECT_START, RECONNECT_STEP, RECONNECT_MAX = 0.5, 1.0, 5.0
# Publishing an RPC request: fail fast while the broker is down (the caller answers 503), do not block 12 s.
PROXY_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.4, "interval_max": 1.0}
# How long a request waits for its process to consume its reply queue (at start, after a reconnection) before it
# fails: about what publishing it retries while the broker is down, so a caller still fails fast through an outage.
REPLY_QUEUE_WAIT = 1.0
REPLY_QUEUE_POLL = 0.02

SETTLE_LOST = Counter("quanzi_amqp_settle_lost_total",
                      "Acks/requeues/replies that could not reach the broker (the broker redelivers the message)",
                      ["service", "action"])
ACKS_SENT = Counter("quanzi_amqp_acked_total",
                    "Messages acked, by how: several in one `multiple` ack frame (together) or one per frame (alone)",
                    ["service", "how"])

BROKER_ERRORS = (OSError, AMQPError, kombu.exceptions.KombuError)

_consumers = []  # the QueueConsumer of this process's container(s), for readiness


def is_transient(exc):
    """True for a failure of the infrastructure (MongoDB or the broker unreachable, a primary stepping down, a
    transaction to be retried), which goes away by itself: retry later, answer 503, never count it as a bug."""
    if isinstance(exc, (ConnectionFailure, eventlet.Timeout, *BROKER_ERRORS)):
        return True
    if isinstance(exc, PyMongoError):
        return exc.has_error_label("TransientTransactionError") or exc.has_error_label("RetryableWriteError")
    return False


def consumer_ready():
    """None when this process consumes nothing, else whether every consumer is connected to the broker."""
    if not _consumers:
        return None
    return all(consumer.connected for consumer in _consumers)


class ChannelAcks:
    """The acks of one channel, sent together. The acks made in one tick of the event loop (the events of a batch
    applied together, the requests of an RPC batch answered) go out at the end of that tick: one `multiple` ack
    of the highest tag below every message still being handled, and single acks for those above it. The broker
    then settles the batch at once; for a quorum queue that is one log entry instead of one per message.

    A `multiple` ack settles every delivery up to its tag on the channel, whichever consumer of the channel (an
    event handler, the RPC consumer, the reply listener) it went to, so it must never reach a message still in a
    handler: each delivery is recorded (`deliver`) before any handler can see it, and leaves the record when it
    is settled, acked here or given back on its own (`settled`). Sends never overlap, so the frames leave in the
    order they were planned."""

    def __init__(self, channel, send):
        self.channel = channel
        self.send = send  # send(self, upto, how many upto acks, singles)
        self.open = set()  # delivered, not settled yet
        self.waiting = []  # acked by their handlers, not sent yet
        self.sending = eventlet.semaphore.Semaphore()

    def deliver(self, tag):
        self.open.add(tag)

    def settled(self, tag):
        """A delivery settled on its own (requeued): no `multiple` ack planned from now on covers it."""
        self.open.discard(tag)

    def ack(self, tag):
        self.waiting.append(tag)
        if len(self.waiting) == 1:
            eventlet.spawn_n(self.flush)  # runs after what this tick has already woken: their acks join this one

    def flush(self):
        with self.sending:
            if not self.waiting:
                return
            tags, self.waiting = self.waiting, []
            upto, together, singles = plan_acks(self.open, tags)
            self.open.difference_update(tags)
            self.send(self, upto, together, singles)


def plan_acks(open_tags, acked):
    """How to send the acks of `acked`, delivery tags among the channel's `open_tags` (its deliveries not settled
    yet, these included): (tag of one `multiple` ack or None, how many of them it acks, [tags acked one by one]).
    The `multiple` ack takes those below the lowest tag that stays open; one alone goes as a single ack."""
    acked = set(acked)
    floor = min(open_tags - acked, default=None)
    below = sorted(tag for tag in acked if floor is None or tag < floor)
    above = sorted(tag for tag in acked if floor is not None and tag > floor)
    if len(below) < 2:
        return None, 0, below + above
    return below[-1], len(below), above


class QueueConsumer(messaging.QueueConsumer):
    connected = False
    _acks = None  # ChannelAcks of the channel consumed now

    def setup(self):
        super().setup()
        _consumers.append(self)

    def stop(self):
        super().stop()
        if self in _consumers:
            _consumers.remove(self)

    def kill(self):
        super().kill()
        if self in _consumers:
            _consumers.remove(self)

    def handle_message(self, provider, body, message):
        # every delivery of the channel passes here, in delivery order, before anything can settle it
        self._acks_of(message.channel).deliver(message.delivery_tag)
        super().handle_message(provider, body, message)

    def _acks_of(self, channel):
        if self._acks is None or self._acks.channel is not channel:  # a (re)connection: tags start at 1 again
            self._acks = ChannelAcks(channel, self._send_acks)
        return self._acks

    def _send_acks(self, acks, upto, together, singles):
        service, unsent = self.container.service_name, together + len(singles)
        try:
            if upto is not None:
                acks.channel.basic_ack(upto, multiple=True)
                ACKS_SENT.labels(service, "together").inc(together)
                unsent -= together
            for tag in singles:
                acks.channel.basic_ack(tag)
                ACKS_SENT.labels(service, "alone").inc()
                unsent -= 1
        except BROKER_ERRORS as exc:
            self._lost("ack", exc, unsent)

    def _settle(self, message, action):
        if not message.channel.connection:  # closed: the broker has already taken the message back
            SETTLE_LOST.labels(self.container.service_name, action).inc()
            return
        try:
            getattr(message, action)()
        except BROKER_ERRORS as exc:
            self._lost(action, exc)

    def _lost(self, action, exc, messages=1):
        """`messages` acks or requeues that the broker connection took down with it: the broker redelivers them."""
        self.connected = False
        SETTLE_LOST.labels(self.container.service_name, action).inc(messages)
        what, it = ("a message", "it") if messages == 1 else (f"{messages} messages", "them")
        log.warning("%s of %s lost with the broker connection (%s: %s); the broker redelivers %s",
                    action, what, type(exc).__name__, exc, it)

    def ack_message(self, message):
        acks = self._acks
        if acks is None or acks.channel is not message.channel or not message.channel.connection:
            self._settle(message, "ack")  # a message of a channel gone: counted lost, the broker redelivers it
            return
        if message.acknowledged:  # as kombu's Message.ack refuses it: an unknown tag would close the channel
            raise kombu.exceptions.MessageStateError(f"Message already acknowledged with state: {message._state}")
        message._state = "ACK"  # as kombu's Message.ack does; the frame goes with the others of this tick
        acks.ack(message.delivery_tag)

    def requeue_message(self, message):
        if self._acks is not None and self._acks.channel is message.channel:
            self._acks.settled(message.delivery_tag)
        self._settle(message, "requeue")

    @contextmanager
    def establish_connection(self):
        """kombu's ConsumerMixin.establish_connection with a shorter backoff (connect_max_retries None: forever)."""
        with self.create_connection() as conn:
            conn.ensure_connection(self.on_connection_error, self.connect_max_retries, interval_start=RECONNECT_START,
                                   interval_step=RECONNECT_STEP, interval_max=RECONNECT_MAX)
            yield conn

    def on_connection_error(self, exc, interval):
        self.connected = False
        super().on_connection_error(exc, interval)

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        if not self.connected:
            log.info("consuming from the broker again" if self._consumers_ready.ready() else "consuming")
        self.connected = True
        super().on_consume_ready(connection, channel, consumers, **kwargs)

    def run(self, *args, **kwargs):
        # kombu's loop logs a lost connection and reconnects; readiness must say so in the meantime.
        try:
            return super().run(*args, **kwargs)
        finally:
            self.connected = False

    def on_consume_end(self, connection, channel):
        self.connected = False
        super().on_consume_end(connection, channel)

    def wait_connected(self, timeout):
        """Whether this consumer consumes (its queues declared), waiting up to `timeout` s for it."""
        deadline = time.monotonic() + timeout
        while not self.connected and time.monotonic() < deadline:
            eventlet.sleep(REPLY_QUEUE_POLL)
        return self.connected


class ReplyPublisher(Publisher):
    """An RPC reply: transient and unconfirmed. It goes to the caller's transient, auto-deleted reply queue, so
    neither persistence nor a confirm makes it any safer (a reply lost with the broker costs the caller its time
    budget either way); the confirm alone was a broker round trip on every RPC, waited for before the ack."""
    use_confirms = False
    delivery_mode = 1


class Responder(nameko_rpc.Responder):
    publisher_cls = ReplyPublisher


class RpcConsumer(nameko_rpc.RpcConsumer):
    queue_consumer = QueueConsumer()

    def setup(self):
        super().setup()
        if "x-queue-type" not in (self.queue.queue_arguments or {}):
            self.queue = quorum(self.queue)  # a quorum queue (kit.queues), from the next (re)connection on

    def handle_result(self, message, result, exc_info):
        if exc_info is not None and is_transient(exc_info[1]):
            log.warning("rpc %s answered unavailable: %s: %s", message.delivery_info.get("routing_key"),
                        exc_info[0].__name__, exc_info[1])
            try:
                raise Unavailable("a backing store is unreachable; retry shortly") from exc_info[1]
            except Unavailable:
                exc_info = sys.exc_info()
        config = self.container.config
        responder = Responder(
            config[AMQP_URI_CONFIG_KEY], nameko_rpc.get_rpc_exchange(config),
            config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
            ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        try:
            result, exc_info = responder.send_response(result, exc_info)
        except BROKER_ERRORS as exc:
            SETTLE_LOST.labels(self.container.service_name, "reply").inc()
            log.warning("rpc reply to %s lost with the broker (%s: %s); the caller's time budget runs out",
                        message.delivery_info.get("routing_key"), type(exc).__name__, exc)
        self.queue_consumer.ack_message(message)
        return result, exc_info


class Rpc(nameko_rpc.Rpc):
    rpc_consumer = RpcConsumer()


rpc = Rpc.decorator


class ReplyQueueNotConsumed(kombu.exceptions.OperationalError):
    """An RPC request not sent: its reply would have nowhere to go (transient, a 503 at the gateway)."""


class ReplyListener(nameko_rpc.ReplyListener):
    queue_consumer = QueueConsumer()

    def setup(self):
        super().setup()
        # Per process: transient and auto-deleted, so it is declared again on whichever broker node the process
        # reconnects to (a durable classic queue whose node is down could not be declared anywhere else).
        queue = self.queue
        self.queue = kombu.Queue(queue.name, exchange=queue.exchange, routing_key=queue.routing_key, durable=False,
                                 auto_delete=True, queue_arguments=queue.queue_arguments)

    def get_reply_event(self, correlation_id):
        """Called just before a request is published. The reply queue exists only once this process consumes
        it: a reply sent before (a timer's first tick races the consumer's start; a broker restart deletes the
        queue until the consumer reconnects) is dropped by the broker, and its caller would wait out its whole
        time budget. So the request waits for the consumer first (at start it is there within milliseconds), at
        most REPLY_QUEUE_WAIT; a consumer still reconnecting then (its backoff reaches RECONNECT_MAX) fails the
        request before it is sent: the caller hears "unavailable, retry" now, and nothing is done unanswered."""
        if not self.queue_consumer.connected and not self.queue_consumer.wait_connected(REPLY_QUEUE_WAIT):
            raise ReplyQueueNotConsumed(f"this process does not consume its RPC replies yet (waited "
                                        f"{REPLY_QUEUE_WAIT:g} s): the broker would drop the reply")
        return super().get_reply_event(correlation_id)


class RpcProxy(nameko_rpc.RpcProxy):
    """nameko's RpcProxy whose requests fail fast (kombu.exceptions.OperationalError) while the broker is down."""
    rpc_reply_listener = ReplyListener()

    def __init__(self, target_service, **options):
        options.setdefault("retry_policy", PROXY_RETRY_POLICY)
        super().__init__(target_service, **options)


class EventHandler(nameko_events.EventHandler):
    queue_consumer = QueueConsumer()


event_handler = EventHandler.decorator
BROADCAST = nameko_events.BROADCAST
SERVICE_POOL = nameko_events.SERVICE_POOL
SINGLETON = nameko_events.SINGLETON
