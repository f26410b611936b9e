"""`make bench` rows of the commission service (called by tools/bench.py as run(ctx)).

1. Accrual throughput: a burst of order.paid events for attributed orders, published as the orders service
   does, timed until every ledger entry exists (each one an idempotent consumer transaction: dedupe marker,
   order facts, commission, ledger entry, balance, outbox record). p50/p99: publish → ledger entry.
2. Lag from order.paid to commission.accrued, as another team's subscriber sees both events, while shoppers
   keep placing and paying orders through share links over HTTP (POST /orders + pay).
Sizes: BENCH_SECONDS (default 10) for the HTTP load; COMMISSION_BENCH_EVENTS (default 100 × BENCH_SECONDS).
"""
import os
import random
import threading
import time

import pymongo

from tools.bench import percentile
from tools.bus import Bus, Story, share_created, uid
from tools.client import Api, Listener
from tools.flows import ADDRESS, approved_merchant, expect, mint_buyers, product_payload

SHARERS = 20  # spread over several sharers: one hot balance document would serialise every accrual


def ms(seconds):
    return round(1000 * seconds, 1) if seconds is not None else None


def accrual_burst(ctx, events):
    bus = Bus(ctx.amqp_uri)
    client = pymongo.MongoClient(ctx.mongo_uri, tz_aware=True)
    db = client["quanzi_commission"]
    try:
        sharers = [(uid("usr"), uid("sc")) for _ in range(SHARERS)]
        for sharer, code in sharers:
            bus.publish(*share_created(code, sharer), subject=code)
        codes = [code for _, code in sharers]
        deadline = time.monotonic() + 60
        while db.shares.count_documents({"_id": {"$in": codes}}) < len(codes):
            if time.monotonic() > deadline:
                raise RuntimeError("the commission service did not record the bench's share codes")
            time.sleep(0.2)
        stories = [Story(uid("usr"), share_code=codes[i % len(codes)]) for i in range(events)]
        envelopes = [bus.envelope(*story.paid(), subject=story.order_id) for story in stories]
        published_at = {}
        started = time.time()
        for story, envelope in zip(stories, envelopes):
            bus.deliver(envelope)
            published_at[story.order_id] = time.time()
        order_ids = list(published_at)
        deadline = time.monotonic() + max(120, events / 10)
        done = 0
        while done < events and time.monotonic() < deadline:
            time.sleep(0.5)
            done = db.ledger.count_documents({"order_id": {"$in": order_ids}, "kind": "accrual"})
        entries = list(db.ledger.find({"order_id": {"$in": order_ids}, "kind": "accrual"}, {"order_id": 1, "at": 1}))
    finally:
        bus.close()
        client.close()
    if not entries:
        return {"name": "commission accrual: order.paid -> ledger", "rps": 0, "errors": events,
                "tool": "kombu burst", "note": "nothing accrued"}
    finished = max(e["at"] for e in entries).timestamp()
    lags = [e["at"].timestamp() - published_at[e["order_id"]] for e in entries]
    return {"name": "commission accrual: order.paid -> ledger", "rps": round(len(entries) / (finished - started), 1),
            "p50_ms": ms(percentile(lags, 0.50)), "p99_ms": ms(percentile(lags, 0.99)),
            "errors": events - len(entries), "concurrency": f"burst of {events}", "tool": "kombu burst",
            "note": "p50/p99: publish -> ledger entry (queueing included)"}


class TimedListener(Listener):
    """A subscriber noting when it first saw each order's event (monotonic clock)."""

    def __init__(self, *args, **kwargs):
        self.first_seen = {}
        super().__init__(*args, **kwargs)

    def _on_message(self, body, message):
        order_id = (body.get("data") or {}).get("order_id")
        if order_id:
            self.first_seen.setdefault(order_id, time.monotonic())
        message.ack()  # bodies are not kept: only the times matter here


def lag_under_order_load(ctx, seconds):
    owner, merchant = approved_merchant(ctx.api)
    product = expect(ctx.api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], title=f"Bench commission {uid('t')}", price_fen=10_000, stock=10_000_000,
        commission={"level1_bp": 1000, "level2_bp": 500})), 201)
    sku = product["skus"][0]["sku_id"]
    codes = []
    for _ in range(8):
        sharer = ctx.api.register_user()
        codes.append(expect(ctx.api.post("/shares", json={"product_id": product["product_id"]},
                                         token=sharer["token"]), 201)["share_code"])
    buyers = mint_buyers(ctx.stack, 64)
    paid = TimedListener(ctx.amqp_uri, "orders.events", ["order.paid"])
    accrued = TimedListener(ctx.amqp_uri, "commission.events", ["commission.accrued"])
    local = threading.local()

    def buy_through_a_share():
        if not hasattr(local, "api"):
            local.api = Api(ctx.gateway_url, ctx.stack.env["ADMIN_PHONE"], ctx.stack.env["ADMIN_PASSWORD"])
        buyer = random.choice(buyers)
        order = expect(local.api.post("/orders", token=buyer["token"], json={
            "items": [{"sku_id": sku, "qty": 1}], "address": ADDRESS, "share_code": random.choice(codes)}), 201)
        expect(local.api.post(f"/orders/{order['order_id']}/pay", token=buyer["token"], timeout=30), 200)

    try:
        load = ctx.measure("POST /orders + pay, through a share", buy_through_a_share, concurrency=8,
                           seconds=seconds)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not set(paid.first_seen) <= set(accrued.first_seen):
            time.sleep(0.2)
    finally:
        paid.close()
        accrued.close()
    lags = [accrued.first_seen[o] - at for o, at in paid.first_seen.items() if o in accrued.first_seen]
    missing = len(set(paid.first_seen) - set(accrued.first_seen))
    return [load, {"name": "lag order.paid -> commission.accrued", "rps": None,
                   "p50_ms": ms(percentile(lags, 0.50)), "p99_ms": ms(percentile(lags, 0.99)), "errors": missing,
                   "concurrency": 8, "tool": "subscriber clocks", "note": f"{len(lags)} paid orders under the load"}]


def run(ctx):
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    events = int(os.environ.get("COMMISSION_BENCH_EVENTS", str(100 * seconds)))
    rows = [accrual_burst(ctx, events)]
    rows += lag_under_order_load(ctx, seconds)
    return rows
