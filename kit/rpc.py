"""RPC with a time budget: a hung service costs the caller its budget, not a worker forever."""
import eventlet

from kit.errors import Unavailable


def call(method, *args, timeout, error=None, **kwargs):
    """method(*args) through nameko's RpcProxy, or `error` (default: kit.errors.Unavailable, a 503 at the gateway)
    after `timeout` seconds.

    The budget covers sending the request too: a publish that waits on a broker node that just died (its confirm
    never comes) must not hold the caller, and whatever it holds (an order's intent), past the budget."""
    if error is None:
        target = f"{getattr(method, 'service_name', '?')}.{getattr(method, 'method_name', '?')}"
        error = Unavailable(f"{target} did not answer within {timeout:g} s")
    with eventlet.Timeout(timeout, error):
        return method.call_async(*args, **kwargs).result()
