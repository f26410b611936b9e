"""A real Prometheus (Debian's package) scraping the local stack, with deploy/prometheus's global settings and
rule files: every service is an `up` target, every rule evaluates cleanly against live metrics, the dashboard's
queries run, and a business counter rises when a shopper places an order through the gateway."""
import signal
import subprocess
import uuid

import pytest
import requests
import yaml

from tests.deploy.deploy_support import PROMETHEUS, RULES, concrete, dashboard_exprs, k8s_name, tool
from tests.helpers import eventually
from tools.stack import free_port

pytestmark = pytest.mark.slow


class PromApi:
    def __init__(self, url):
        self.url = url
        self.http = requests.Session()
        self.http.trust_env = False  # never send 127.0.0.1 through a proxy from the environment

    def get(self, path, **params):
        response = self.http.get(self.url + path, params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr):
        return self.get("/api/v1/query", query=expr)["result"]

    def value(self, expr):
        """The single value of a scalar-like query; 0 when it has no series yet."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    """deploy/prometheus/prometheus.yml's global settings and rules, the stack's services as static targets
    (in a cluster they come from DNS), scraped every second."""
    stack.wait_healthy()  # earlier tests stop and restart services: start from every service serving
    home = tmp_path_factory.mktemp("prometheus")
    shipped = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config = {
        "global": {**shipped["global"], "scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULES],
        "scrape_configs": [{"job_name": "quanzi", "static_configs": [
            {"targets": [f"127.0.0.1:{proc.web_port}"], "labels": {"app": k8s_name(proc.spec), "namespace": "local"}}
            for proc in stack.services.values()]}],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(home / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [tool("prometheus"), f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    api = PromApi(f"http://127.0.0.1:{port}")

    def ready():
        assert proc.poll() is None, (home / "prometheus.log").read_text()
        assert api.http.get(api.url + "/-/ready", timeout=2).status_code == 200
    try:
        eventually(ready, timeout=30, interval=0.2)
        yield api
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_prometheus_scrapes_every_running_service(stack, prometheus):
    def all_up():
        targets = prometheus.get("/api/v1/targets")["activeTargets"]
        health = {t["labels"]["app"]: (t["health"], t["lastError"]) for t in targets}
        assert health == {k8s_name(p.spec): ("up", "") for p in stack.services.values()}
    eventually(all_up, timeout=30, interval=0.5)
    # every service's own metrics arrive, not just a 200 from /metrics
    up_services = {r["metric"]["app"] for r in prometheus.query('up{job="quanzi"} == 1')}
    assert up_services == {k8s_name(p.spec) for p in stack.services.values()}
    assert prometheus.query("quanzi_http_requests_total"), "the gateway's request counter is scraped"


def test_every_alert_and_recording_rule_evaluates_against_live_metrics(prometheus):
    def evaluated():
        groups = prometheus.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == sum(len(g["rules"]) for path in RULES for g in yaml.safe_load(path.read_text())["groups"])
        broken = {r["name"]: (r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"}
        assert not broken, broken
        return rules
    rules = eventually(evaluated, timeout=20, interval=0.5)
    # A healthy stack pages nobody: a paging rule firing on good data would wake someone for nothing.
    firing = [r["name"] for r in rules if r.get("type") == "alerting" and r["state"] == "firing"
              and r["labels"].get("severity") == "page"]
    assert not firing


def test_a_business_counter_rises_when_an_order_is_placed(stack, api, prometheus):
    """Given Prometheus scraping the orders service, when a shopper places an order through the gateway, then
    the orders-placed counter Prometheus holds goes up by one."""
    from tests.orders.shop import open_shop, pay, place

    assert "orders" in stack.services, "the orders service is part of the stack"
    _, _, product, sku_id = open_shop(api, price_fen=2500, stock=5)
    buyer = api.register_user()
    placed = 'sum(quanzi_orders_placed_total{job="quanzi", kind="single"})'
    before = prometheus.value(placed)
    order = place(api, buyer["token"], sku_id, qty=2, key=f"deploy-{uuid.uuid4().hex}")
    assert order["total_fen"] >= 5000
    eventually(lambda: _assert_equal(prometheus.value(placed), before + 1), timeout=15, interval=0.5)
    # and once it is paid, GMV grows by exactly what was paid
    gmv = 'sum(quanzi_gmv_fen_total{job="quanzi"})'
    gmv_before = prometheus.value(gmv) or 0
    pay(api, buyer["token"], order["order_id"])
    eventually(lambda: _assert_equal(prometheus.value(gmv), gmv_before + order["total_fen"]), timeout=15,
               interval=0.5)


def _assert_equal(actual, expected):
    assert actual == expected, f"{actual} != {expected}"


def test_the_dashboard_queries_run_and_show_rpc_traffic_per_service(stack, api, prometheus):
    """The gateway's /health asks every backend over RPC: the per-service RPC rate panel then has a line for
    each of them, and every panel's query runs on real data."""
    backends = {name for name in stack.services if name != "gateway"}
    for _ in range(3):
        api.session.get(stack.gateway_url + "/health", timeout=10)

    def rpc_rate_per_service():
        (title, expr), = [(t, e) for t, e in dashboard_exprs() if t == "RPC requests / s"]
        services = {r["metric"]["service"] for r in prometheus.query(concrete(expr))}
        assert backends <= services, f"{title}: {services}"
    eventually(rpc_rate_per_service, timeout=20, interval=0.5)
    for title, expr in dashboard_exprs():
        prometheus.query(concrete(expr))  # raises with Prometheus's error if a query is wrong
