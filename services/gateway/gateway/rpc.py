"""Calling services from routes with a time budget: a hung service costs a route its budget, not forever."""
import eventlet

from gateway.errors import ServiceUnavailable
from kit import rpc as kit_rpc

DEFAULT_TIMEOUT = 10.0


def call(method, *args, timeout=DEFAULT_TIMEOUT, **kwargs):
    return kit_rpc.call(method, *args, timeout=timeout,
                        error=ServiceUnavailable("a backing service did not answer in time"), **kwargs)


LATE_LIMIT = 10.0  # how long a late answer is still waited for, in the background, to fill a cache


def call_all(calls, timeout, on_late=None):
    """Run {name: (method, args)} in parallel; each answer or None when it failed or ran out of time.
    Returns (answers, degraded names). An answer that arrives after `timeout` is handed to on_late(name, answer)
    in the background: under load the next request then finds it cached instead of waiting the budget again."""
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
        for name, reply in pending.items():
            if name not in answers:
                answers[name] = None
                degraded.append(name)
                if on_late is not None:
                    eventlet.spawn_n(_settle_later, reply, lambda answer, name=name: on_late(name, answer), None)
    finally:
        deadline.cancel()
    return answers, degraded


def answer_later(method, args, on_answer, on_failure):
    """method(*args) asked now, nobody waiting: its answer is handed to on_answer(answer) in the background, or
    what failed (an error, no answer within LATE_LIMIT, the broker away) to on_failure(exception)."""
    try:
        reply = method.call_async(*args)
    except Exception as exc:  # noqa: BLE001 - e.g. UnknownService, the broker away: the caller's failure handler
        on_failure(exc)
        return
    eventlet.spawn_n(_settle_later, reply, on_answer, on_failure)


def _settle_later(reply, on_answer, on_failure):
    try:
        with eventlet.Timeout(LATE_LIMIT):
            answer = reply.result()
    except BaseException as exc:  # noqa: B036 - gave up on it (timeout or error): nothing to keep
        if on_failure is not None:
            on_failure(exc)
        return
    on_answer(answer)
