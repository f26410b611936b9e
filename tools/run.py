"""`make run`: the whole stack on this machine, on fixed dev ports, data kept under .stack/dev.

A service process that exits is restarted with backoff and the terminal says so (`orders exited (1), restarting in
2 s`); a crash loop (5 exits within a minute) is reported with the end of its log and that service is given up on
(tools/stack/supervisor.py).
Ctrl-C (SIGINT) or SIGTERM stops the services first, then mongod and the broker, and exits 0.
`python -m tools.run --stop` (`make stop`) stops a stack that is running, or what a killed one left behind.
"""
import os
import signal
import sys
import time

from tools.stack import REPO, Stack, owner_pid, stop_leftovers

HOME = REPO / ".stack" / "dev"


def _interrupt(signum, frame):
    # The first signal stops the stack; further ones must not break off that cleanup halfway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _demo_if_empty(stack):
    """On an empty database, something to look at: the demo (tools/demo.py), loaded through the public API.
    QUANZI_DEMO=0 skips it."""
    if os.environ.get("QUANZI_DEMO", "1") == "0" or not stack.services.get("gateway"):
        return
    import requests

    from tools import demo
    try:
        demo.wait_until_up(stack.gateway_url)
        if requests.get(f"{stack.gateway_url}/api/v1/products", params={"limit": 1}, timeout=10).json()["items"]:
            return
        print("Empty database: loading the demo (make demo)…", flush=True)
        demo.load(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"])
    except Exception as error:  # the stack is up: a demo that failed is worth a line, not a stop
        print(f"The demo did not load: {error}", file=sys.stderr)


def run():
    pid = owner_pid(HOME)
    if pid is not None:
        print(f"A stack is already running from {HOME} (pid {pid}); `make stop` stops it.", file=sys.stderr)
        return 1
    stop_leftovers(HOME)  # from a run that was killed -9
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    stack = Stack(HOME, fixed_ports=True)
    started = time.monotonic()
    failed = start_or_report(stack.start, "stack")  # on failure or Ctrl-C it stops what it started
    if failed is not None:
        return failed

    _demo_if_empty(stack)
    print(f"Quanzi gateway: {stack.gateway_url}")
    print(f"Storefront: {stack.gateway_url}/  (merchant console {stack.gateway_url}/merchant/, admin console "
          f"{stack.gateway_url}/admin/, API reference {stack.gateway_url}/docs)")
    print(f"AMQP_URI={stack.amqp_uri}")
    print(f"MONGO_URI={stack.mongo_uri}")
    for name, proc in stack.services.items():
        print(f"  {name:<12} {proc.url}  log: {proc.log_path}")
    print(f"Logs: {stack.logs_dir}", end="")
    if stack.rabbit:
        print(f", broker {stack.rabbit.log_dir}", end="")
    if stack.mongo:
        print(f", mongod {stack.mongo.log_path}", end="")
    print(f"\nStarted in {time.monotonic() - started:.1f} s. Ctrl-C or `make stop` stops it.", flush=True)

    return serve(stack, stack.stop)


def start_or_report(start, what):
    """start(); None once it started, else the exit status (0 after Ctrl-C, 1 after a failure it reports)."""
    try:
        start()
    except KeyboardInterrupt:
        return 0
    except Exception as error:
        print(f"The {what} did not start: {error}", file=sys.stderr)
        return 1
    return None


def serve(stack, stop_all):
    """Supervise the stack's service processes (a process that exits is restarted with backoff, and the terminal
    says so) until Ctrl-C or SIGTERM; then stop_all(). Returns the exit status."""
    stack.supervise(say=lambda line: print(f"{time.strftime('%H:%M:%S')} {line}", flush=True))
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    print("Stopping…", flush=True)
    stop_all()
    print("Stopped.", flush=True)
    return 0


def stop(home=HOME, leftovers=stop_leftovers, what="`make run`"):
    """Stop the stack whose owner recorded itself under `home`, or what a killed owner left behind."""
    pid = owner_pid(home)
    if pid is None:
        left = leftovers(home)
        print(f"Stopped what a killed {what} left running." if left else "No stack was running.")
        return 0
    os.kill(pid, signal.SIGTERM)  # the owner stops it all, in order
    deadline = time.monotonic() + 120
    while owner_pid(home) == pid:
        if time.monotonic() > deadline:
            print(f"{what} (pid {pid}) is still stopping; see {home / 'logs'}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    print("Stopped.")
    return 0

if __name__ == "__main__":
    sys.exit(stop() if "--stop" in sys.argv[1:] else run())
