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


class QueueConsumer(messaging.QueueConsumer):
    connected = False

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

    def _settle(self, message, action):
        if not message.channel.connection:  # closed: the broker has already taken the message back
            SETTLE_LOST.labels(self.container.service_name, action).inc()
            return
        try:
            getattr(message, action)()
        except BROKER_ERRORS as exc:
            self.connected = False
            SETTLE_LOST.labels(self.container.service_name, action).inc()
            log.warning("%s of a message lost with the broker connection (%s: %s); the broker redelivers it",
                        action, type(exc).__name__, exc)

    def ack_message(self, message):
        self._settle(message, "ack")

    def requeue_message(self, message):
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
