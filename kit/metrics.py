"""Prometheus metrics every service exposes at /metrics. Labels carry ids of nothing personal: service,
method, event type, outcome."""
import logging
import time

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger("quanzi.rpc")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

RPC_LATENCY = Histogram("quanzi_rpc_latency_seconds", "RPC handling time per method",
                        ["service", "method"], buckets=LATENCY_BUCKETS)
RPC_ERRORS = Counter("quanzi_rpc_errors_total", "RPCs that raised, by error class",
                     ["service", "method", "error"])
EVENTS_PUBLISHED = Counter("quanzi_events_published_total", "Events confirmed by the broker",
                           ["service", "type"])
EVENTS_CONSUMED = Counter("quanzi_events_consumed_total",
                          "Events handled: applied, duplicate, retried or dead_lettered",
                          ["service", "type", "outcome"])
HANDLER_FAILURES = Counter("quanzi_handler_failures_total", "Event handler runs that raised",
                           ["service", "type"])
OUTBOX_BACKLOG = Gauge("quanzi_outbox_backlog", "Outbox events not yet confirmed by the broker", ["service"])
BATCH_SIZE = Histogram("quanzi_batch_size", "Requests written together in one batch (kit.batching.GroupCommit)",
                       ["batcher"], buckets=(1, 2, 4, 8, 16, 32, 64))
BATCH_ALONE = Counter("quanzi_batch_alone_total",
                      "Requests a GroupCommit let through on their own (nothing else was being written)", ["batcher"])
OUTBOX_OLDEST_AGE = Gauge("quanzi_outbox_oldest_pending_seconds", "Age of the oldest unpublished event",
                          ["service"])


class RpcMetrics(DependencyProvider):
    """Times every RPC of the service it is declared on."""

    def setup(self):
        self._started = {}

    def worker_setup(self, worker_ctx):
        if isinstance(worker_ctx.entrypoint, Rpc):
            self._started[worker_ctx.call_id] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self._started.pop(worker_ctx.call_id, None)
        if started is None:
            return
        service, method = worker_ctx.service_name, worker_ctx.entrypoint.method_name
        elapsed = time.perf_counter() - started
        RPC_LATENCY.labels(service, method).observe(elapsed)
        outcome = "ok" if exc_info is None else exc_info[0].__name__
        if exc_info is not None:
            RPC_ERRORS.labels(service, method, outcome).inc()
        # one access line per RPC (ids only): with the request id, a request can be followed through services
        log.info("rpc %s.%s %s %.1f ms", service, method, outcome, elapsed * 1000)
