#!/bin/sh
# Creates the dev overlay's Secrets with random values, once. Secrets never live in git: the manifests only
# reference them by name. Re-running keeps existing Secrets (delete one to rotate it, docs/operations.md).
#   deploy/k8s/overlays/dev/create-secrets.sh [namespace]
set -eu
ns="${1:-quanzi-dev}"
rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"

create() {  # create <name> <key=value>...: only if missing
    name="$1"; shift
    if kubectl -n "$ns" get secret "$name" >/dev/null 2>&1; then
        echo "secret/$name exists: kept"
        return
    fi
    args=""
    for pair in "$@"; do args="$args --from-literal=$pair"; done
    # shellcheck disable=SC2086  # one argument per pair; generated values have no spaces
    kubectl -n "$ns" create secret generic "$name" $args
}

rabbit_password="$(kubectl -n "$ns" get secret rabbitmq-credentials -o jsonpath='{.data.password}' 2>/dev/null \
    | base64 -d 2>/dev/null || true)"
[ -n "$rabbit_password" ] || rabbit_password="$(rand)"

create rabbitmq-credentials "username=quanzi" "password=$rabbit_password"
create quanzi-backends \
    "AMQP_URI=amqp://quanzi:$rabbit_password@rabbitmq:5672/" \
    "MONGO_URI=mongodb://mongodb-0.mongodb:27017/?replicaSet=rs0"
create quanzi-secrets \
    "JWT_SECRET=$(rand)" \
    "PAYMENT_HMAC_SECRET=$(rand)" \
    "ADMIN_PHONE=13800000000" \
    "ADMIN_PASSWORD=$(rand)"
echo "admin password: kubectl -n $ns get secret quanzi-secrets -o jsonpath='{.data.ADMIN_PASSWORD}' | base64 -d"
