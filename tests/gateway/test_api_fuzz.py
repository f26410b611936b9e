"""Schemathesis against the running gateway's own OpenAPI document (the release gate for the public contract).

Every documented operation is fuzzed (examples, coverage and fuzzing phases; no stateful phase, which would feed
response fields into other requests) and every answer must pass: not_a_server_error (no 5xx but the documented
503 of a backing service too slow for its budget), status code documented, content type documented, body
matching the documented schema.

Three passes: a fresh user with made-up ids (404 and 400 paths), the same user on real resources it owns (a
merchant's product, orders, a refund, a moment, a group buy...: the code behind the 404s), and the admin on
the admin operations. Bounded for CI on 2 cores (about a minute in all): few examples per operation, one
worker, deterministic generation, so a failure reproduces on the next run; the output gives a curl line for
each failure.

Runs the schemathesis CLI (`python -m schemathesis.cli run`): schemathesis 4.32.5's pytest integration
(`schemathesis.pytest.from_fixture`) fails under pytest 9.2 (it sets `Function._nodeid`, gone in 9.2); the CLI
runs the same engine, with every phase, from a config file."""
import json
import os
import re
import subprocess
import sys

import pytest

from tests.flows import expect, product_payload, published_product
from tests.helpers import eventually

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
PHASES = "examples,coverage,fuzzing"
# CI: 10 examples per operation, the same ones every run. A deeper local hunt: QUANZI_FUZZ_EXAMPLES=200
# QUANZI_FUZZ_SEED=<n> (random generation from that seed) make test ARGS=tests/gateway/test_api_fuzz.py
MAX_EXAMPLES = int(os.environ.get("QUANZI_FUZZ_EXAMPLES", "10"))
SEED = os.environ.get("QUANZI_FUZZ_SEED")
ADDRESS = {"recipient": "Fuzz", "phone": "13900000000", "region": "浙江省 杭州市", "detail": "1 Test Road"}


# Operations that end the fuzzer's own session or account: fuzzed on their own, each with a fresh user, so the
# other passes keep a working token (otherwise everything after a logout is a documented but useless 401).
SESSION_ENDERS = ("post_api_v1_auth_logout", "post_api_v1_auth_password", "delete_api_v1_me")


def fuzz(stack, tmp_path, name, token, parameters=None, include_path_regex=None, operations=None,
         exclude=SESSION_ENDERS):
    """Run schemathesis over the live /openapi.json as the bearer of `token`; fail with its report."""
    config = tmp_path / f"{name}.toml"
    # A 503 is a documented answer of every route (a backing service too slow for its budget: it happens on a
    # busy 2-core machine); any other 5xx fails. Path parameters pinned to real ids (TOML: one quoted key per
    # parameter; JSON strings are TOML strings).
    config.write_text('[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "503"]\n\n'
                      "[parameters]\n" + "".join(f'"path.{key}" = {json.dumps(value)}\n'
                                                  for key, value in (parameters or {}).items()))
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
               f"{stack.gateway_url}/openapi.json", "--header", f"Authorization: Bearer {token}",
               "--checks", CHECKS, "--phases", PHASES, "--max-examples", str(MAX_EXAMPLES),
               *(["--seed", SEED] if SEED else ["--generation-deterministic"]), "--workers", "1",
               "--request-timeout", "30",
               "--suppress-health-check", "all", "--output-truncate", "false", "--no-color"]
    if include_path_regex:
        command += ["--include-path-regex", include_path_regex]
    for operation_id in operations or ():
        command += ["--include-operation-id", operation_id]
    excluded = [] if operations else list(exclude)
    for operation_id in excluded:
        command += ["--exclude-operation-id", operation_id]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}  # 127.0.0.1, never a proxy
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis ({name}) found problems:\n{report[-30000:]}"
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert counts, report[-3000:]
    selected, total, tested = map(int, counts.groups())
    assert tested == selected > 0 and (include_path_regex or operations or selected == total - len(excluded)), \
        counts.group(0)
    return report


