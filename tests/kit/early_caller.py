"""Services that call the kit's probe (tests/kit/probe_service.py) and print each call's outcome as a line
"call: ...", which tests/kit/test_kit_reply_queue.py reads from their log.
- EarlyCaller: its very first act, at start, is an RPC (a timer's eager tick, as the gateway's first admin profile
  is made). Its reply consumer is late to start, as on a loaded machine, so the race is lost every time, not one
  start in five.
- SteadyCaller: calls every 0.2 s (a timer waits for its previous tick), across a broker restart."""
import time

import eventlet
from nameko.timer import timer

from kit import rpc as kit_rpc
from kit.amqp import QueueConsumer, ReplyListener, RpcProxy

CONSUMER_LATE_BY = 0.5  # s: within kit.amqp.REPLY_QUEUE_WAIT


def timed_call(probe):
    """(seconds the probe's health took to answer, None) or (seconds, the exception instead)."""
    started = time.monotonic()
    try:
        kit_rpc.call(probe.health, timeout=10, error=TimeoutError("no answer"))
        return time.monotonic() - started, None
    except Exception as exc:  # noqa: BLE001 - the test reads what happened
        return time.monotonic() - started, exc


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
    probe = LateRpcProxy("commission")
    called = False

    @timer(interval=60, eager=True)
    def first_call(self):
        if type(self).called:
            return
        type(self).called = True
        seconds, error = timed_call(self.probe)
        print(f"call: answered in {seconds:.2f} s" if error is None else
              f"call: not answered after {seconds:.2f} s: {error!r}", flush=True)


class SteadyCaller:
    name = "kit_steady_caller"
    probe = RpcProxy("commission")

    @timer(interval=0.2)
    def call_again(self):
        seconds, error = timed_call(self.probe)
        print(f"call: ok {seconds:.2f}" if error is None else f"call: failed {seconds:.2f} {type(error).__name__}",
              flush=True)
