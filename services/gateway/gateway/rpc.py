"""Calling services from routes with a time budget: a hung service costs a route its budget, not forever."""
import eventlet

from gateway.errors import ServiceUnavailable

DEFAULT_TIMEOUT = 10.0


def call(method, *args, timeout=DEFAULT_TIMEOUT, **kwargs):
    reply = method.call_async(*args, **kwargs)
    with eventlet.Timeout(timeout, ServiceUnavailable("a backing service did not answer in time")):
        return reply.result()


def call_all(calls, timeout):
    """Run {name: (method, args)} in parallel; each answer or None when it failed or ran out of time.
    Returns (answers, degraded names)."""
    pending, answers, degraded = {}, {}, []
    for name, (method, args) in calls.items():
        try:
            pending[name] = method.call_async(*args)
        except Exception:  # e.g. UnknownService: nothing consumes its queue
            answers[name] = None
            degraded.append(name)
    deadline = eventlet.Timeout(timeout)
    try:
        for name, reply in pending.items():
            try:
                answers[name] = reply.result()
            except eventlet.Timeout:
                raise
            except Exception:
                answers[name] = None
                degraded.append(name)
    except eventlet.Timeout:
        for name in pending:
            if name not in answers:
                answers[name] = None
                degraded.append(name)
    finally:
        deadline.cancel()
    return answers, degraded
