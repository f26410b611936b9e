"""Steps of the social scenarios, taken the way a user takes them: through the gateway."""
import json
import re

import kombu
import requests

from tools.flows import SOCIAL_DB, befriend, expect, post  # noqa: F401


def unfriend(api, a, b):
    expect(api.delete(f"/friends/{b['user_id']}", token=a["token"]), 204)


def timeline_ids(api, user, limit=50):
    page = expect(api.get("/timeline", params={"limit": limit}, token=user["token"]), 200)
    return [item["moment_id"] for item in page["items"]]


def detail_status(api, user, moment_id):
    return api.get(f"/moments/{moment_id}", token=user["token"]).status_code


def friend_ids(api, user):
    return [f["user_id"] for f in expect(api.get("/friends", token=user["token"]), 200)["items"]]


def publish_event(amqp_uri, envelope):
    """Put an envelope on social_feed.events as the outbox relay does (a redelivery, to the consumers)."""
    with kombu.Connection(amqp_uri) as connection:
        exchange = kombu.Exchange("social_feed.events", type="topic", durable=True)
        connection.Producer().publish(envelope, exchange=exchange, routing_key=envelope["type"],
                                      serializer="json", declare=[exchange], delivery_mode=2)


def metric(process, name, **labels):
    """A counter's value on a service's /metrics (0 when not exported yet)."""
    text = requests.get(process.url + "/metrics", timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} ([0-9.e+]+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def no_personal_data(message, *users):
    """Nothing of a user but their id: no phone number, no password, no token anywhere in the message."""
    raw = json.dumps(message, ensure_ascii=False)
    for user in users:
        for secret in (user["phone"], user["password"], user["token"]):
            assert secret not in raw
