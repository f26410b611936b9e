"""A retried order after an outage: the first attempt gave up half-way and could not finish undoing its intent
(the broker was down when it tried to give the stock back). The retry with the same Idempotency-Key must not
wait for the sweep (a minute of 409s and 503s): it finishes the undo, then places the order."""
import time
import uuid
from datetime import datetime, timedelta, timezone

from tests.flows import expect
from tests.orders.shop import open_shop, order_body, stock_of


def left_intent(mongo, buyer, key, status, age_seconds):
    """An intent of `buyer` under `key` in `status`, written `age_seconds` ago (as its first request left it)."""
    written = datetime.now(timezone.utc) - timedelta(seconds=age_seconds)
    order_id = f"ord_{uuid.uuid4().hex[:20]}"
    mongo["quanzi_orders"]["orders"].insert_one({
        "_id": order_id, "buyer_id": buyer["user_id"], "status": status, "group_id": None, "created_at": written,
        "claimed_until": datetime(1970, 1, 1, tzinfo=timezone.utc), "idempotency_key": key,
        "due_at": written + timedelta(seconds=60)})
    return order_id, written



def test_a_retry_finishes_undoing_an_abandoned_intent_and_places_the_order(api, rpc, mongo):
    # given an intent its first request abandoned after the catalog reserved 1 unit for it
    _, _, product, sku = open_shop(api, stock=5)
    buyer = api.register_user()
    key = uuid.uuid4().hex
    abandoned, _ = left_intent(mongo, buyer, key, "abandoned", 0)
    rpc.catalog.reserve_stock({"order_id": abandoned, "lines": [{"sku_id": sku, "qty": 1}], "group": False})
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


def test_a_retry_takes_over_an_intent_whose_owner_died_while_creating_it(api, rpc, mongo):
    # given an intent still `creating` 25 s after it was written, 1 unit reserved for it: its owner died (kill -9,
    # or MongoDB went away as it tried to undo), long before the sweep's INTENT_TTL would get to it
    _, _, product, sku = open_shop(api, stock=5)
    buyer = api.register_user()
    key = uuid.uuid4().hex
    stale, _ = left_intent(mongo, buyer, key, "creating", 25)
    rpc.catalog.reserve_stock({"order_id": stale, "lines": [{"sku_id": sku, "qty": 1}], "group": False})
    # when the shopper retries with the same key
    started = time.monotonic()
    order = expect(api.post("/orders", json=order_body(sku), token=buyer["token"],
                            headers={"Idempotency-Key": key}), 201)
    # then it is placed at once (no 10 s wait, no 409), and the dead attempt's unit came back
    assert time.monotonic() - started < 5 and order["order_id"] != stale
    assert stock_of(rpc, product["product_id"]) == 4
    assert mongo["quanzi_orders"]["orders"].find_one({"_id": stale}) is None
    assert mongo["quanzi_catalog"]["reservations"].find_one({"_id": stale})["status"] == "released"


def test_a_retry_waits_for_an_intent_its_owner_may_still_be_placing(api, mongo):
    # given an intent written 2 s ago and still `creating` (its request is on its way)
    _, _, _, sku = open_shop(api, stock=5)
    buyer = api.register_user()
    key = uuid.uuid4().hex
    live, written = left_intent(mongo, buyer, key, "creating", 2)
    # when a retry arrives, then it is not taken over: the retry is told to try again later
    answer = api.post("/orders", json=order_body(sku), token=buyer["token"], headers={"Idempotency-Key": key},
                      timeout=30)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "in_progress"
    assert answer.headers["Retry-After"] == "1"
    assert mongo["quanzi_orders"]["orders"].find_one({"_id": live})["status"] == "creating"
    # and "still in progress" is not kept as the key's answer: once that attempt is gone, the retry places it
    mongo["quanzi_orders"]["orders"].update_one({"_id": live}, {"$set": {"created_at": written - timedelta(seconds=30)}})
    placed = expect(api.post("/orders", json=order_body(sku), token=buyer["token"], headers={"Idempotency-Key": key}),
                    201)
    assert placed["order_id"] != live
    # and that 201 is the key's answer from now on
    again = api.post("/orders", json=order_body(sku), token=buyer["token"], headers={"Idempotency-Key": key})
    assert (again.status_code, again.json()["order_id"], again.headers["Idempotent-Replayed"]) == (
        201, placed["order_id"], "true")
