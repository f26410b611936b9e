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

import requests
from prometheus_client.parser import text_string_to_metric_families

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
        def fetch(item):
            path, token = item
            page = requests.get(f"{self.gateway_url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"},
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

    def wrk(self, name, paths, connections=16, seconds=10, headers=None, tokens=None, url=None):
        """GET a random path of `paths` with wrk (as a random one of `tokens`' users, when given); returns the
        same row shape as measure()."""
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
        return self.run_wrk(name, "\n".join(lines), connections, seconds, url)

    def wrk_post(self, name, path, bodies, tokens, connections=16, seconds=10):
        """POST a random one of `bodies` (JSON-able) to `path` with wrk, as a random one of `tokens`' users, each
        request with an Idempotency-Key of its own (thread id + counter + run id: unique across runs)."""
        run_id = uuid.uuid4().hex[:12]
        script = "\n".join([
            "local bodies = {" + ",".join(json.dumps(json.dumps(b, ensure_ascii=True)) for b in bodies) + "}",
            "local tokens = {" + ",".join(json.dumps(t) for t in tokens) + "}",
            "local threads = 0",
            "function setup(thread) threads = threads + 1; thread:set('tid', threads) end",
            "function init(args) count = 0; math.randomseed(tid * 7919 + os.time()) end",
            "function request()",
            "  count = count + 1",
            f"  return wrk.format('POST', {json.dumps(path)}, {{['Content-Type'] = 'application/json',",
            "    ['Authorization'] = 'Bearer ' .. tokens[math.random(#tokens)],",
            f"    ['Idempotency-Key'] = '{run_id}-' .. tid .. '-' .. count}}, bodies[math.random(#bodies)])",
            "end"])
        return self.run_wrk(name, script, connections, seconds)

    def wrk_each(self, name, requests_, connections=16, seconds=10):
        """POST each (path, token) of `requests_` once (thread k takes items k, k + threads, ...); an item
        used up early repeats and shows as a non-2xx answer."""
        script = "\n".join([
            "local paths = {" + ",".join(json.dumps(p) for p, _ in requests_) + "}",
            "local tokens = {" + ",".join(json.dumps(t) for _, t in requests_) + "}",
            "local threads = 0",
            "function setup(thread) threads = threads + 1; thread:set('tid', threads) end",
            "function init(args) i = tid end",
            "function request()",
            "  local k = ((i - 1) % #paths) + 1; i = i + 2",
            "  return wrk.format('POST', paths[k], {['Authorization'] = 'Bearer ' .. tokens[k]}, '')",
            "end"])
        return self.run_wrk(name, script, connections, seconds)

    def processes(self):
        """name -> pid of every process of the stack: the services, mongod and the broker's Erlang VM."""
        pids = {name: proc.pid for name, proc in self.stack.services.items()}
        if self.stack.mongo:
            pids["mongod"] = self.stack.mongo.pid
        if self.stack.rabbit and self.stack.rabbit.pidfile.exists():
            pids["rabbitmq"] = int(self.stack.rabbit.pidfile.read_text().split()[0])
        return pids

    def cpu_seconds(self):
        """CPU seconds (user + system) used so far by each process of the stack, from /proc/<pid>/stat."""
        ticks = os.sysconf("SC_CLK_TCK")
        used = {}
        for name, pid in self.processes().items():
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            used[name] = (int(fields[11]) + int(fields[12])) / ticks
        return used

    def with_cpu(self, measure, per="request"):
        """Run measure() -> row; add the stack's CPU milliseconds per request (all processes, and each), the
        mean size of the batches each group commit wrote meanwhile, and the load average of the machine at the
        end."""
        before, batches_before = self.cpu_seconds(), self.batch_totals()
        row = measure()
        after, batches_after = self.cpu_seconds(), self.batch_totals()
        done = max(1, row.get("count") or round(row["rps"] * row.get("seconds", 10)))
        each = {name: round(1000 * (after[name] - before.get(name, 0)) / done, 2) for name in after}
        row["cpu_ms"] = round(sum(each.values()), 1)
        row["cpu_ms_by_process"] = each
        row["batch_sizes"] = {}
        for batcher, (count, total) in sorted(batches_after.items()):
            if batcher.startswith("~"):
                continue
            count_before, total_before = batches_before.get(batcher, (0, 0))
            if count > count_before:
                row["batch_sizes"][batcher] = round((total - total_before) / (count - count_before), 1)
        placed = batches_after.get("~placed", (0, 0))[0] - batches_before.get("~placed", (0, 0))[0]
        if placed:
            from_loans = batches_after.get("~placed", (0, 0))[1] - batches_before.get("~placed", (0, 0))[1]
            row["from_stock_loans"] = round(from_loans / placed, 3)
        row["loadavg"] = os.getloadavg()[0]
        return row

    def batch_totals(self):
        """{batcher: (batches, requests)} so far, from every service's quanzi_batch_size histogram (kit.batching):
        how well requests were grouped explains much of a row's CPU per request. Also "~placed": (orders placed,
        of which from stock on loan: orders.loans)."""
        totals = {}
        for service in self.stack.services.values():
            try:
                text = requests.get(service.url + "/metrics", timeout=5).text
            except requests.RequestException:
                continue
            for family in text_string_to_metric_families(text):
                if family.name in ("quanzi_orders_placed", "quanzi_orders_from_stock_loans"):
                    # ("~placed": (single orders placed, of which from stock on loan)): which path a row measured
                    placed, from_loans = totals.get("~placed", (0, 0))
                    for sample in family.samples:
                        if sample.name == "quanzi_orders_placed_total" and sample.labels.get("kind") == "single":
                            placed += sample.value
                        elif sample.name == "quanzi_orders_from_stock_loans_total":
                            from_loans += sample.value
                    totals["~placed"] = (placed, from_loans)
                if family.name != "quanzi_batch_size":
                    continue
                samples = {(s.name, s.labels["batcher"]): s.value for s in family.samples}
                for (name, batcher), value in samples.items():
                    if name == "quanzi_batch_size_count":
                        totals[batcher] = (value, samples[("quanzi_batch_size_sum", batcher)])
        return totals

    def run_wrk(self, name, script_text, connections=16, seconds=10, url=None):
        if not shutil.which("wrk"):
            raise RuntimeError("wrk is not installed (make bench installs Debian's wrk)")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(script_text)
        result = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
                                 url or self.gateway_url], capture_output=True, text=True, check=True)
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
                "count": int(re.search(r"(\d+) requests in", out).group(1)), "seconds": seconds,
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
    rows = [ctx.with_cpu(lambda: ctx.wrk("GET /products/{id}", paths, seconds=seconds))]
    # signed in: every request's token is checked for revocation (logout, password change, suspension) at the
    # gateway from memory, kept fresh by a change stream: this row shows what that costs against the one above
    tokens = [ctx.api.register_user(nickname=f"bench reader {n}")["token"] for n in range(20)]
    rows.append(ctx.with_cpu(lambda: ctx.wrk("GET /products/{id} (signed in)", paths, seconds=seconds,
                                             tokens=tokens)))
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


