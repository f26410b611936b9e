#!/bin/sh
# Runs one Quanzi service: QUANZI_SERVICE names it (catalog, orders, social_feed, commission, gateway).
# `exec` makes nameko PID 1, so SIGTERM reaches it directly and it shuts down gracefully.
set -eu

case "${QUANZI_SERVICE:-}" in
    catalog) target=catalog.service:CatalogService ;;
    orders) target=orders.service:OrdersService ;;
    social_feed) target=social_feed.service:SocialFeedService ;;
    commission) target=commission.service:CommissionService ;;
    gateway) target=gateway.service:GatewayService ;;
    *)
        echo "QUANZI_SERVICE='${QUANZI_SERVICE:-}': set it to catalog, orders, social_feed, commission or gateway" >&2
        exit 64
        ;;
esac

# Settings come from the environment (config/nameko.yaml and kit.config read it); a bad value stops the
# service at start with the variable named.
: "${AMQP_URI:?AMQP_URI must be set}"
: "${MONGO_URI:?MONGO_URI must be set}"

# The code sits beside this script (/app in the image).
exec python -m nameko run --config "$(dirname "$0")/config/nameko.yaml" "$target"