@pytest.fixture(scope="module")
def owner_world(api):
    """A fresh user who owns an approved merchant with a group-buy product and is also its customer: a completed
    order with an after-sales refund waiting for the merchant, an unpaid order, an open group, a moment, a share
    link, and a friend request from someone else waiting for an answer."""
    owner, merchant, product = published_product(
        api, group_buy={"size": 3, "price_fen": 5000, "window_seconds": 3600}, stock=1000)
    token = owner["token"]
    sku_id = product["skus"][0]["sku_id"]
    order = expect(api.post("/orders", json={"items": [{"sku_id": sku_id, "qty": 1}], "address": ADDRESS},
                            token=token), 201)
    expect(api.post(f"/orders/{order['order_id']}/pay", token=token), 200)
    expect(api.post(f"/orders/{order['order_id']}/ship", json={"carrier": "SF", "tracking_no": "SF1"},
                    token=token), 200)
    expect(api.post(f"/orders/{order['order_id']}/confirm-receipt", token=token), 200)
    refund = expect(api.post(f"/orders/{order['order_id']}/refunds", json={"reason": "damaged", "amount_fen": 100},
                             token=token), 201)
    # a review of that order, and a rejected refund escalated to a dispute (another completed order)
    review = eventually(lambda: expect(api.post(f"/products/{product['product_id']}/reviews", json={
        "order_id": order["order_id"], "rating": 4}, token=token), 201), timeout=15)
    disputed = expect(api.post("/orders", json={"items": [{"sku_id": sku_id, "qty": 1}], "address": ADDRESS},
                               token=token), 201)["order_id"]
    expect(api.post(f"/orders/{disputed}/pay", token=token), 200)
    expect(api.post(f"/orders/{disputed}/ship", json={"carrier": "SF", "tracking_no": "SF1"}, token=token), 200)
    rejected = expect(api.post(f"/orders/{disputed}/refunds", json={"reason": "damaged"}, token=token), 201)
    expect(api.post(f"/refunds/{rejected['refund_id']}/reject", json={"reason": "fine"}, token=token), 200)
    dispute = expect(api.post(f"/refunds/{rejected['refund_id']}/escalate", json={"reason": "it is not"},
                              token=token), 201)
    unpaid = expect(api.post("/orders", json={"items": [{"sku_id": sku_id, "qty": 1}], "address": ADDRESS},
                             token=token), 201)
    group = expect(api.post("/group-buys", json={"sku_id": sku_id, "address": ADDRESS}, token=token), 201)
    share = expect(api.post("/shares", json={"product_id": product["product_id"]}, token=token), 201)
    moment = expect(api.post("/moments", json={"text": "try this", "product_id": product["product_id"],
                                               "visibility": "public"}, token=token), 201)
    asker = api.register_user(nickname="asker")
    friend_request = expect(api.post("/friends/requests", json={"user_id": owner["user_id"]},
                                     token=asker["token"]), 201)
    return {"token": token, "parameters": {
        "merchant_id": merchant["merchant_id"], "product_id": product["product_id"], "order_id": unpaid["order_id"],
        "refund_id": refund["refund_id"], "group_id": group["group"]["group_id"], "moment_id": moment["moment_id"],
        "share_code": share["share_code"], "request_id": friend_request["request_id"], "user_id": asker["user_id"],
        "review_id": review["review_id"], "dispute_id": dispute["dispute_id"],
    }}


def test_every_operation_with_made_up_ids_as_a_signed_in_user(stack, api, tmp_path):
    fuzz(stack, tmp_path, "made-up-ids", api.register_user(nickname="fuzzer")["token"])


def test_every_operation_on_real_resources_as_their_owner(stack, tmp_path, owner_world):
    fuzz(stack, tmp_path, "owner", owner_world["token"], owner_world["parameters"])


def test_admin_operations_as_the_admin(stack, api, tmp_path, owner_world):
    pending = expect(api.post("/merchants", json={"name": "Pending shop"},
                              token=api.register_user(nickname="applicant")["token"]), 201)
    fuzz(stack, tmp_path, "admin", api.admin_token(),
         {**owner_world["parameters"], "merchant_id": pending["merchant_id"]},
         include_path_regex=r"^/api/v1/(admin/|orders|products/\{product_id\}$|group-buys/\{group_id\}$)")


@pytest.mark.parametrize("operation_id", SESSION_ENDERS)
def test_operations_that_end_a_session_each_with_a_fresh_user(stack, api, tmp_path, operation_id):
    fuzz(stack, tmp_path, operation_id, api.register_user(nickname="leaver")["token"], operations=[operation_id])


# -- inputs the generator never makes (hypothesis draws valid Unicode only), found by hand ---------------------
@pytest.mark.parametrize("method, path, raw_body", [
    ("POST", "/auth/register", '{"phone": "13911112222", "password": "long-enough", "nickname": "\\ud800"}'),
    ("POST", "/merchants", '{"name": "shop \\ud800"}'),
    ("POST", "/moments", '{"text": "hi \\udc00 there"}'),
    ("PATCH", "/profile", '{"nickname": "\\ud83d"}'),  # the first half of an emoji, alone
])
def test_text_with_an_unpaired_surrogate_is_refused_as_bad_input_not_a_server_error(api, method, path, raw_body):
    user = api.register_user()
    response = api.request(method, path, token=user["token"], data=raw_body.encode(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["fields"] == {"_body": ["Unpaired surrogate."]}


@pytest.mark.parametrize("depth", [1_000, 200_000])  # 200,000 deep is 400 kB: under the 1 MiB limit
def test_json_nested_deeper_than_the_parser_goes_is_refused_as_bad_input(api, depth):
    response = api.post("/merchants", token=api.register_user()["token"], headers={"Content-Type": "application/json"},
                        data=("{\"name\": " + "[" * depth + "]" * depth + "}").encode())
    assert response.status_code == 400, response.text
    assert response.json()["error"]["fields"] == {"_body": ["Nested too deeply."]}


@pytest.mark.parametrize("method, path", [
    ("GET", "/orders/%C3%A9t%C3%A9"), ("POST", "/orders/a.b/pay"), ("POST", "/refunds/" + "r" * 65 + "/approve"),
    ("GET", "/group-buys/grp%20x"), ("GET", "/users/usr_1%0A"),
])
def test_a_path_segment_that_cannot_be_an_id_is_not_found(api, method, path):
    response = api.request(method, path, token=api.register_user()["token"])
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
