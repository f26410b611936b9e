"""The Kubernetes manifests, rendered the way operators apply them (`kubectl kustomize`), checked against the
Kubernetes 1.30 schemas and against the house policy: probes, resources, hardening, spread, disruption budgets,
pinned images, no secret values in git, network isolation."""
import re
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kit.events import dlq_name, retry_queue_name
from tests.deploy.deploy_support import (DOCKERFILE, K8S, KUBERNETES_VERSION, REPO, SERVICE_NAMES, effective_replicas,
                                         named, of_kind, pod_templates, render, render_with_components, selects)

OVERLAYS = ["dev", "prod", "prod+keda"]
PORTS_TO_BACKENDS = {5671, 5672, 27017}  # AMQPS, AMQP, MongoDB
DNS_PORT = 53

# KEDA's custom resources are not in the Kubernetes schemas: the parts Quanzi uses, as KEDA 2.x defines them
# (trigger metadata values are strings: KEDA rejects numbers).
KEDA_SCHEMAS = {
    "ScaledObject": {
        "type": "object", "required": ["spec"],
        "properties": {"spec": {
            "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"],
                                   "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                                  "apiVersion": {"type": "string"}}},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer"}, "cooldownPeriod": {"type": "integer"},
                "fallback": {"type": "object", "required": ["failureThreshold", "replicas"]},
                "advanced": {"type": "object"},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "properties": {"type": {"type": "string"},
                                   "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                                   "authenticationRef": {"type": "object", "required": ["name"]}}}},
            }}},
    },
    "TriggerAuthentication": {
        "type": "object", "required": ["spec"],
        "properties": {"spec": {"type": "object", "properties": {"secretTargetRef": {
            "type": "array", "items": {"type": "object", "required": ["parameter", "name", "key"]}}}}},
    },
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    objects = {"dev": render(K8S / "overlays" / "dev"), "prod": render(K8S / "overlays" / "prod")}
    objects["prod+keda"] = render_with_components(tmp_path_factory.mktemp("keda"), K8S / "overlays" / "prod",
                                                  [K8S / "components" / "keda"])
    return objects


