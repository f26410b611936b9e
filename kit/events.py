"""Reliable, idempotent event consumers.

`@on_event("orders", "order.paid")` on a service method (the service has a `store` from MongoStore):
- the method runs as `method(self, event, session)` inside a transaction that also records the event id, so
  a redelivered event is applied once (the second run sees the id and does nothing);
- its queue, the retry queues and the dead-letter queue are quorum queues (kit.queues);
- a handler that raises is retried with backoff: the message goes to `<queue>.retry.<n>`, a queue whose TTL
  dead-letters it back into `<queue>`, so a failing message never blocks the others or spins hot;
- a failure because MongoDB or the broker is unreachable (`kit.amqp.is_transient`) is retried for as long as it
  lasts without using up an attempt;
- after the last retry it is parked in `<queue>.dlq` with the error, for an operator to inspect and replay
  (`python -m kit.dlq`), instead of nameko's default of acking and dropping it;
- a handler of events applied together (together=True) runs without a nameko worker (kit.workerless), with the
  service's store, settings and RPC proxies; a stopping service lets those running finish and gives back the
  messages that arrive meanwhile.
"""
import functools
import logging
import sys
import traceback

import eventlet
from kombu import Connection, Exchange
from kombu.pools import producers
from nameko.events import EventHandler

from kit.amqp import QueueConsumer, is_transient
from kit.config import load_settings
from kit.context import request_id_of
from kit.metrics import EVENTS_CONSUMED, HANDLER_FAILURES
from kit.mongo import DUPLICATE
from kit.queues import quorum, quorum_queue, retry_arguments
from kit.workerless import InFlight, Workerless

log = logging.getLogger(__name__)

ATTEMPTS_HEADER = "x-quanzi-attempts"
ERROR_HEADER = "x-quanzi-error"  # the last failure, on retried and parked copies
DEFAULT_EXCHANGE = Exchange("")


def retry_queue_name(queue_name, attempt, delay=None):
    """`<queue>.retry.<attempt>.<delay>ms`. The delay is in the name because RabbitMQ refuses to redeclare a
    queue with another TTL: a service restarted with new EVENT_RETRY_DELAYS would otherwise not start."""
    if delay is None:
        return f"{queue_name}.retry.{attempt}"
    return f"{queue_name}.retry.{attempt}.{round(delay * 1000)}ms"


def dlq_name(queue_name):
    return f"{queue_name}.dlq"


def declare_retry_topology(connection, queue_name, delays):
    """Per-attempt delay queues (one TTL each, so no head-of-line waiting) and the dead-letter queue, all
    quorum queues (kit.queues)."""
    with connection.channel() as channel:
        for attempt, delay in enumerate(delays):
            quorum_queue(retry_queue_name(queue_name, attempt, delay),
                         retry_arguments(queue_name, round(delay * 1000)))(channel).declare()
        quorum_queue(dlq_name(queue_name))(channel).declare()


