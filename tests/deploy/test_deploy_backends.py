"""The opt-in operator-managed backends (components/operator-backends, rendered by overlays/prod-operators): a
RabbitmqCluster of 3 nodes and a MongoDBCommunity replica set of 3 members, and the Secret script that gives the
services the URIs of every node.

The operators' CRD schemas are not shipped in any package here, so the custom resources are checked against
the structure below: the fields Quanzi sets, typed and named as the RabbitMQ Cluster Operator
(rabbitmq.com/v1beta1, 2.x) and the MongoDB Community Operator (mongodbcommunity.mongodb.com/v1, 0.8+) define
them, with unknown fields refused at every level we set, so a misspelt field fails here rather than being
dropped by the API server. Everything else in the render is validated against the Kubernetes 1.30 schemas.
"""
import subprocess

import jsonschema
import kubernetes_validate
import pytest
from kombu import Connection
from pymongo.uri_parser import parse_uri

from tests.deploy.deploy_support import K8S, KUBERNETES_VERSION, named, of_kind, render

COMPONENT = K8S / "components" / "operator-backends"
RESOURCES = {"type": "object", "additionalProperties": False, "properties": {
    "requests": {"type": "object", "additionalProperties": False,
                 "properties": {"cpu": {"type": "string"}, "memory": {"type": "string"}}},
    "limits": {"type": "object", "additionalProperties": False,
               "properties": {"cpu": {"type": "string"}, "memory": {"type": "string"}}}}}
METADATA = {"type": "object", "required": ["name", "namespace"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                           "namespace": {"type": "string"}}}

OPERATOR_SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"metadata": METADATA, "spec": {
            "type": "object", "required": ["replicas"], "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "image": {"type": "string"},
                "resources": RESOURCES,
                "persistence": {"type": "object", "additionalProperties": False,
                                "properties": {"storage": {"type": "string"},
                                               "storageClassName": {"type": "string"}}},
                "rabbitmq": {"type": "object", "additionalProperties": False, "properties": {
                    "additionalPlugins": {"type": "array", "items": {"type": "string"}},
                    "additionalConfig": {"type": "string"},
                    "advancedConfig": {"type": "string"}, "envConfig": {"type": "string"}}},
                "override": {"type": "object", "additionalProperties": False, "properties": {
                    "statefulSet": {"type": "object"}, "service": {"type": "object"}}},
                "affinity": {"type": "object"}, "tolerations": {"type": "array"},
                "service": {"type": "object"}, "tls": {"type": "object"},
            }}},
    },
    ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"metadata": METADATA, "spec": {
            "type": "object", "required": ["members", "type", "version", "security", "users"],
            "additionalProperties": False,
            "properties": {
                "members": {"type": "integer", "minimum": 1},
                "arbiters": {"type": "integer"},
                "type": {"enum": ["ReplicaSet"]},
                "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                "security": {"type": "object", "additionalProperties": False, "properties": {
                    "authentication": {"type": "object", "additionalProperties": False, "properties": {
                        "modes": {"type": "array", "items": {"enum": ["SCRAM", "SCRAM-SHA-1", "SCRAM-SHA-256",
                                                                        "X509"]}},
                        "ignoreUnknownUsers": {"type": "boolean"}}},
                    "tls": {"type": "object"}, "roles": {"type": "array"}}},
                "users": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["name", "db", "passwordSecretRef", "roles", "scramCredentialsSecretName"],
                    "properties": {
                        "name": {"type": "string"}, "db": {"type": "string"},
                        "passwordSecretRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                                              "properties": {"name": {"type": "string"}, "key": {"type": "string"}}},
                        "roles": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["name", "db"], "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "db": {"type": "string"}}}},
                        "scramCredentialsSecretName": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                        "connectionStringSecretName": {"type": "string"}}}},
                "additionalMongodConfig": {"type": "object"},
                "statefulSet": {"type": "object", "required": ["spec"],
                                "properties": {"spec": {"type": "object"}}},
                "replicaSetHorizons": {"type": "array"}, "featureCompatibilityVersion": {"type": "string"},
            }}},
    },
}


@pytest.fixture(scope="module")
def objects():
    return render(K8S / "overlays" / "prod-operators")


def custom(objects):
    return [o for o in objects if (o["apiVersion"], o["kind"]) in OPERATOR_SCHEMAS]


def test_the_structural_check_catches_a_misspelt_field():
    cluster = {"apiVersion": "rabbitmq.com/v1beta1", "kind": "RabbitmqCluster",
               "metadata": {"name": "x", "namespace": "y"}, "spec": {"replica": 3}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, OPERATOR_SCHEMAS[("rabbitmq.com/v1beta1", "RabbitmqCluster")])


