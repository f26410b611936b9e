#!/bin/sh
# Creates (or replaces) the services' Secret "quanzi-backends" for the operator-managed backends of this
# component, from the credentials the operators keep in the namespace quanzi-data:
#   AMQP_URI  kombu failover URL, one amqp:// URI per RabbitMQ node (each service tries them in order)
#   MONGO_URI the three replica set members, replicaSet, retryWrites, w=majority, authSource=admin
#   deploy/k8s/components/operator-backends/create-backends-secret.sh [services namespace] [data namespace]
set -eu
ns="${1:-quanzi}"
data="${2:-quanzi-data}"
secret_value() {  # secret_value <secret> <key>
    kubectl -n "$data" get secret "$1" -o "jsonpath={.data.$2}" | base64 -d
}
rabbit_user="$(secret_value quanzi-rabbitmq-default-user username)"
rabbit_password="$(secret_value quanzi-rabbitmq-default-user password)"
mongo_password="$(secret_value quanzi-mongodb-password password)"

amqp=""
for n in 0 1 2; do
    node="amqp://$rabbit_user:$rabbit_password@quanzi-rabbitmq-server-$n.quanzi-rabbitmq-nodes.$data.svc:5672/"
    amqp="${amqp:+$amqp;}$node"
done
hosts=""
for n in 0 1 2; do
    hosts="${hosts:+$hosts,}quanzi-mongodb-$n.quanzi-mongodb-svc.$data.svc:27017"
done
mongo="mongodb://quanzi:$mongo_password@$hosts/?replicaSet=quanzi-mongodb&authSource=admin&retryWrites=true&w=majority"

kubectl -n "$ns" create secret generic quanzi-backends --from-literal="AMQP_URI=$amqp" \
    --from-literal="MONGO_URI=$mongo" --dry-run=client -o yaml | kubectl apply -f -
echo "secret/quanzi-backends: 3 broker nodes, 3 replica set members; restart the services to use it:"
echo "  kubectl -n $ns rollout restart deploy"