class BareEndpoint:
    """tools/bare_service.py in a `nameko run` process of its own, on a free port."""

    def __init__(self, stack):
        from tools.stack import free_port, python
        self.port = free_port()
        env = {**os.environ, "AMQP_URI": stack.amqp_uri, "WEB_SERVER_ADDRESS": f"127.0.0.1:{self.port}",
               "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen([python(), "-m", "nameko", "run", "--config", str(REPO / "config" / "nameko.yaml"),
                                      "tools.bare_service:Bare"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + "/bare", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the bare nameko endpoint did not start")
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def measure_bare(ctx, bare, seconds):
    return ctx.wrk("bare nameko HTTP endpoint", ["/bare"], seconds=seconds, url=bare.url)


def main():
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    home = REPO / ".stack" / f"bench-{os.getpid()}"
    stack = Stack(home, env=BENCH_ENV)
    print(f"starting a benchmark stack under {home} ...", flush=True)
    stack.start()
    rows = []
    bare = None
    try:
        ctx = Context(stack)
        bare = BareEndpoint(stack)
        rows.append(measure_bare(ctx, bare, seconds))
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
        rows.append(measure_bare(ctx, bare, seconds))  # again at the end: the machine's load moves
    finally:
        if bare is not None:
            bare.stop()
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
    bare_rps = [r["rps"] for r in rows if r["name"] == "bare nameko HTTP endpoint"]
    bare_mean = sum(bare_rps) / len(bare_rps) if bare_rps else None
    for row in rows:
        row["ratio_to_bare"] = round(row["rps"] / bare_mean, 3) if bare_mean and row.get("rps") else None
    print(f"\nbare nameko HTTP endpoint in this run: {' / '.join(map(str, bare_rps))} req/s (ratios use the mean); "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"\n{'benchmark':50} {'req/s':>8} {'×bare':>6} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>7} "
          f"{'CPU ms/req':>10} {'load':>5}  tool")
    for row in rows:
        print(f"{row['name']:50} {row.get('rps') or '':>8} {row.get('ratio_to_bare') or '':>6} "
              f"{row.get('p50_ms') or '':>8} {row.get('p99_ms') or '':>8} {row.get('errors', ''):>7} "
              f"{row.get('cpu_ms', ''):>10} {row.get('loadavg', '') and round(row['loadavg'], 1):>5}  "
              f"{row.get('tool', '')} {row.get('note', '')}")
        if row.get("cpu_ms_by_process"):
            print(f"{'':50} CPU ms per request by process: " +
                  ", ".join(f"{k} {v}" for k, v in row["cpu_ms_by_process"].items() if v))
        if row.get("batch_sizes"):
            print(f"{'':50} mean batch size: " + ", ".join(f"{k} {v}" for k, v in row["batch_sizes"].items()))
        if "from_stock_loans" in row:
            print(f"{'':50} orders placed from stock on loan: {100 * row['from_stock_loans']:.0f}%")
    (REPO / ".stack").mkdir(exist_ok=True)
    (REPO / ".stack" / "bench-results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