def quanzi_deployments(objects):
    return [d for d in of_kind(objects, "Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "service"]


def image_user():
    """The uid the image's final stage runs as (USER in deploy/docker/Dockerfile)."""
    users = re.findall(r"^USER\s+(\d+)", DOCKERFILE.read_text(), re.M)
    return int(users[-1])


# --- schemas ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_for_kubernetes_1_30(rendered, overlay):
    for obj in rendered[overlay]:
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("keda.sh/"):
            jsonschema.validate(obj, KEDA_SCHEMAS[obj["kind"]])
            continue
        try:  # strict: an unknown or misspelt field is an error, not silently dropped by the API server
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {error.message} at {'/'.join(map(str, error.path))}")


def test_the_validator_catches_a_misspelt_field():
    """Guards the test above: the offline 1.30 schemas really refuse what the API server would drop."""
    probe = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
             "spec": {"selector": {"matchLabels": {"a": "b"}}, "replica": 2,
                      "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(probe, KUBERNETES_VERSION, strict=True)


# --- every service Deployment ------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_quanzi_service_is_deployed_once(rendered, overlay):
    assert sorted(d["metadata"]["name"] for d in quanzi_deployments(rendered[overlay])) == sorted(SERVICE_NAMES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_probes_resources_and_graceful_shutdown(rendered, overlay):
    for deployment in quanzi_deployments(rendered[overlay]):
        name, pod = deployment["metadata"]["name"], deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            ports = {p.get("name") for p in container.get("ports", [])} | {p["containerPort"] for p in
                                                                         container.get("ports", [])}
            assert container["readinessProbe"]["httpGet"]["path"] == "/health", name  # broker + Mongo
            assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", name  # process alive
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert container[probe]["httpGet"]["port"] in ports, f"{name} {probe} probes no declared port"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"]), name
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env["QUANZI_SERVICE"].replace("_", "-") == name, "the Deployment runs another service"
        # Longer than the longest handler (under 30 s) plus the preStop pause.
        assert pod["terminationGracePeriodSeconds"] >= 45, name
        # Service links would put GATEWAY_PORT=tcp://... into the environment, which kit.config refuses.
        assert pod["enableServiceLinks"] is False, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened(rendered, overlay):
    """Deployments, StatefulSets and Jobs alike: the namespace enforces Pod Security "restricted"."""
    namespace = of_kind(rendered[overlay], "Namespace")[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for owner, pod, _ in pod_templates(rendered[overlay]):
        name = f"{owner['kind']}/{owner['metadata']['name']}"
        pod_context = pod.get("securityContext", {})
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, f"{name} mounts an API token it never uses"
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), name
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container.get("securityContext", {})
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, name
            assert context.get("readOnlyRootFilesystem") is True, name
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not context.get("capabilities", {}).get("add"), name
            assert not context.get("privileged"), name
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_pods_run_as_the_images_user(rendered, overlay):
    uid = image_user()
    assert uid == 1000
    for deployment in quanzi_deployments(rendered[overlay]):
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_spreads_over_zones_and_nodes(rendered, overlay):
    for deployment in quanzi_deployments(rendered[overlay]):
        template = deployment["spec"]["template"]
        constraints = template["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} >= {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in constraints:  # a selector that matched nothing would spread nothing
            assert selects(constraint["labelSelector"], template["metadata"]["labels"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_matching_service_and_account(rendered, overlay):
    objects = rendered[overlay]
    accounts = {a["metadata"]["name"]: a for a in of_kind(objects, "ServiceAccount")}
    for deployment in quanzi_deployments(objects):
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        labels, container = template["metadata"]["labels"], template["spec"]["containers"][0]
        port_names = {p["name"] for p in container["ports"]}
        matching = [s for s in of_kind(objects, "Service") if selects(s["spec"].get("selector"), labels)
                    and all(p["targetPort"] in port_names for p in s["spec"]["ports"])]
        assert matching, f"no Service routes to {name}'s pods"
        account = template["spec"]["serviceAccountName"]
        assert accounts[account]["automountServiceAccountToken"] is False, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_with_several_replicas_have_a_disruption_budget(rendered, overlay):
    objects = rendered[overlay]
    budgets = of_kind(objects, "PodDisruptionBudget")
    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        if effective_replicas(objects, deployment) > 1:
            assert len(covering) == 1, f"{deployment['metadata']['name']} has {len(covering)} PDBs"
            assert covering[0]["spec"].get("maxUnavailable", 0) >= 1 or "minAvailable" in covering[0]["spec"]
        else:  # a budget on a single replica would block every node drain
            assert not covering, deployment["metadata"]["name"]


def test_dev_runs_one_replica_each_with_its_own_broker_and_replica_set(rendered):
    objects = rendered["dev"]
    for deployment in quanzi_deployments(objects):
        assert effective_replicas(objects, deployment) == 1
    assert not of_kind(objects, "HorizontalPodAutoscaler")
    for name in ("rabbitmq", "mongodb"):
        stateful = named(objects, "StatefulSet", name)
        mounts = {m["name"] for c in stateful["spec"]["template"]["spec"]["containers"] for m in c["volumeMounts"]}
        claims = {c["metadata"]["name"] for c in stateful["spec"]["volumeClaimTemplates"]}
        assert claims and claims <= mounts, f"{name} keeps its data on a persistent volume"
    mongod = named(objects, "StatefulSet", "mongodb")["spec"]["template"]["spec"]["containers"][0]
    assert mongod["args"][mongod["args"].index("--replSet") + 1] == "rs0"
    init = " ".join(named(objects, "Job", "mongodb-init")["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "rs.initiate" in init and "mongodb-0.mongodb:27017" in init


def test_prod_autoscales_every_deployment_on_cpu_from_at_least_two_replicas(rendered):
    objects = rendered["prod"]
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")}
    assert set(autoscalers) == {d["metadata"]["name"] for d in quanzi_deployments(objects)}
    for deployment in quanzi_deployments(objects):
        name = deployment["metadata"]["name"]
        assert effective_replicas(objects, deployment) >= 2, name
        hpa = autoscalers[name]
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        # The autoscaler owns the count: a fixed one would be reset on every `kubectl apply`.
        assert "replicas" not in deployment["spec"], name
    assert not of_kind(objects, "StatefulSet"), "prod uses operator-managed or external RabbitMQ/MongoDB"


# --- images and secrets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_pinned_by_tag(rendered, overlay):
    for owner, pod, _ in pod_templates(rendered[overlay]):
        for container in pod["containers"] + pod.get("initContainers", []):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert "@sha256:" in image or (tag and tag != "latest"), f"{owner['metadata']['name']}: {image}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_in_the_manifests(rendered, overlay):
    """Secrets are created outside git; the manifests only name them."""
    objects = rendered[overlay]
    for secret in of_kind(objects, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]["name"]
    sensitive = re.compile(r"SECRET|PASSWORD$|_PASS$|TOKEN$|_URI$|_KEY$|CREDENTIAL")
    for config in of_kind(objects, "ConfigMap"):
        for key, value in (config.get("data") or {}).items():
            assert not sensitive.search(key), f"ConfigMap {config['metadata']['name']} holds {key}"
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", value), f"credentials in ConfigMap key {key}"
    for owner, pod, _ in pod_templates(objects):
        for container in pod["containers"] + pod.get("initContainers", []):
            for env in container.get("env", []):
                if sensitive.search(env["name"]):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], env["name"]


def test_the_dev_secret_script_creates_every_secret_and_key_the_manifests_use(rendered, tmp_path):
    """create-secrets.sh, run against a stand-in kubectl that records what it is asked to create."""
    fake = tmp_path / "kubectl"
    log = tmp_path / "calls"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\n"
                    "case \"$*\" in *'get secret'*) exit 1;; esac\nexit 0\n")
    fake.chmod(0o755)
    subprocess.run(["sh", str(K8S / "overlays" / "dev" / "create-secrets.sh"), "quanzi-dev"], check=True,
                   env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, capture_output=True, timeout=30)
    created = {}
    for line in log.read_text().splitlines():
        words = line.split()
        if words[2:5] == ["create", "secret", "generic"]:
            created[words[5]] = {w.removeprefix("--from-literal=").split("=", 1)[0] for w in words[6:]}
    needed = {}
    for _, pod, _ in pod_templates(rendered["dev"]):
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    needed.setdefault(source["secretRef"]["name"], set())
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    needed.setdefault(ref["name"], set()).add(ref["key"])
    for name, keys in needed.items():
        assert name in created, f"create-secrets.sh does not create {name}"
        assert keys <= created[name], f"{name} lacks {keys - created[name]}"
    assert {"AMQP_URI", "MONGO_URI"} <= created["quanzi-backends"]
    assert {"JWT_SECRET", "PAYMENT_HMAC_SECRET", "ADMIN_PHONE", "ADMIN_PASSWORD"} <= created["quanzi-secrets"]


def test_every_setting_the_code_reads_is_configured_or_secret(rendered):
    """A variable the services read but the manifests never set runs on its development default in prod."""
    read = set()
    for path in [*(REPO / "kit").rglob("*.py"), *(REPO / "services").rglob("*.py")]:
        text = path.read_text()
        read |= set(re.findall(r"""(?:env(?:iron)?\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']""", text))
        read |= set(re.findall(r"""environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]""", text))
        read |= set(re.findall(r"""_[a-z]+\(\s*env,\s*["']([A-Z][A-Z0-9_]+)["']""", text))  # kit.config
    config = named(rendered["prod"], "ConfigMap", next(
        c["metadata"]["name"] for c in of_kind(rendered["prod"], "ConfigMap")
        if c["metadata"]["name"].startswith("quanzi-config")))
    secret_keys = {"AMQP_URI", "MONGO_URI", "JWT_SECRET", "PAYMENT_HMAC_SECRET", "ADMIN_PHONE", "ADMIN_PASSWORD"}
    per_pod = {"QUANZI_SERVICE", "WEB_SERVER_ADDRESS"}  # set by the Deployment / the image
    defaults_kept = {"MONGO_DB_PREFIX"}  # database names quanzi_<service>: no reason to differ per cluster
    test_only = {"ORDERS_CRASH_AT"}  # crash points for recovery tests: never in a cluster
    # kit.httpd reads a request's WSGI environ (PEP 3333 names): a request's, not the process's environment
    wsgi = {"REQUEST_METHOD", "PATH_INFO", "SCRIPT_NAME", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
            "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT"}
    missing = read - set(config["data"]) - secret_keys - per_pod - defaults_kept - test_only - wsgi
    assert not missing, f"read by the code, set nowhere in deploy/k8s: {sorted(missing)}"
    for overlay in OVERLAYS:
        for config in of_kind(rendered[overlay], "ConfigMap"):
            assert not test_only & set(config.get("data") or {}), f"{overlay} sets a test-only variable"


# --- network ------------------------------------------------------------------------------------------------------

def policies_for(objects, labels, direction):
    return [p for p in of_kind(objects, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
            and direction in p["spec"].get("policyTypes", [])]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_is_deny_by_default(rendered, overlay):
    deny = [p for p in of_kind(rendered[overlay], "NetworkPolicy")
            if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, "no default-deny policy"
    for owner, _, labels in pod_templates(rendered[overlay]):  # every pod is under it
        assert policies_for(rendered[overlay], labels, "Ingress")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_takes_traffic_and_services_reach_only_broker_database_and_dns(rendered, overlay):
    objects = rendered[overlay]
    for deployment in quanzi_deployments(objects):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for policy in policies_for(objects, labels, "Ingress"):
            for rule in policy["spec"].get("ingress", []):
                assert [p["port"] for p in rule["ports"]] == [8000], f"{name} opens another port"
                for peer in rule["from"]:
                    namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}) \
                        .get("kubernetes.io/metadata.name")
                    pod = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                    assert "ipBlock" not in peer, name
                    if namespace == "monitoring":
                        assert pod == "prometheus"  # the metrics scraper, to every service
                    else:
                        assert name == "gateway", f"{name} takes traffic from {peer}"
                        assert namespace == "ingress-nginx" or pod == "orders"  # payment callback
        for policy in policies_for(objects, labels, "Egress"):
            for rule in policy["spec"].get("egress", []):
                ports = {p["port"] for p in rule.get("ports", [])}
                assert ports, f"{policy['metadata']['name']} lets {name} reach any port"
                if ports == {DNS_PORT}:
                    continue
                if ports == {8000}:
                    assert name == "orders", f"{name} may call another service over HTTP"
                    continue
                assert ports <= PORTS_TO_BACKENDS, f"{name} reaches ports {ports}"


def test_in_cluster_backends_take_only_quanzi_services(rendered):
    objects = rendered["dev"]
    pods = list(pod_templates(objects))
    for backend, port in (("rabbitmq", 5672), ("mongodb", 27017)):
        labels = named(objects, "StatefulSet", backend)["spec"]["template"]["metadata"]["labels"]
        peers = [peer for policy in policies_for(objects, labels, "Ingress") for rule in policy["spec"].get("ingress", [])
                 if port in {p["port"] for p in rule["ports"]} for peer in rule["from"]]
        assert peers
        for peer in peers:
            assert "namespaceSelector" not in peer and "ipBlock" not in peer, f"{backend} open beyond the namespace"
            admitted = [(o["metadata"]["name"], pod_labels) for o, _, pod_labels in pods
                        if selects(peer["podSelector"], pod_labels)]
            assert admitted, f"{backend}: a rule admits no pod at all: {peer}"
            for name, pod_labels in admitted:
                assert pod_labels.get("app.kubernetes.io/component") in ("service", "job") or \
                    pod_labels["app.kubernetes.io/name"] in (backend, f"{backend}-init"), (backend, name)


def test_the_ingress_exposes_the_api_its_documents_and_the_pages_only(rendered):
    pages = {("/", "Exact"), ("/s/", "Prefix"), ("/merchant/", "Prefix"), ("/admin/", "Prefix"),
             ("/assets/", "Prefix"), ("/media/", "Prefix")}
    documents = {("/openapi.json", "Exact"), ("/asyncapi.json", "Exact"), ("/docs", "Prefix")}
    for overlay in ("dev", "prod"):
        (ingress,) = of_kind(rendered[overlay], "Ingress")
        paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
        assert {(p["path"], p["pathType"]) for p in paths} == {("/api/", "Prefix")} | documents | pages
        assert not [p for p in paths if p["pathType"] == "Prefix" and ("/health".startswith(p["path"]) or
                                                                       "/metrics".startswith(p["path"]))]
        for path in paths:  # /metrics and /health stay inside the cluster
            service = named(rendered[overlay], "Service", path["backend"]["service"]["name"])
            assert service["spec"]["selector"]["app.kubernetes.io/name"] == "gateway"
            assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert of_kind(rendered["prod"], "Ingress")[0]["spec"]["tls"], "prod serves HTTPS"


def test_the_ingress_lets_through_the_largest_picture_the_gateway_takes(rendered):
    """A proxy limit below MEDIA_MAX_BYTES would refuse uploads the API documents as allowed."""
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    for overlay in ("dev", "prod"):
        (ingress,) = of_kind(rendered[overlay], "Ingress")
        limit = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
        proxy_bytes = int(limit[:-1]) * units[limit[-1].lower()]
        config = next(c for c in of_kind(rendered[overlay], "ConfigMap")
                      if c["metadata"]["name"].startswith("quanzi-config"))
        assert proxy_bytes >= int(config["data"]["MEDIA_MAX_BYTES"]) >= 1024 * 1024, (overlay, limit)


# --- KEDA -----------------------------------------------------------------------------------------------------------

def consumer_queues():
    """(service, queue) for every event consumer and RPC service, by nameko's queue naming."""
    import ast
    from tools.stack import SERVICES
    queues = []
    for spec in SERVICES:
        queues.append((spec.name, f"rpc-{spec.name}"))
        for node in ast.walk(ast.parse(spec.file.read_text())):
            if isinstance(node, ast.FunctionDef):
                for deco in node.decorator_list:
                    if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "on_event":
                        source, event_type = (a.value for a in deco.args[:2])
                        queues.append((spec.name, f"evt-{source}-{event_type}--{spec.name}.{node.name}"))
    return queues


def test_keda_scales_event_driven_services_on_all_their_queues_and_only_those(rendered):
    objects = rendered["prod+keda"]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(objects, "ScaledObject")}
    assert set(scaled) == {"catalog", "orders", "social-feed", "commission"}
    # KEDA's autoscalers replace the overlay's CPU ones on those Deployments: one autoscaler per Deployment
    cpu = [h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")]
    assert cpu == ["gateway"]
    deployments = {d["metadata"]["name"] for d in of_kind(objects, "Deployment")}
    for target, obj in scaled.items():
        assert target in deployments
        assert "replicas" not in named(objects, "Deployment", target)["spec"], "KEDA owns the count"
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq" and trigger["metadata"]["useRegex"] == "true"
        named(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        pattern = re.compile(trigger["metadata"]["queueName"])
        service = target.replace("-", "_")
        for owner, queue in consumer_queues():
            counted = bool(pattern.search(queue))
            assert counted == (owner == service), f"{target}'s trigger {'counts' if counted else 'misses'} {queue}"
            # Retries wait on purpose and parked messages need an operator: neither calls for more pods.
            for delay_queue in (retry_queue_name(queue, 0, 1.0), retry_queue_name(queue, 2, 30.0), dlq_name(queue)):
                assert not pattern.search(delay_queue), f"{target}'s trigger counts {delay_queue}"
    assert any(owner == "commission" and q.startswith("evt-") for owner, q in consumer_queues()), \
        "expected event consumers in the commission service"


def test_the_manifests_are_plain_yaml_without_templating():
    """Operators read and diff these files: no unrendered placeholders slip through."""
    for path in K8S.rglob("*.yaml"):
        text = path.read_text()
        assert "{{" not in text and "${" not in text, path
        list(yaml.safe_load_all(text))
