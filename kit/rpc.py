"""RPC with a time budget: a hung service costs the caller its budget, not a worker forever."""
import eventlet


def call(method, *args, timeout, error=None, **kwargs):
    """method(*args) through nameko's RpcProxy, or `error` (default: eventlet.Timeout) after `timeout` seconds."""
    reply = method.call_async(*args, **kwargs)
    with eventlet.Timeout(timeout, error):
        return reply.result()
