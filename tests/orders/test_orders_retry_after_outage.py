"""A retried order after an outage: the first attempt gave up half-way and could not finish undoing its intent
(the broker was down when it tried to give the stock back). The retry with the same Idempotency-Key must not
wait for the sweep (a minute of 409s and 503s): it finishes the undo, then places the order."""
import time
import uuid
from datetime import datetime, timedelta, timezone

from tests.flows import expect
from tests.orders.shop import open_shop, order_body, stock_of


def test_a_retry_finishes_undoing_an_abandoned_intent_and_places_the_order(api, rpc, mongo):
    # given an intent its first request abandoned after the catalog reserved 1 unit for it
    _, _, product, sku = open_shop(api, stock=5)
    buyer = api.register_user()
    key = uuid.uuid4().hex
    now = datetime.now(timezone.utc)
    abandoned = f"ord_{uuid.uuid4().hex[:20]}"
    rpc.catalog.reserve_stock({"order_id": abandoned, "lines": [{"sku_id": sku, "qty": 1}], "group": False})
    mongo["quanzi_orders"]["orders"].insert_one({
        "_id": abandoned, "buyer_id": buyer["user_id"], "status": "abandoned", "group_id": None, "created_at": now,
        "claim_until": datetime(1970, 1, 1, tzinfo=timezone.utc), "idempotency_key": key,
        "due_at": now + timedelta(seconds=60)})
    assert stock_of(rpc, product["product_id"]) == 4

    # when the shopper retries with the same key
    started = time.monotonic()
    order = expect(api.post("/orders", json=order_body(sku), token=buyer["token"],
                            headers={"Idempotency-Key": key}), 201)

    # then the order is placed at once, the abandoned intent's unit came back, and it is gone
    assert time.monotonic() - started < 5
    assert order["order_id"] != abandoned
    assert stock_of(rpc, product["product_id"]) == 4  # 5 - the new order's unit: the abandoned unit came back
    assert mongo["quanzi_orders"]["orders"].find_one({"_id": abandoned}) is None
    assert mongo["quanzi_catalog"]["reservations"].find_one({"_id": abandoned})["status"] == "released"
