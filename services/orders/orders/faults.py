"""Crash points for recovery tests: with `ORDERS_CRASH_AT=<point>#<n>` in its environment, the process dies at
once (no cleanup, like kill -9) the n-th time it passes `reached("<point>")`. Unset in production: a no-op."""
import logging
import os

log = logging.getLogger(__name__)

_spec = os.environ.get("ORDERS_CRASH_AT", "")
_point, _, _nth = _spec.partition("#")
_hits = 0


def reached(point):
    global _hits
    if not _spec or point != _point:
        return
    _hits += 1
    if _hits >= int(_nth or 1):
        log.warning("crash point %s reached: exiting now (ORDERS_CRASH_AT)", point)
        os._exit(137)
