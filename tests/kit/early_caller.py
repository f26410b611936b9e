"""A nameko service whose very first act, at start, is an RPC (a timer's eager tick, as the gateway's first
admin profile is made): it prints how long that call took to be answered, for tests/kit/test_kit_reply_queue.py.
Its reply consumer is late to start, as on a loaded machine, so the race is lost every time, not one start in
five."""
import time

import eventlet
from nameko.timer import timer

from kit import rpc as kit_rpc
from kit.amqp import QueueConsumer, ReplyListener, RpcProxy

CONSUMER_LATE_BY = 0.5  # s: within kit.amqp.REPLY_QUEUE_WAIT


class LateQueueConsumer(QueueConsumer):
    def start(self):
        eventlet.sleep(CONSUMER_LATE_BY)
        super().start()


class LateReplyListener(ReplyListener):
    queue_consumer = LateQueueConsumer()


class LateRpcProxy(RpcProxy):
    rpc_reply_listener = LateReplyListener()


class EarlyCaller:
    name = "kit_early_caller"
    probe = LateRpcProxy("commission")  # tests/kit/probe_service.py
    called = False

    @timer(interval=60, eager=True)
    def first_call(self):
        if type(self).called:
            return
        type(self).called = True
        started = time.monotonic()
        try:
            kit_rpc.call(self.probe.health, timeout=10, error=TimeoutError("no answer"))
            print(f"answered in {time.monotonic() - started:.2f} s", flush=True)
        except Exception as exc:  # noqa: BLE001 - the test reads what happened
            print(f"not answered after {time.monotonic() - started:.2f} s: {exc!r}", flush=True)


class SteadyCaller:
    """Calls the probe every 0.2 s (a timer waits for its previous tick) and prints each call's outcome and time:
    "ok 0.01", or "failed 1.00 ReplyQueueNotConsumed"."""
    name = "kit_steady_caller"
    probe = RpcProxy("commission")

    @timer(interval=0.2)
    def call_again(self):
        started = time.monotonic()
        try:
            kit_rpc.call(self.probe.health, timeout=10, error=TimeoutError("no answer"))
            print(f"ok {time.monotonic() - started:.2f}", flush=True)
        except Exception as exc:  # noqa: BLE001 - the test reads what happened
            print(f"failed {time.monotonic() - started:.2f} {type(exc).__name__}", flush=True)
