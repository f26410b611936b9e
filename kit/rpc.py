"""RPC for Quanzi services: quorum request queues, transient reply queues, and time-bounded calls.

Services declare `@rpc` and `RpcProxy` from here (not from nameko.rpc):
- `rpc`: nameko's RPC entrypoint, its `rpc-<service>` queue declared as a quorum queue (kit.queues), so it
  survives the loss of a broker node and keeps the requests queued on the others;
- `RpcProxy`: nameko's proxy, its per-process reply queue a transient, auto-deleted classic queue: it is
  declared again wherever the proxy reconnects (a durable one whose node is down could not be).
"""
import eventlet
from kombu import Queue
from nameko import rpc as nameko_rpc

from kit.queues import quorum


class RpcConsumer(nameko_rpc.RpcConsumer):
    def setup(self):
        super().setup()
        if "x-queue-type" not in (self.queue.queue_arguments or {}):
            self.queue = quorum(self.queue)  # consumed from the queue consumer's next (re)connection on


class Rpc(nameko_rpc.Rpc):
    rpc_consumer = RpcConsumer()


rpc = Rpc.decorator


class ReplyListener(nameko_rpc.ReplyListener):
    def setup(self):
        super().setup()
        queue = self.queue
        self.queue = Queue(queue.name, exchange=queue.exchange, routing_key=queue.routing_key, durable=False,
                           auto_delete=True, queue_arguments=queue.queue_arguments)


class RpcProxy(nameko_rpc.RpcProxy):
    rpc_reply_listener = ReplyListener()


def call(method, *args, timeout, error=None, **kwargs):
    """method(*args) through nameko's RpcProxy, or `error` (default: eventlet.Timeout) after `timeout` seconds.

    The budget covers sending the request too: a publish that waits on a broker node that just died (its confirm
    never comes) must not hold the caller, and whatever it holds (an order's intent), past the budget."""
    with eventlet.Timeout(timeout, error):
        return method.call_async(*args, **kwargs).result()