class ReliableEventHandler(EventHandler):
    queue_consumer = QueueConsumer()  # an ack on a connection the broker dropped is redelivered, not fatal
    workerless = Workerless()  # `self` of a handler run without a worker (worker=False)

    def __init__(self, source_service, event_type, worker=True, **kwargs):
        kwargs.setdefault("reliable_delivery", True)
        super().__init__(source_service, event_type, requeue_on_error=False, **kwargs)
        # worker=False: the handler runs in a greenthread of its own, without a nameko worker (kit.workerless)
        self.worker = worker
        self.in_flight = InFlight()

    def setup(self):
        super().setup()
        if self.reliable_delivery and "x-queue-type" not in (self.queue.queue_arguments or {}):
            self.queue = quorum(self.queue)  # consumed as such from the queue consumer's (re)connections
        settings = load_settings()
        self.delays = settings.event_retry_delays
        self.connection = Connection(settings.amqp_uri, transport_options={"confirm_publish": True})
        declare_retry_topology(self.connection, self.queue.name, self.delays)

    def stop(self):
        super().stop()  # consumes no more: a message given back from here on goes to another consumer
        self.in_flight.drain()  # handlers run without a worker finish (and ack) before the connection goes
        self.connection.release()

    def handle_message(self, body, message):
        if self.worker:
            return super().handle_message(body, message)
        if self.in_flight.stopping:
            self.queue_consumer.requeue_message(message)
            return None
        self.in_flight.begin()  # counted from now: its greenthread may start after a stop began
        eventlet.spawn_n(self._run_without_worker, body, message)
        return None

    def _run_without_worker(self, body, message):
        """The handler with a WorkerlessService instance as `self`, then the outcome settled as a worker's is
        (handle_result: ack, retry or park). In flight until settled."""
        try:
            context = self.unpack_message_headers(message)
            handler = getattr(self.container.service_cls, self.method_name)
            try:
                with request_id_of(context.get("request_id")):
                    result, exc_info = handler(self.workerless.instance(context), body), None
            except Exception:  # noqa: BLE001 - settled below as a worker's failure is: retried, then parked
                result, exc_info = None, sys.exc_info()
            self.handle_result(message, None, result, exc_info)
        finally:
            self.in_flight.end()

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        service = self.container.service_name
        if exc_info is None:
            outcome = "duplicate" if result is DUPLICATE else "applied"
            EVENTS_CONSUMED.labels(service, self.event_type, outcome).inc()
            self.queue_consumer.ack_message(message)
            return result, exc_info
        HANDLER_FAILURES.labels(service, self.event_type).inc()
        attempts = int((message.headers or {}).get(ATTEMPTS_HEADER, 0))
        error = "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip()[:2000]
        try:
            if is_transient(exc_info[1]) and self.delays:
                # MongoDB or the broker is unreachable: not the event's fault. Retry as long as it lasts, without
                # using up an attempt (or the event would be parked after a database restart of a few seconds).
                wait = min(attempts, len(self.delays) - 1)
                self._republish(message, retry_queue_name(self.queue.name, wait, self.delays[wait]), attempts, error)
                EVENTS_CONSUMED.labels(service, self.event_type, "retried").inc()
            elif attempts < len(self.delays):
                self._republish(message, retry_queue_name(self.queue.name, attempts, self.delays[attempts]),
                                attempts + 1, error)
                EVENTS_CONSUMED.labels(service, self.event_type, "retried").inc()
            else:
                self._republish(message, dlq_name(self.queue.name), attempts + 1, error)
                EVENTS_CONSUMED.labels(service, self.event_type, "dead_lettered").inc()
                log.error("event parked in %s after %d attempts: %s", dlq_name(self.queue.name),
                          attempts + 1, error)
        except Exception:
            # Could not hand it on: put it back rather than lose it.
            log.exception("could not schedule a retry; requeueing")
            self.queue_consumer.requeue_message(message)
            return result, exc_info
        self.queue_consumer.ack_message(message)  # only after the broker confirmed the copy
        return result, exc_info

    def _republish(self, message, routing_key, attempts, error):
        headers = dict(message.headers or {})
        headers.update({ATTEMPTS_HEADER: attempts, ERROR_HEADER: error, "x-quanzi-queue": self.queue.name})
        with producers[self.connection].acquire(block=True, timeout=10) as producer:
            producer.publish(message.body, exchange=DEFAULT_EXCHANGE, routing_key=routing_key, headers=headers,
                             content_type=message.content_type, content_encoding=message.content_encoding,
                             delivery_mode=2, retry=True, retry_policy={"max_retries": 3})


def idempotent(method, together=False):
    """Run `method(self, event, session)` once per event id, in one transaction with the dedupe marker.
    together=True: with the events of the service arriving meanwhile, in one transaction
    (BaseStore.apply_once_together), for a handler that writes only through `session`."""
    @functools.wraps(method)
    def wrapper(self, event):
        key = f"{self.name}.{method.__name__}:{event['id']}"
        if together:
            return self.store.apply_once_together(key, lambda session: method(self, event, session), event)
        return self.store.apply_once(key, lambda session: method(self, event, session))
    return wrapper


def on_event(source_service, event_type, together=False, worker=None, **kwargs):
    """together=True: see `idempotent`; for a busy event whose handler writes only through its session. Such a
    handler also runs without a nameko worker (worker=False, the default with together; kit.workerless): it only
    waits for its batch, and a worker per event was a large part of a consumer's CPU."""
    def decorate(method):
        return ReliableEventHandler.decorator(source_service, event_type, worker=not together if worker is None
                                              else worker, **kwargs)(idempotent(method, together))
    return decorate
