"""`make bench`: throughput and latency of the hot paths on this machine, against a real local stack.

Starts a throw-away stack (its own ports, rate limits opened up so the benchmark measures the system, not the
limiter), seeds data through the public API, then measures. High-rate GETs use `wrk` (a C load generator in its
own process) so the load generator does not take the gateway's CPU; lower-rate flows use `ctx.measure`, a thread
pool of Python clients. Service issues add their own `tools/bench_<name>.py` with `run(ctx) -> [rows]`.
Results are printed as a table and written to .stack/bench-results.json.
"""
import concurrent.futures
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

from tools.flows import approved_merchant, expect, product_payload
from tools.client import Api
from tools.stack import REPO, SERVICES, Stack

# The plugins reuse the services' own builders and signing code, as the tests do (pytest.ini's pythonpath).
sys.path[1:1] = [str(spec.path) for spec in SERVICES]

BENCH_ENV = {
    "RATE_LIMIT_IP_PER_SEC": "1000000", "RATE_LIMIT_IP_BURST": "1000000",
    "RATE_LIMIT_USER_PER_SEC": "1000000", "RATE_LIMIT_USER_BURST": "1000000",
    "PASSWORD_HASH_LOG2N": "12", "LOG_LEVEL": "WARNING", "SWEEP_INTERVAL": "1",
}
PLUGINS = ["bench_orders", "bench_social", "bench_commission", "bench_gateway"]


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else None


class Context:
    def __init__(self, stack):
        self.stack = stack
        self.gateway_url = stack.gateway_url
        self.amqp_uri, self.mongo_uri = stack.amqp_uri, stack.mongo_uri
        self.api = Api(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"])
        self._rpc = None

    @property
    def rpc(self):
        if self._rpc is None:
            from nameko.standalone.rpc import ClusterRpcProxy
            self._proxy = ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=60)
            self._rpc = self._proxy.start()
        return self._rpc

    def measure(self, name, fn, concurrency=16, seconds=10, warmup=1.0):
        """Run fn() from `concurrency` threads for `seconds`; fn raises on a bad answer (counted as error)."""
        latencies, errors, lock = [], [0], threading.Lock()
        stop_at = time.monotonic() + warmup + seconds
        measure_from = time.monotonic() + warmup

        def worker():
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    fn()
                    ok = True
                except Exception:
                    ok = False
                ended = time.monotonic()
                if started >= measure_from:
                    with lock:
                        if ok:
                            latencies.append(ended - started)
                        else:
                            errors[0] += 1
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            for future in [pool.submit(worker) for _ in range(concurrency)]:
                future.result()
        return {"name": name, "rps": round(len(latencies) / seconds, 1),
                "p50_ms": round(1000 * percentile(latencies, 0.50), 1) if latencies else None,
                "p99_ms": round(1000 * percentile(latencies, 0.99), 1) if latencies else None,
                "errors": errors[0], "concurrency": concurrency, "tool": "python threads"}

    def measure_pages(self, requests_, concurrency=16):
        """How many of these (path, token) product pages came back with a `degraded` part, fetched 16 at a time."""
        import requests as http

        def fetch(item):
            path, token = item
            page = http.get(f"{self.gateway_url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"},
                            timeout=10).json()
            return bool(page.get("degraded"))
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            degraded = sum(pool.map(fetch, requests_))
        return f"{degraded}/{len(requests_)}"

    def rpc_rate(self, name, call, concurrency=16, seconds=10):
        """RPCs/s with `concurrency` calls in flight: call(rpc) runs with a proxy of its thread's own
        (standalone proxies are not thread-safe)."""
        from nameko.standalone.rpc import ClusterRpcProxy
        proxies, local, lock = [], threading.local(), threading.Lock()

        def fn():
            if not hasattr(local, "rpc"):
                proxy = ClusterRpcProxy({"AMQP_URI": self.amqp_uri}, timeout=60)
                with lock:
                    proxies.append(proxy)
                local.rpc = proxy.start()
            call(local.rpc)
        try:
            return self.measure(name, fn, concurrency=concurrency, seconds=seconds)
        finally:
            for proxy in proxies:
                proxy.stop()

    def wrk(self, name, paths, connections=16, seconds=10, headers=None, tokens=None):
        """GET a random path of `paths` with wrk (as a random one of `tokens`' users, when given); returns the
        same row shape as measure()."""
        if not shutil.which("wrk"):
            raise RuntimeError("wrk is not installed (make bench installs Debian's wrk)")
        # paths are URL-encoded ASCII: Lua has no \\u escapes, and a script error makes wrk fall back to "GET /"
        lines = ["local paths = {" + ",".join(json.dumps(urllib.parse.quote(p, safe="/?=&+")) for p in paths) + "}"]
        for key, value in (headers or {}).items():
            lines.append(f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}")
        if tokens:
            lines.append("local tokens = {" + ",".join(json.dumps(t) for t in tokens) + "}")
            lines.append("request = function() return wrk.format('GET', paths[math.random(#paths)], "
                         "{Authorization = 'Bearer ' .. tokens[math.random(#tokens)]}) end")
        else:
            lines.append("request = function() return wrk.format('GET', paths[math.random(#paths)]) end")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write("\n".join(lines))
        result = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
                                 self.gateway_url], capture_output=True, text=True, check=True)
        if result.stderr.strip():
            raise RuntimeError(f"wrk: {result.stderr.strip()}")
        out = result.stdout
        os.unlink(script.name)

        def ms(label):
            match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
            value, unit = float(match.group(1)), match.group(2)
            return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        return {"name": name, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                "p50_ms": ms("50"), "p99_ms": ms("99"),
                "errors": int(non_2xx.group(1)) if non_2xx else 0, "concurrency": connections, "tool": "wrk",
                "socket_errors": socket_errors.group(1) if socket_errors else None}


