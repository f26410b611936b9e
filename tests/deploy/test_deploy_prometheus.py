"""Monitoring as shipped: the Prometheus config and rules pass promtool, each alert fires in its promtool unit
test, every metric the rules and the Grafana dashboard read is one the code exposes, and the scrape config
finds every service the way the Kubernetes manifests publish it."""
import json
import re

import pytest
import yaml

from tests.deploy.deploy_support import (DASHBOARD, K8S, PROMETHEUS, RULES, SERVICE_NAMES, code_metric_names, concrete,
                                         dashboard_exprs, metric_names_in, named, render, run, tool)

# What operators must be warned about (the list), by alert name.
REQUIRED_ALERTS = {
    "QuanziOutboxBacklogGrowing",          # outbox backlog growing
    "QuanziDeadLetterQueueNotEmpty",       # DLQ not empty (the broker's view)
    "QuanziEventsDeadLettered",            # ... and the services' view
    "QuanziHandlerFailureRate",            # handler failure rate
    "QuanziGatewayLatencyP99High",         # gateway p99 above target
    "QuanziCommissionReconciliationDifference",
}


def rules():
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_config_and_its_rule_files():
    output = run([tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml")])
    assert f"SUCCESS: {len(RULES)} rule files found" in output
    run([tool("promtool"), "check", "rules", *map(str, RULES)])


def test_each_alert_fires_in_its_promtool_unit_test():
    run([tool("promtool"), "test", "rules", str(PROMETHEUS / "tests" / "quanzi.test.yml")])


def test_every_required_alert_exists_and_has_a_unit_test():
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert REQUIRED_ALERTS <= alerts
    tests = yaml.safe_load((PROMETHEUS / "tests" / "quanzi.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    assert alerts <= tested, f"alerts never shown firing: {sorted(alerts - tested)}"
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"]


# Business metrics the alerts and the dashboard need that the services do not export yet (asked of the orders and
# commission services). Each entry must name a metric that is really missing: once a service exports it, the
# test below fails until it is taken off this list, so the list can only shrink.
PENDING_METRICS = {
}


def test_rules_and_dashboard_read_only_metrics_the_code_exposes():
    exposed = code_metric_names()
    exported_now = set(PENDING_METRICS) & exposed
    assert not exported_now, f"now exported: remove {sorted(exported_now)} from PENDING_METRICS"
    exposed |= set(PENDING_METRICS)
    used = {}
    for rule in rules():
        for name in metric_names_in(rule["expr"]):
            used.setdefault(name, rule.get("alert") or rule.get("record"))
    for title, expr in dashboard_exprs():
        for name in metric_names_in(expr):
            used.setdefault(name, f"panel {title!r}")
    unknown = {name: where for name, where in used.items() if name not in exposed}
    assert not unknown, f"no such metric in kit/ or services/: {unknown}"


def test_the_dashboard_shows_red_per_service_and_the_business_counters():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    for metric in ("quanzi_rpc_latency_seconds_count", "quanzi_rpc_errors_total", "quanzi_rpc_latency_seconds_bucket",
                   "quanzi_http_requests_total", "quanzi_http_request_duration_seconds_bucket",
                   "quanzi_events_consumed_total", "quanzi_outbox_backlog"):
        assert metric in exprs, f"no panel reads {metric}"
    assert "by (service" in exprs  # RED broken down per service
    business = [p for p in dashboard["panels"] if p["type"] == "row" and p["title"] == "Business"]
    assert business
    business_names = {name for name in code_metric_names() if re.search(r"orders_|commission|withdrawal", name)}
    assert business_names & metric_names_in(exprs), "no business counter on the dashboard"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["service"]["includeAll"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_promtool_parses_every_dashboard_query(tmp_path):
    """Each panel's query, with Grafana's variables filled in, is valid PromQL."""
    exprs = dashboard_exprs()
    assert exprs
    rules_file = tmp_path / "dashboard.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": concrete(expr)} for i, (_, expr) in enumerate(exprs)]}]}))
    run([tool("promtool"), "check", "rules", str(rules_file)])


def test_the_scrape_config_finds_every_service_where_kubernetes_publishes_it():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "quanzi"]
    names = [name for sd in job["dns_sd_configs"] for name in sd["names"]]
    assert {n.split(".")[0] for n in names} == {f"{s}-pods" for s in SERVICE_NAMES}
    assert all(sd["port"] == 8000 for sd in job["dns_sd_configs"])
    # The metrics carry their own `service` label (the nameko name): the target must not overwrite it.
    assert all(r.get("target_label") != "service" for r in job.get("relabel_configs", []))
    objects = render(K8S / "overlays" / "prod")
    namespace = next(o["metadata"]["name"] for o in objects if o["kind"] == "Namespace")
    for name in names:
        service_name, ns = name.split(".")[:2]
        assert ns == namespace
        service = named(objects, "Service", service_name)
        assert service["spec"]["clusterIP"] == "None", "DNS must list every pod, not one virtual IP"
        assert service["spec"]["publishNotReadyAddresses"] is True, "an unready pod's metrics matter most"
        assert [p["port"] for p in service["spec"]["ports"]] == [8000]


@pytest.mark.parametrize("relabel_input, expected", [
    ("social-feed-pods.quanzi.svc.cluster.local", {"app": "social-feed", "namespace": "quanzi"}),
    ("gateway-pods.quanzi-dev.svc.cluster.local", {"app": "gateway", "namespace": "quanzi-dev"}),
])
def test_targets_are_labelled_with_their_app_and_namespace(relabel_input, expected):
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "quanzi"]
    labels = {}
    for rule in job["relabel_configs"]:  # Prometheus anchors relabel regexes at both ends
        match = re.fullmatch(rule["regex"], relabel_input)
        assert match, rule
        labels[rule["target_label"]] = match.expand(rule["replacement"].replace("$", "\\"))
    assert labels == expected
