"""Malformed input at the edge: 400 naming the offending field, nothing written, never a 500."""
import pytest

from tests.flows import approved_merchant, expect, product_payload

HUGE = "x" * 100_000
OPERATOR = {"$gt": ""}


def product_with(**changes):
    payload = product_payload("MERCHANT")
    for key, value in changes.items():
        if value is KeyError:
            payload.pop(key)
        else:
            payload[key] = value
    return payload


def sku(**changes):
    base = {"attrs": {"size": "M"}, "price_fen": 100, "stock": 1}
    base.update(changes)
    return [base]


PRODUCT_CASES = [
    ("title", product_with(title=123)),
    ("title", product_with(title=HUGE)),
    ("title", product_with(title=OPERATOR)),
    ("title", product_with(title=KeyError)),
    ("skus", product_with(skus=KeyError)),
    ("skus", product_with(skus=[])),
    ("skus", product_with(skus=sku(price_fen=-1))),
    ("skus", product_with(skus=sku(price_fen=9.5))),
    ("skus", product_with(skus=sku(price_fen="100"))),
    ("skus", product_with(skus=sku(stock=-5))),
    ("skus", product_with(skus=sku(attrs={"$where": "1"}))),
    ("skus", product_with(skus=sku(attrs={"a.b": "1"}))),
    ("merchant_id", product_with(merchant_id=OPERATOR)),
    ("category", product_with(category="$gt")),
    ("images", product_with(images=["javascript:alert(1)"])),
    ("images", product_with(images=["http://insecure.example.com/a.jpg"])),
    ("images", product_with(images=["/media/../openapi.json"])),  # only the site's own pictures, nothing else
    ("images", product_with(images=["//evil.example.com/a.jpg"])),
    ("images", product_with(images=["https://img.example.com/a.jpg"] * 10)),
    ("commission", product_with(commission={"level1_bp": -1, "level2_bp": 0})),
    ("group_buy", product_with(group_buy={"size": 11, "price_fen": 50})),
    ("group_buy", product_with(group_buy={"size": 1, "price_fen": 50})),
    ("unexpected", product_with(unexpected=True)),
]


@pytest.mark.parametrize("field, payload", PRODUCT_CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(PRODUCT_CASES)])
def test_bad_product_payloads_are_refused_and_nothing_is_written(api, mongo, merchant_for_bad_input, field, payload):
    owner, merchant = merchant_for_bad_input
    if payload.get("merchant_id") == "MERCHANT":
        payload = {**payload, "merchant_id": merchant["merchant_id"]}
    response = api.post("/products", json=payload, token=owner["token"])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and field in error["fields"], error
    assert mongo.quanzi_catalog.products.count_documents({"merchant_id": merchant["merchant_id"]}) == 0


# Well-formed, each field valid on its own (the API document calls them valid), refused by a business rule: 422.
PRODUCT_RULE_CASES = [
    ("commission", product_with(commission={"level1_bp": 2500, "level2_bp": 1000})),  # C6: above the 30 % cap
    ("group_buy", product_with(group_buy={"size": 3, "price_fen": 9900})),  # not below the SKU price
]


@pytest.mark.parametrize("field, payload", PRODUCT_RULE_CASES, ids=[f for f, _ in PRODUCT_RULE_CASES])
def test_product_payloads_a_rule_refuses_are_422_and_nothing_is_written(api, mongo, merchant_for_bad_input, field,
                                                                        payload):
    owner, merchant = merchant_for_bad_input
    response = api.post("/products", json={**payload, "merchant_id": merchant["merchant_id"]}, token=owner["token"])
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "rule_refused" and field in error["fields"], error
    assert mongo.quanzi_catalog.products.count_documents({"merchant_id": merchant["merchant_id"]}) == 0


@pytest.fixture(scope="module")
def merchant_for_bad_input(api):
    return approved_merchant(api)


REGISTER_CASES = [
    ("phone", {"phone": "12345", "password": "long-enough", "nickname": "a"}),
    ("phone", {"phone": OPERATOR, "password": "long-enough", "nickname": "a"}),
    ("password", {"phone": "13700000001", "password": "short", "nickname": "a"}),
    ("nickname", {"phone": "13700000002", "password": "long-enough", "nickname": HUGE}),
    ("nickname", {"phone": "13700000003", "password": "long-enough"}),
    ("role", {"phone": "13700000004", "password": "long-enough", "nickname": "a", "role": "admin"}),
    ("_schema", ["not", "an", "object"]),
]


@pytest.mark.parametrize("field, payload", REGISTER_CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(REGISTER_CASES)])
def test_bad_registrations_are_refused_and_create_no_user(api, mongo, field, payload):
    response = api.post("/auth/register", json=payload)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["fields"]
    phone = payload.get("phone") if isinstance(payload, dict) else None
    if isinstance(phone, str):
        assert mongo.quanzi_gateway.users.count_documents({"phone": phone}) == 0


@pytest.mark.parametrize("path, payload, field", [
    ("/auth/login", {"phone": OPERATOR, "password": "x"}, "phone"),
    ("/auth/login", {"phone": "13900000000", "password": OPERATOR}, "password"),
    ("/merchants", {"name": ""}, "name"),
    ("/merchants", {"name": "ok", "status": "approved"}, "status"),
])
def test_bad_bodies_on_other_endpoints_name_the_field(api, path, payload, field):
    token = api.register_user()["token"] if path == "/merchants" else None
    response = api.post(path, json=payload, token=token)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_reject_and_suspend_require_a_reason(api):
    owner = api.register_user()
    merchant = expect(api.post("/merchants", json={"name": "x"}, token=owner["token"]), 201)
    response = api.post(f"/admin/merchants/{merchant['merchant_id']}/reject", json={}, token=api.admin_token())
    assert response.status_code == 400 and "reason" in response.json()["error"]["fields"]
    assert expect(api.get("/me", token=owner["token"]), 200)["merchants"][0]["status"] == "pending"


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"), ({"q": HUGE[:500]}, "q"), ({"sort": "price"}, "sort"),
])
def test_bad_search_parameters_are_400(api, params, field):
    response = api.get("/products", params=params)
    assert response.status_code == 400 and field in response.json()["error"]["fields"]


def test_edge_errors_are_json_never_stack_traces(api, stack):
    import requests
    base = stack.gateway_url
    too_big = requests.post(f"{base}/api/v1/auth/register", data=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                            headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    not_json = requests.post(f"{base}/api/v1/auth/login", data=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "_body" in not_json.json()["error"]["fields"]
    unknown = requests.get(f"{base}/api/v1/no/such/route")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    bad_token = requests.get(f"{base}/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    assert bad_token.status_code == 401
    for response in (too_big, not_json, unknown, bad_token):
        assert "Traceback" not in response.text
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Request-Id"]


def test_request_id_is_echoed(stack):
    import requests
    response = requests.get(f"{stack.gateway_url}/api/v1/products", headers={"X-Request-Id": "trace-abc-123"})
    assert response.headers["X-Request-Id"] == "trace-abc-123"
