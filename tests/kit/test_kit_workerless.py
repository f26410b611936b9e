"""kit.workerless: what a method run without a nameko worker sees as `self`, and how its entrypoint stops."""
import time

import eventlet
import pytest
from nameko.extensions import DependencyProvider

from kit.amqp import RpcProxy
from kit.config import Config
from kit.mongo import MongoStore
from kit.workerless import InFlight, WorkerlessService


class Media(DependencyProvider):  # a dependency made per worker, as most are
    def get_dependency(self, worker_ctx):
        return object()


class Shop:
    name = "shop"
    orders = RpcProxy("orders")
    media = Media()

    def describe(self):
        return f"{self.name} with {self.store}"


def bound(provider, name, **attributes):
    provider.attr_name = name
    for key, value in attributes.items():
        setattr(provider, key, value)
    return provider


def container_of(service_cls):
    container = type("Container", (), {})()
    container.service_cls = service_cls
    container.config = {"AMQP_URI": "amqp://guest:guest@127.0.0.1:5672/"}
    store = bound(MongoStore(object), "store")
    store.store = "the store"
    container.dependencies = {
        bound(RpcProxy("orders"), "orders", rpc_reply_listener=object()),
        bound(Config(), "config", settings="the settings"), store, bound(Media(), "media")}
    return container


def test_a_method_run_without_a_worker_has_the_proxies_with_its_call_context_and_the_shared_dependencies_only():
    container = container_of(Shop)
    service = WorkerlessService(container).instance({"request_id": "req-1", "user_id": "usr_1"})
    # its RPC proxies send the call's context along in their headers, as a worker's do
    orders = service.orders
    assert orders.service_name == "orders" and orders.worker_ctx.container is container
    assert orders.worker_ctx.context_data == {"request_id": "req-1", "user_id": "usr_1"}
    # the dependencies that are the same for every worker, and the class's own methods and attributes
    assert (service.store, service.config) == ("the store", "the settings")
    assert service.describe() == "shop with the store" and isinstance(service, Shop)
    # any other dependency needs a worker
    with pytest.raises(AttributeError, match="media: a method run without a worker"):
        service.media  # noqa: B018
    # each call has its own context
    other = WorkerlessService(container).instance({"request_id": "req-2"})
    assert other.orders.worker_ctx.context_data == {"request_id": "req-2"}


def test_a_stopping_entrypoint_refuses_new_calls_and_waits_for_those_running_within_its_grace():
    in_flight = InFlight()
    finished = []

    def call(seconds):
        with in_flight:
            eventlet.sleep(seconds)
            finished.append(seconds)
    eventlet.spawn_n(call, 0.3)
    eventlet.sleep(0)  # the call started
    assert in_flight.running == 1 and not in_flight.stopping
    started = time.monotonic()
    in_flight.drain(grace=5)
    assert finished == [0.3] and in_flight.stopping and in_flight.running == 0
    assert time.monotonic() - started < 1
    # a call that outlasts the grace is not waited for beyond it
    eventlet.spawn_n(call, 5)
    eventlet.sleep(0)
    started = time.monotonic()
    in_flight.drain(grace=0.2)
    assert 0.2 <= time.monotonic() - started < 1 and in_flight.running == 1
