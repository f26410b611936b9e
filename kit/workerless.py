"""Entrypoints that run their method without a nameko worker.

A nameko worker sets up every dependency of the service, and runs their hooks, around each call. For the busiest
entrypoints, whose method only submits its request to a batch (kit.batching.GroupCommit) and waits for the
outcome, that set-up was a large part of their own CPU: the gateway's POST /orders, pays and payment notifications
(`gateway.http.api(..., worker=False)`) and the consumers' events applied together (`kit.events.on_event`,
together=True). Those run the method in the entrypoint's own greenthread, with an instance of the container's
`WorkerlessService` (`Workerless`) as `self`, and wait for such calls themselves when they stop (`InFlight`):
nameko's graceful stop waits for its workers only.
"""
import time

import eventlet
from nameko.extensions import SharedExtension
from nameko.rpc import ServiceProxy

from kit.amqp import RpcProxy

# how long a stopping entrypoint lets the calls it runs without a worker finish: an RPC's budget, and a little
STOP_GRACE = 11.0


class _CallContext:
    """What nameko's RPC proxy reads of a worker's context: its container (the broker's settings) and the context
    data it sends along in the RPC's headers (kit.context: the services log with its request id)."""
    __slots__ = ("container", "context_data")

    def __init__(self, container, context_data):
        self.container, self.context_data = container, context_data


class _PerCall:
    """An attribute of a WorkerlessService instance, made for that call by `get(service)`."""

    def __init__(self, get):
        self.get = get

    def __get__(self, service, owner):
        return self if service is None else self.get(service)


def _proxy_of(provider):
    """A service's RpcProxy: a proxy sending the call's context along, as a worker's does."""
    return _PerCall(lambda service: ServiceProxy(service._call_context, provider.target_service,
                                                 provider.rpc_reply_listener, **provider.options))


def _needs_a_worker(name):
    def refuse(service):
        raise AttributeError(f"{name}: a method run without a worker has the service's RPC proxies and the "
                             "dependencies that are the same for every worker only")
    return _PerCall(refuse)


class WorkerlessService:
    """The service class of a container, as `self` of a method run without a worker: its own methods and
    attributes, its RPC proxies (each sending the call's context along), and the dependencies that are the same for
    every worker (a DependencyProvider with `same_for_every_worker = True`: kit's store and settings), taken once.
    Any other dependency raises AttributeError: a method that needs one needs a worker."""

    def __init__(self, container):
        self.container = container
        attributes, self.shared = {}, {}
        for provider in container.dependencies:
            if isinstance(provider, RpcProxy):
                attributes[provider.attr_name] = _proxy_of(provider)
            elif getattr(provider, "same_for_every_worker", False):
                self.shared[provider.attr_name] = provider.get_dependency(None)
            else:
                attributes[provider.attr_name] = _needs_a_worker(provider.attr_name)
        service_cls = container.service_cls
        self.service_cls = type(f"{service_cls.__name__}WithoutWorker", (service_cls,), attributes)

    def instance(self, context_data):
        service = self.service_cls.__new__(self.service_cls)
        service.__dict__.update(self.shared)
        service._call_context = _CallContext(self.container, context_data)
        return service


class Workerless(SharedExtension):
    """The container's one WorkerlessService, shared by its entrypoints that run methods without a worker; made on
    first use, once the dependencies are set up."""
    _service = None

    def instance(self, context_data):
        if self._service is None:
            self._service = WorkerlessService(self.container)
        return self._service.instance(context_data)


class InFlight:
    """The calls an entrypoint runs without a worker: counted while they run; once `drain` began, `stopping` says
    to refuse new ones (a 503, a message given back to the broker)."""

    def __init__(self):
        self.running = 0
        self.stopping = False

    def begin(self):
        self.running += 1

    def end(self):
        self.running -= 1

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, *exc_info):
        self.end()

    def drain(self, grace=STOP_GRACE):
        """Refuse new calls from now on and wait, at most `grace` seconds, for those running to finish."""
        self.stopping = True
        deadline = time.monotonic() + grace
        while self.running and time.monotonic() < deadline:
            eventlet.sleep(0.05)
