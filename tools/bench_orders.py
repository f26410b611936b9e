"""`make bench` rows of the orders service: placing orders (one line: intent, stock reservation by RPC, order +
outbox in one transaction) and taking payments (the provider's signed callback; the whole pay round trip)."""
import itertools
import json
import os
import threading
import time
import uuid

from contracts.payment import SIGNATURE_HEADER, sign
from tools.client import Api
from tools.flows import approved_merchant, expect, product_payload

SKUS = 50  # spread over many SKUs: this measures the order path, not one hot stock row


def run(ctx):
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    owner, merchant = approved_merchant(ctx.api)
    skus = [expect(ctx.api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], title=f"Bench order {i}", price_fen=5000, stock=1_000_000)), 201)["skus"][0]["sku_id"]
        for i in range(SKUS)]
    buyers = [ctx.api.register_user(nickname=f"bench{i}")["token"] for i in range(16)]
    local, counter, placed = threading.local(), itertools.count(), []
    address = {"recipient": "Bench", "phone": "13900000000", "region": "杭州", "detail": "1 Road"}

    def client():
        if not hasattr(local, "api"):
            local.api = Api(ctx.gateway_url, "", "")
        return local.api

    def place():
        n = next(counter)
        token = buyers[n % len(buyers)]
        response = client().post("/orders", token=token, headers={"Idempotency-Key": uuid.uuid4().hex},
                                 json={"items": [{"sku_id": skus[n % SKUS], "qty": 1}], "address": address})
        if response.status_code != 201:
            raise RuntimeError(f"POST /orders: {response.status_code} {response.text[:200]}")
        order = response.json()
        placed.append((token, order["order_id"], order["total_fen"]))

    rows = [ctx.measure("POST /orders (1 line: reserve, order + outbox)", place, seconds=seconds)]

    secret = ctx.stack.env["PAYMENT_HMAC_SECRET"]
    # each row pays its own half of the placed orders (each order once), so neither starves the other
    pools = {"notify": iter(placed[0::2]), "pay": iter(placed[1::2])}

    def next_unpaid(row):
        try:
            return next(pools[row])
        except StopIteration:
            time.sleep(0.1)  # counted as an error, without spinning: the rows show it ran out of orders
            raise RuntimeError("no unpaid order left to pay")

    def notify():
        _, order_id, total = next_unpaid("notify")
        body = json.dumps({"trade_no": f"bench{uuid.uuid4().hex}", "order_id": order_id, "amount_fen": total,
                           "status": "success", "paid_at": "2026-11-22T08:00:00+00:00"}).encode()
        response = client().session.post(ctx.gateway_url + "/api/v1/payments/notify", data=body, timeout=10,
                                          headers={"Content-Type": "application/json",
                                                   SIGNATURE_HEADER: sign(body, secret)})
        if response.status_code != 200 or response.json()["outcome"] != "applied":
            raise RuntimeError(f"notify: {response.status_code} {response.text[:200]}")

    def pay():
        token, order_id, _ = next_unpaid("pay")
        response = client().post(f"/orders/{order_id}/pay", token=token, timeout=30)
        if response.status_code != 200 or response.json()["status"] != "paid":
            raise RuntimeError(f"pay: {response.status_code} {response.text[:200]}")

    half = max(1, seconds // 2)
    rows.append(ctx.measure("POST /payments/notify (signed, applied)", notify, seconds=half))
    rows.append(ctx.measure("POST /orders/{id}/pay (provider round trip)", pay, seconds=half))
    return rows
