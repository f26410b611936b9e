"""`make bench` rows of the orders service: placing orders (wrk + Lua: POST bodies, a fresh Idempotency-Key per
request) on one hot SKU and spread over many SKUs, and taking payments (the provider's signed callback; the
buyer's pay through the sandbox provider, checked: each answered pay left its order paid). Each row carries the
stack's CPU per request (every process, from /proc) and the load average.

BENCH_PROFILE=<dir>: py-spy records every Python process of the stack during the hot-SKU row (raw collapsed stacks
in <dir>), or during the pay row with BENCH_PROFILE_ROW=pay; profiling slows the services, so use it in a run of
its own."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pymongo

from contracts.payment import SIGNATURE_HEADER, sign
from tools.client import Api
from tools.flows import approved_merchant, expect, product_payload

SKUS = 50  # spread over many SKUs: this measures the order path, not one hot stock row
BUYERS = 16
ADDRESS = {"recipient": "Bench", "phone": "13900000000", "region": "杭州", "detail": "1 Road"}


def profile(ctx, seconds, folder):
    """Start py-spy on every Python process of the stack for `seconds`; returns the py-spy processes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in ctx.processes().items():
        if name in ("mongod", "rabbitmq"):
            continue
        for fmt, ext in (("raw", "txt"),):
            spies.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-d", str(seconds), "-r", "100", "-f", fmt, "--nonblocking",
                 "-o", str(folder / f"{name}.{ext}")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def order_row(ctx, name, skus, buyers, seconds):
    bodies = [{"items": [{"sku_id": sku, "qty": 1}], "address": ADDRESS} for sku in skus]
    return ctx.with_cpu(lambda: ctx.wrk_post(name, "/api/v1/orders", bodies, [b["token"] for b in buyers],
                                             seconds=seconds))


def run(ctx):
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    owner, merchant = approved_merchant(ctx.api)
    skus = [expect(ctx.api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], title=f"Bench order {i}", price_fen=5000, stock=1_000_000)), 201)["skus"][0]["sku_id"]
        for i in range(SKUS)]
    buyers = [ctx.api.register_user(nickname=f"bench{i}") for i in range(BUYERS)]
    # warm up both paths (connections, caches) before measuring
    ctx.wrk_post("warm-up", "/api/v1/orders", [{"items": [{"sku_id": s, "qty": 1}], "address": ADDRESS} for s in skus],
                 [b["token"] for b in buyers], seconds=2)
    profiling = os.environ.get("BENCH_PROFILE")
    pay_profiled = os.environ.get("BENCH_PROFILE_ROW") == "pay"
    spies = profile(ctx, seconds, profiling) if profiling and not pay_profiled else []
    rows = [order_row(ctx, "POST /orders, one hot SKU (wrk)", skus[:1], buyers, seconds)]
    for spy in spies:
        spy.wait()
    rows.append(order_row(ctx, f"POST /orders, {SKUS} SKUs (wrk)", skus, buyers, seconds))
    for row in rows:
        if row["errors"]:
            row["note"] = f"{row['errors']} non-2xx answers"

    # the placed orders, to pay: half through the signed notification, half through the buyer's pay
    db = pymongo.MongoClient(ctx.mongo_uri)["quanzi_orders"]
    tokens = {b["user_id"]: b["token"] for b in buyers}
    unpaid = list(db.orders.find({"buyer_id": {"$in": list(tokens)}, "status": "pending_payment"},
                                 {"buyer_id": 1, "total_fen": 1}))
    notify_pool, pay_pool = iter(unpaid[0::2]), unpaid[1::2]
    secret = ctx.stack.env["PAYMENT_HMAC_SECRET"]
    client = Api(ctx.gateway_url, "", "")

    def notify():
        try:
            order = next(notify_pool)
        except StopIteration:
            time.sleep(0.1)
            raise RuntimeError("no unpaid order left to pay")
        body = json.dumps({"trade_no": f"bench{uuid.uuid4().hex}", "order_id": order["_id"],
                           "amount_fen": order["total_fen"], "status": "success",
                           "paid_at": "2026-11-22T08:00:00+00:00"}).encode()
        response = client.session.post(ctx.gateway_url + "/api/v1/payments/notify", data=body, timeout=10,
                                        headers={"Content-Type": "application/json",
                                                 SIGNATURE_HEADER: sign(body, secret)})
        if response.status_code != 200 or response.json()["outcome"] != "applied":
            raise RuntimeError(f"notify: {response.status_code} {response.text[:200]}")

    half = max(1, seconds // 2)
    rows.append(ctx.measure("POST /payments/notify (signed, applied)", notify, seconds=half))
    spies = profile(ctx, seconds, profiling) if profiling and pay_profiled else []
    rows.append(ctx.with_cpu(lambda: ctx.wrk_each(
        "POST /orders/{id}/pay (sandbox provider, wrk)",
        [(f"/api/v1/orders/{o['_id']}/pay", tokens[o["buyer_id"]]) for o in pay_pool], seconds=seconds)))
    for spy in spies:
        spy.wait()
    # a 200 is not proof: the orders paid must be as many as the pays answered (wrk's connections take the orders
    # in turn, each once while the pool lasts)
    paid = db.orders.count_documents({"_id": {"$in": [o["_id"] for o in pay_pool]}, "status": "paid"})
    answered = min(rows[-1]["count"] - rows[-1]["errors"], len(pay_pool))
    if rows[-1]["errors"] or paid < answered:
        rows[-1]["note"] = (f"{rows[-1]['errors']} non-2xx answers, {paid} orders paid for {answered} pays "
                            f"answered ({len(pay_pool)} orders to pay)")
    return rows