def test_every_object_is_valid_the_operators_resources_structurally(objects):
    assert len(custom(objects)) == 2
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in OPERATOR_SCHEMAS:
            jsonschema.validate(obj, OPERATOR_SCHEMAS[key])
        elif not obj["apiVersion"].startswith("keda.sh/"):
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        # the operators' pod overrides must be pod specs too (the container named for MongoDB is "mongod")
    mongo = named(objects, "MongoDBCommunity", "quanzi-mongodb")
    template = mongo["spec"]["statefulSet"]["spec"]["template"]
    assert [c["name"] for c in template["spec"]["containers"]] == ["mongod"]


def test_a_three_node_broker_and_a_three_member_replica_set_in_a_namespace_the_services_may_reach(objects):
    rabbit = named(objects, "RabbitmqCluster", "quanzi-rabbitmq")
    mongo = named(objects, "MongoDBCommunity", "quanzi-mongodb")
    assert rabbit["spec"]["replicas"] == 3 and mongo["spec"]["members"] == 3
    assert "quorum_queue.initial_cluster_size = 3" in rabbit["spec"]["rabbitmq"]["additionalConfig"]
    assert "cluster_partition_handling = pause_minority" in rabbit["spec"]["rabbitmq"]["additionalConfig"]
    data = {rabbit["metadata"]["namespace"], mongo["metadata"]["namespace"]}
    assert data == {"quanzi-data"}
    namespace = named(objects, "Namespace", "quanzi-data")
    egress = named(objects, "NetworkPolicy", "services-to-backends")["spec"]["egress"][0]["to"][0]
    labels = egress["namespaceSelector"]["matchLabels"]
    assert labels.items() <= namespace["metadata"]["labels"].items(), "the services' egress policy reaches it"
    # the services stay where they were: only the backends live in the data namespace
    assert {d["metadata"]["namespace"] for d in of_kind(objects, "Deployment")} == {"quanzi"}
    # and both spread over nodes (one pod per node for the broker)
    spread = rabbit["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert any(c["topologyKey"] == "kubernetes.io/hostname" and c["whenUnsatisfiable"] == "DoNotSchedule"
               for c in spread)


def test_the_secret_script_gives_the_services_every_broker_node_and_every_replica_set_member(objects, tmp_path):
    """create-backends-secret.sh against a stand-in kubectl that answers the operators' Secrets."""
    fake = tmp_path / "kubectl"
    log = tmp_path / "calls"
    # base64 of "quanzi", "s3cret" and "m0ngo"
    fake.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {log}
case "$*" in
  *'get secret quanzi-rabbitmq-default-user'*'username'*) printf cXVhbnpp;;
  *'get secret quanzi-rabbitmq-default-user'*'password'*) printf czNjcmV0;;
  *'get secret quanzi-mongodb-password'*) printf bTBuZ28=;;
esac
exit 0
""")
    fake.chmod(0o755)
    subprocess.run(["sh", str(COMPONENT / "create-backends-secret.sh")], check=True, capture_output=True,
                   env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, timeout=30)
    (create,) = [line for line in log.read_text().splitlines() if " create secret generic quanzi-backends" in line]
    assert create.startswith("-n quanzi ")
    values = dict(w.removeprefix("--from-literal=").split("=", 1) for w in create.split() if "--from-literal" in w)
    rabbit = named(objects, "RabbitmqCluster", "quanzi-rabbitmq")
    mongo = named(objects, "MongoDBCommunity", "quanzi-mongodb")

    # AMQP_URI: a kombu failover URL over the operator's per-pod DNS names, one per node
    nodes = values["AMQP_URI"].split(";")
    assert len(nodes) == rabbit["spec"]["replicas"]
    connection = Connection(values["AMQP_URI"])
    assert connection.alt == nodes
    hosts = sorted(Connection(n).hostname for n in nodes)
    assert hosts == [f"quanzi-rabbitmq-server-{n}.quanzi-rabbitmq-nodes.quanzi-data.svc" for n in range(3)]
    assert all(Connection(n).userid == "quanzi" and Connection(n).password == "s3cret" for n in nodes)

    # MONGO_URI: every member, the replica set the operator names after the resource, durable writes
    parsed = parse_uri(values["MONGO_URI"])
    assert sorted(h for h, _ in parsed["nodelist"]) == [
        f"quanzi-mongodb-{n}.quanzi-mongodb-svc.quanzi-data.svc" for n in range(mongo["spec"]["members"])]
    options = {k.lower(): v for k, v in parsed["options"].items()}
    assert options["replicaset"] == mongo["metadata"]["name"]
    assert options["retrywrites"] is True and options["w"] == "majority" and options["authsource"] == "admin"
    assert parsed["username"] == mongo["spec"]["users"][0]["name"] and parsed["password"] == "m0ngo"
