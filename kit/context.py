"""The request a log line belongs to. The gateway accepts or creates an X-Request-Id and nameko carries it in
every RPC's context; each worker records it here (a worker is one greenlet, and `nameko run` patches threading
to be greenlet-local), and the logging filter stamps it on every record that worker writes."""
import contextlib
import logging
import threading

from nameko.extensions import DependencyProvider

_current = threading.local()


def current_request_id():
    return getattr(_current, "request_id", None)


@contextlib.contextmanager
def request_id_of(request_id):
    """Log as request `request_id` within the block: work done for another worker (a batch written together)."""
    previous, _current.request_id = current_request_id(), request_id
    try:
        yield
    finally:
        _current.request_id = previous


class RequestContextFilter(logging.Filter):
    def filter(self, record):
        if not hasattr(record, "request_id"):
            request_id = current_request_id()
            if request_id:
                record.request_id = request_id
        return True


class RequestContext(DependencyProvider):
    """Declared on ServiceBase: every worker of every service logs with the request id it serves."""

    def worker_setup(self, worker_ctx):
        _current.request_id = worker_ctx.context_data.get("request_id")

    def worker_teardown(self, worker_ctx):
        _current.request_id = None
