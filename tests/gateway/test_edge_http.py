"""The gateway pipeline over real HTTP: idempotency keys, rate limits, CORS, request ids across services."""
import concurrent.futures
import os
import re
import signal
import time
import uuid

import requests

from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import open_shop, place


def test_a_retried_post_with_the_same_key_creates_once_and_replays_the_answer(api):
    user = api.register_user()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = api.post("/merchants", json={"name": "Retry Shop"}, token=user["token"], headers=key)
    again = api.post("/merchants", json={"name": "Retry Shop"}, token=user["token"], headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert len(expect(api.get("/me", token=user["token"]), 200)["merchants"]) == 1
    # the same key with another body is a client bug, not a retry
    other = api.post("/merchants", json={"name": "Another"}, token=user["token"], headers=key)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]["fields"]
    # a key belongs to its user: someone else's identical key is a different request
    stranger = api.register_user()
    assert api.post("/merchants", json={"name": "Retry Shop"}, token=stranger["token"], headers=key).status_code == 201


def test_concurrent_retries_of_one_key_create_one_thing(stack, api):
    user = api.register_user()
    key = uuid.uuid4().hex

    def attempt(_):
        response = requests.post(f"{stack.gateway_url}/api/v1/merchants", json={"name": "Double Tap"},
                                 headers={"Authorization": f"Bearer {user['token']}", "Idempotency-Key": key})
        return response.status_code, response.json().get("merchant_id")
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(attempt, range(10)))
    assert {status for status, _ in results} == {201}
    assert len({merchant_id for _, merchant_id in results}) == 1
    assert len(expect(api.get("/me", token=user["token"]), 200)["merchants"]) == 1


def test_rate_limits_answer_429_with_retry_after(stack, api):
    strict = stack.add_replica("gateway", {"RATE_LIMIT_USER_PER_SEC": "1", "RATE_LIMIT_USER_BURST": "3",
                                           "RATE_LIMIT_IP_PER_SEC": "5", "RATE_LIMIT_IP_BURST": "8"})
    try:
        base = f"http://127.0.0.1:{strict.web_port}/api/v1"
        token = api.register_user()["token"]
        per_user = [requests.get(f"{base}/me", headers={"Authorization": f"Bearer {token}"}) for _ in range(5)]
        assert [r.status_code for r in per_user[:3]] == [200, 200, 200]
        limited = per_user[-1]
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limited"
        anonymous = [requests.get(f"{base}/products").status_code for _ in range(12)]
        assert 429 in anonymous and anonymous[0] == 200
    finally:
        strict.stop()


def test_cors_answers_allowed_origins_only(stack):
    url = f"{stack.gateway_url}/api/v1/products"
    preflight = requests.options(url, headers={"Origin": "https://shop.example.com",
                                               "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Idempotency-Key" in preflight.headers["Access-Control-Allow-Headers"]
    allowed = requests.get(url, headers={"Origin": "https://shop.example.com"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Access-Control-Allow-Origin" not in requests.get(url, headers={"Origin": "https://evil.example"}).headers


def test_the_request_id_follows_the_request_into_the_services_logs(stack, api):
    user = api.register_user()
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    expect(api.post("/merchants", json={"name": "Traced"}, token=user["token"], headers={"X-Request-Id": request_id}),
           201)

    def logged(service, rpc, request_id):
        lines = [line for line in (stack.logs_dir / f"{service}.log").read_text().splitlines() if request_id in line]
        assert any(re.search(f'"rpc {rpc} ok', line) for line in lines), lines
    eventually(lambda: logged("catalog", "catalog.apply_merchant", request_id), timeout=5)
    # a route answered without a worker (a pay) sends its request id along as a worker does
    _, _, _, sku = open_shop(api, price_fen=900, stock=3)
    order = place(api, user["token"], sku)
    paid_id = f"trace-{uuid.uuid4().hex[:12]}"
    expect(api.post(f"/orders/{order['order_id']}/pay", token=user["token"], headers={"X-Request-Id": paid_id}), 200)
    eventually(lambda: logged("orders", r"orders\.pay(_many)?", paid_id), timeout=5)  # alone, or its batch's first


def test_docs_and_pages_are_served_offline_html_never_cached_hashed_assets_for_a_year(stack):
    """Swagger UI 5 and the storefront come from the web build (web/dist), with no host but ours."""
    for path in ("/docs", "/docs/events", "/", "/s/aZ3kP9qLm2", "/merchant/", "/admin/"):
        page = requests.get(f"{stack.gateway_url}{path}")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html"), path
        assert page.headers["Cache-Control"] == "no-cache", path
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
        assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        assert assets and "http" not in " ".join(re.findall(r'(?:src|href)="([^"]+)"', page.text)), path
    bundle = requests.get(f"{stack.gateway_url}{assets[0]}", headers={"Accept-Encoding": "gzip"})
    assert bundle.status_code == 200 and bundle.headers["Content-Encoding"] == "gzip"
    assert bundle.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert requests.get(f"{stack.gateway_url}/assets/../../README.md").status_code == 404
    assert requests.get(f"{stack.gateway_url}/assets/nope.js").status_code == 404
    doc = requests.get(f"{stack.gateway_url}/asyncapi.json").json()
    assert doc["asyncapi"] == "3.0.0" and "order_paid" in doc["channels"]


def test_a_stopping_gateway_answers_the_pays_it_took_and_refuses_new_ones(stack, api):
    """A pay is answered without a nameko worker (api(..., worker=False)), so nameko's graceful stop, which waits
    for workers, does not wait for it: the route's own stop does. (The stack's own gateway, whose start-up work is
    long done: a fresh replica's could keep it running by itself.)"""
    # given two orders waiting for payment
    _, _, _, sku = open_shop(api, price_fen=1500, stock=5)
    buyer = api.register_user()
    first, second = (place(api, buyer["token"], sku)["order_id"] for _ in range(2))
    headers = {"Authorization": f"Bearer {buyer['token']}"}
    gateway, orders = stack.services["gateway"], stack.services["orders"]
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            os.kill(orders.pid, signal.SIGSTOP)  # the orders service answers nothing for now
            try:
                # when a pay is in flight at the gateway and the gateway is asked to stop
                taken = pool.submit(requests.post, f"{gateway.url}/api/v1/orders/{first}/pay", headers=headers,
                                    timeout=30)
                time.sleep(1.0)
                gateway.terminate()
                time.sleep(0.5)
                # then a request arriving meanwhile is refused, to be retried elsewhere
                late = requests.post(f"{gateway.url}/api/v1/orders/{second}/pay", headers=headers, timeout=10)
                assert late.status_code == 503, late.text
                assert late.json()["error"]["code"] == "shutting_down" and late.headers["Retry-After"]
                time.sleep(3.0)  # longer than the rest of a gateway's stop takes (about 2 s)
                assert not taken.done() and gateway.is_running()  # it waits for the pay it took
            finally:
                os.kill(orders.pid, signal.SIGCONT)
            # and the pay it took is answered once the orders service answers: paid, not cut off by the stop
            answer = taken.result(timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "paid"
        gateway.stop()
        assert gateway.returncode == 0
    finally:
        gateway.stop()
        gateway.start()
        gateway.wait_healthy()
    assert expect(api.get(f"/orders/{second}", token=buyer["token"]), 200)["status"] != "paid"  # charged nothing