def bench_catalog(ctx, seconds):
    owner, merchant = approved_merchant(ctx.api)
    tag = uuid.uuid4().hex[:6]
    products = [expect(ctx.api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], title=f"Bench tea {tag} 龙井 no{i}", stock=1_000_000)), 201) for i in range(50)]
    paths = [f"/api/v1/products/{p['product_id']}" for p in products]
    for path in paths:  # the read model fills on first view; measure the steady state
        ctx.api.session.get(ctx.gateway_url + path)
    rows = [ctx.wrk("GET /products/{id}", paths, seconds=seconds)]
    queries = [f"/api/v1/products?q={q}" for q in (tag, f"{tag}+龙井", "bench", "tea", f"no{7}")]
    rows.append(ctx.wrk("GET /products?q=", queries, seconds=seconds))

    skus = [p["skus"][0]["sku_id"] for p in products]
    counter = iter(range(10**9))

    def reserve(rpc):
        sku = skus[next(counter) % len(skus)]
        rpc.catalog.reserve_stock({"order_id": f"ord_bench{uuid.uuid4().hex[:16]}",
                                       "lines": [{"sku_id": sku, "qty": 1}]})
    rows.append(ctx.rpc_rate("RPC catalog.reserve_stock", reserve, seconds=seconds))
    return rows


def main():
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    home = REPO / ".stack" / f"bench-{os.getpid()}"
    stack = Stack(home, env=BENCH_ENV)
    print(f"starting a benchmark stack under {home} ...", flush=True)
    stack.start()
    rows = []
    try:
        ctx = Context(stack)
        only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))  # e.g. BENCH_ONLY=catalog,gateway
        if not only or "catalog" in only:
            rows += bench_catalog(ctx, seconds)
        for plugin in PLUGINS:
            if only and plugin.removeprefix("bench_") not in only:
                continue
            try:
                module = importlib.import_module(f"tools.{plugin}")
            except ModuleNotFoundError as err:
                if err.name != f"tools.{plugin}":
                    raise
                continue
            rows += module.run(ctx)
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"\n{'benchmark':48} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  tool")
    for row in rows:
        print(f"{row['name']:48} {row.get('rps') or '':>9} {row.get('p50_ms') or '':>8} {row.get('p99_ms') or '':>8} "
              f"{row.get('errors', ''):>7}  {row.get('tool', '')} {row.get('note', '')}")
    (REPO / ".stack").mkdir(exist_ok=True)
    (REPO / ".stack" / "bench-results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
