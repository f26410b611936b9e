"""Racing clients over HTTP: stock never oversold, a group never over-filled, one Idempotency-Key one order."""
import concurrent.futures
import threading
import time
import uuid
from collections import Counter

import pytest

from tests.flows import expect
from tests.helpers import Api
from tests.orders.shop import ADDRESS, mint_buyers, open_shop, order_body, stock_of


# These races must finish within the payment timeout, or orders cancelled by it would give their stock (or seat)
# back to later racers.
pytestmark = pytest.mark.usefixtures("patient_orders")


def race(api, requests_to_send, threads=50):
    """Send (method, path, json, token, headers) requests all at once from `threads` threads (each with its own
    HTTP session, released together by a barrier); returns the responses in order."""
    local, start = threading.local(), threading.Barrier(min(threads, len(requests_to_send)))
    gateway = api.base_url[:-len("/api/v1")]

    def send(request):
        if not hasattr(local, "api"):
            local.api = Api(gateway, api.admin_phone, api.admin_password)
            start.wait()
        method, path, body, token, headers = request
        return local.api.request(method, path, json=body, token=token, headers=headers, timeout=60)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(send, requests_to_send))


def test_300_buyers_racing_for_100_units_get_exactly_100_orders(api, stack, rpc, mongo):
    # given 100 units and 300 buyers
    _, _, product, sku = open_shop(api, price_fen=1000, stock=100)
    buyers = mint_buyers(stack, 300)
    time.sleep(1)  # the gateway's per-IP rate limit (400 burst) refills: every request here comes from 127.0.0.1
    # when all of them order one at the same moment
    answers = race(api, [("POST", "/orders", order_body(sku), b["token"], None) for b in buyers])
    # then exactly 100 orders exist, the others were told it sold out, and stock is exactly 0
    assert Counter(a.status_code for a in answers) == {201: 100, 409: 200}
    created = {a.json()["order_id"] for a in answers if a.status_code == 201}
    assert len(created) == 100
    assert stock_of(rpc, product["product_id"]) == 0
    assert mongo["quanzi_orders"]["orders"].count_documents(
        {"lines.sku_id": sku, "status": "pending_payment"}) == 100
    # and nothing was left half-made
    assert mongo["quanzi_orders"]["orders"].count_documents({"lines.sku_id": sku}) == 100


def test_20_concurrent_retries_of_one_idempotency_key_make_one_order(api, rpc, mongo):
    _, _, product, sku = open_shop(api, stock=10)
    buyer = api.register_user()
    headers = {"Idempotency-Key": "checkout-7f3a"}
    answers = race(api, [("POST", "/orders", order_body(sku, qty=3), buyer["token"], headers)] * 20, threads=20)
    assert [a.status_code for a in answers] == [201] * 20
    assert len({a.json()["order_id"] for a in answers}) == 1
    assert stock_of(rpc, product["product_id"]) == 7
    assert mongo["quanzi_orders"]["orders"].count_documents({"buyer_id": buyer["user_id"]}) == 1
    # and the same key from another buyer is another order
    other = api.register_user()
    theirs = expect(api.post("/orders", json=order_body(sku), token=other["token"], headers=headers), 201)
    assert theirs["order_id"] != answers[0].json()["order_id"]


def test_the_orders_service_keeps_the_idempotency_key_of_an_order_and_the_gateway_records_nothing(api, rpc, mongo):
    # given an order placed with a key
    _, _, product, sku = open_shop(api, stock=10)
    buyer = api.register_user()
    key = {"Idempotency-Key": f"checkout-{uuid.uuid4().hex[:8]}"}
    first = api.post("/orders", json=order_body(sku, qty=2), token=buyer["token"], headers=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    # when the client retries it, then it gets the same order back, marked as a replay, and nothing is taken again
    again = api.post("/orders", json=order_body(sku, qty=2), token=buyer["token"], headers=key)
    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true")
    assert again.json() == first.json()
    assert stock_of(rpc, product["product_id"]) == 8
    # when the same key comes with another request, then it is refused as a client's bug (422)
    other = api.post("/orders", json=order_body(sku, qty=3), token=buyer["token"], headers=key)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]["fields"]
    assert stock_of(rpc, product["product_id"]) == 8
    # and the key lives with the order only: the gateway wrote no record of it (one write fewer each way)
    assert mongo["quanzi_gateway"]["idempotency"].count_documents({"user_id": buyer["user_id"]}) == 0
    assert mongo["quanzi_orders"]["orders"].count_documents({"buyer_id": buyer["user_id"]}) == 1


def test_a_5_seat_group_with_40_concurrent_joiners_takes_exactly_4_of_them(api, stack, rpc, mongo):
    # given a product with a 5-person group-buy offer and a leader who opened a group
    _, _, product, sku = open_shop(api, price_fen=5000, stock=100,
                                   group_buy={"size": 5, "price_fen": 3900, "window_seconds": 600})
    leader = api.register_user()
    opened = expect(api.post("/group-buys", json={"sku_id": sku, "qty": 1, "address": ADDRESS},
                             token=leader["token"]), 201)
    assert opened["total_fen"] == 3900 and opened["shipping_fen"] == 0  # group price, shipped free
    group_id = opened["group_id"]
    # when 40 shoppers try to join at once
    joiners = mint_buyers(stack, 40)
    body = {"sku_id": sku, "qty": 1, "address": ADDRESS}
    answers = race(api, [("POST", f"/group-buys/{group_id}/join", body, j["token"], None) for j in joiners])
    # then 4 joined (with the leader: 5 seats), the other 36 were told it is full
    assert Counter(a.status_code for a in answers) == {201: 4, 409: 36}
    assert all(a.json()["error"]["fields"]["group_id"] == ["full"] for a in answers if a.status_code == 409)
    group = expect(api.get(f"/group-buys/{group_id}"), 200)
    assert (group["status"], group["size"], group["seats_left"], len(group["members"])) == ("open", 5, 0, 5)
    assert len({m["user_id"] for m in group["members"]}) == 5
    assert stock_of(rpc, product["product_id"]) == 95
    assert mongo["quanzi_orders"]["orders"].count_documents({"group_id": group_id}) == 5
    # and the leader cannot take a second seat
    expect(api.post(f"/group-buys/{group_id}/join", json=body, token=leader["token"]), 409)
