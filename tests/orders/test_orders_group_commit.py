"""Plain orders that arrive together are placed as one batch (orders.saga.OrderSaga.place_together): one insert of
their intents, one catalog call for their stock, one transaction confirming them. Whatever fails for one order is
given back for that order only, and only what may have been taken; a crash between the steps is undone by the
sweep like a single order's."""
import concurrent.futures
import uuid
from datetime import datetime, timedelta, timezone
from unittest.mock import MagicMock

import requests

from kit.batching import ALONE
from kit.config import load_settings
from kit.errors import Conflict, Unavailable, as_outcome
from orders.saga import OrderSaga
from tests.helpers import eventually
from tests.orders.shop import open_shop, order_body, stock_of

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


def line(sku, merchant="mch_a"):
    return {"sku_id": sku, "product_id": f"prd_{sku}", "merchant_id": merchant, "title": "tea", "qty": 1,
            "unit_price_fen": 5000, "level1_bp": 1000, "level2_bp": 0, "group_buy": None}


def saga_with(outcomes=None, rpc_error=None, confirmed=True, taken=()):
    """A saga over a mocked store and catalog; `taken`: indexes whose Idempotency-Key names an order already."""
    store, catalog = MagicMock(), MagicMock()
    store.insert_intents.side_effect = lambda requests, now: [
        None if i in taken else {"_id": f"ord_{i}", "buyer_id": buyer, "status": "creating", "group_id": None,
                                 "created_at": NOW} for i, (buyer, _, _) in enumerate(requests)]
    store.mark_abandoned.side_effect = lambda order_id: {"_id": order_id, "status": "abandoned", "group_id": None}
    store.confirm_many.return_value = confirmed
    result = catalog.reserve_stock_many.call_async.return_value.result
    if rpc_error is not None:
        result.side_effect = rpc_error
    else:
        result.return_value = [as_outcome(o) for o in outcomes]
    return OrderSaga(store, catalog, MagicMock(), load_settings({})), store, catalog


def batch(n):
    return [(f"usr_{i}", f"key-{i}", {"address": {"recipient": "x"}}, [{"sku_id": f"sku_{i}", "qty": 1}])
            for i in range(n)]


def released(catalog):
    return sorted(c.args[0] for c in catalog.release_stock.call_async.call_args_list)


def test_each_order_of_a_batch_gets_its_own_outcome_and_only_the_failed_ones_are_given_back():
    # given a batch of four: one reserved, one sold out, one reserved but a cart of two merchants, one whose key
    # names an order already
    saga, store, catalog = saga_with([{"order_id": "ord_0", "lines": [line("sku_0")]}, Conflict("sold out"),
                                      {"order_id": "ord_2", "lines": [line("a"), line("b", merchant="mch_b")]}],
                                     taken={3})
    # when it is placed
    outcomes = saga.place_together(batch(4))
    # then the first is confirmed (alone in the transaction), the sold out one is refused with nothing released,
    # the two-merchant cart is refused and its reservation released, and the taken key is left to place_alone
    [confirmed] = store.confirm_many.call_args.args[0]
    assert confirmed["_id"] == "ord_0" and confirmed["status"] == "pending_payment" and outcomes[0] is confirmed
    assert isinstance(outcomes[1], Conflict) and outcomes[2].fields == {
        "items": ["all SKUs of one order must belong to one merchant"]}
    assert outcomes[3] is ALONE
    assert released(catalog) == ["ord_2"]
    assert sorted(c.args[0] for c in store.drop_intent.call_args_list) == ["ord_1", "ord_2"]


def test_a_catalog_that_does_not_answer_releases_every_order_of_the_batch():
    saga, store, catalog = saga_with(rpc_error=Unavailable("catalog.reserve_stock_many did not answer"))
    outcomes = saga.place_together(batch(3))
    assert all(isinstance(o, Unavailable) for o in outcomes)
    assert released(catalog) == ["ord_0", "ord_1", "ord_2"]  # each may or may not have been reserved
    store.confirm_many.assert_not_called()


def test_an_order_the_sweep_abandoned_meanwhile_is_given_back_and_the_others_confirmed_one_by_one():
    saga, store, catalog = saga_with([{"order_id": f"ord_{i}", "lines": [line(f"sku_{i}")]} for i in range(3)],
                                     confirmed=False)
    store.confirm.side_effect = lambda order: (_ for _ in ()).throw(Conflict("took too long")) \
        if order["_id"] == "ord_1" else None
    outcomes = saga.place_together(batch(3))
    assert [o["_id"] for o in (outcomes[0], outcomes[2])] == ["ord_0", "ord_2"]
    assert isinstance(outcomes[1], Conflict) and released(catalog) == ["ord_1"]


def until(condition, timeout):
    """Wait until condition() is true (tools.client.eventually retries what raises)."""
    def check():
        assert condition()
    eventually(check, timeout=timeout, interval=0.3)


def test_a_crash_between_a_batchs_reservation_and_its_confirmation_is_undone_and_the_retries_place_once(
        api, rpc, mongo, stack, crashing_orders):
    _, _, product, sku = open_shop(api, stock=20)
    buyers = [api.register_user() for _ in range(8)]
    keys = [uuid.uuid4().hex for _ in buyers]
    # given an orders service that dies right after the catalog reserved the stock of its first batch
    crashing_orders("batch_reserved#1")

    def order(i, timeout=3):
        try:
            return requests.post(f"{stack.gateway_url}/api/v1/orders", json=order_body(sku), timeout=timeout,
                                 headers={"Authorization": f"Bearer {buyers[i]['token']}",
                                          "Idempotency-Key": keys[i]}).status_code
        except requests.RequestException:
            return None
    # when eight shoppers order at once (the first goes alone, the others queue behind it as one batch)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(order, range(8)))
    until(lambda: not stack.services["orders"].is_running(), timeout=20)
    stuck = list(mongo["quanzi_orders"]["orders"].find({"buyer_id": {"$in": [b["user_id"] for b in buyers]},
                                                        "status": "creating"}, {"_id": 1}))
    assert stuck  # a batch was cut short with its stock reserved (how many it held depends on timing)
    reserved = mongo["quanzi_catalog"]["reservations"].count_documents(
        {"_id": {"$in": [o["_id"] for o in stuck]}, "status": "reserved"})
    assert reserved == len(stuck)
    # and the service comes back, and the sweep finds those intents due (backdated: INTENT_TTL is a minute)
    stack.restart_service("orders")
    mongo["quanzi_orders"]["orders"].update_many({"_id": {"$in": [o["_id"] for o in stuck]}},
                                                 {"$set": {"due_at": datetime.now(timezone.utc) - timedelta(1)}})
    until(lambda: mongo["quanzi_orders"]["orders"].count_documents(
        {"_id": {"$in": [o["_id"] for o in stuck]}}) == 0, timeout=30)
    # then every shopper who retries with the same key has exactly one order, and the stock is exact
    until(lambda: all(order(i, timeout=15) == 201 for i in range(8)), timeout=40)
    placed = list(mongo["quanzi_orders"]["orders"].find({"buyer_id": {"$in": [b["user_id"] for b in buyers]}}))
    assert sorted(o["buyer_id"] for o in placed) == sorted(b["user_id"] for b in buyers)
    # (an order placed before the crash may have passed PAYMENT_TIMEOUT, 10 s here, and been cancelled)
    assert {o["status"] for o in placed} <= {"pending_payment", "cancelled"}
    until(lambda: stock_of(rpc, product["product_id"]) == 20 - mongo["quanzi_orders"]["orders"].count_documents(
        {"buyer_id": {"$in": [b["user_id"] for b in buyers]}, "status": "pending_payment"}), timeout=10)
    assert {r["status"] for r in mongo["quanzi_catalog"]["reservations"].find(
        {"_id": {"$in": [o["_id"] for o in stuck]}})} == {"released"}


def test_the_gateways_batch_call_answers_each_order_on_its_own():
    from unittest.mock import patch

    from nameko.testing.services import worker_factory

    from orders.service import OrdersService

    def placed(requests):
        return [{"_id": f"ord_{i}", "buyer_id": buyer, "status": "pending_payment", "merchant_id": "mch_a",
                 "lines": [], "goods_fen": 5000, "shipping_fen": 800, "discount_fen": 0, "total_fen": 5800,
                 "refunded_fen": 0, "created_at": NOW, "address": data["address"], "share_code": None,
                 "group_id": None} for i, (buyer, _, data, _) in enumerate(requests)]
    good = {"items": [{"sku_id": "sku_a", "qty": 1}],
            "address": {"recipient": "Li", "phone": "13900000000", "region": "杭州", "detail": "1 Road"}}
    # given a batch from the gateway of two valid orders and one without items
    with patch.object(OrderSaga, "place_batch", side_effect=placed) as place_batch:
        outcomes = worker_factory(OrdersService, config=load_settings({})).create_orders([
            {"buyer_id": "usr_1", "payload": good, "idempotency_key": "k1", "request_id": "req-1"},
            {"buyer_id": "usr_2", "payload": dict(good, items=[]), "idempotency_key": None, "request_id": "req-2"},
            {"buyer_id": "usr_3", "payload": good, "idempotency_key": "k3", "request_id": None}])
    # then the invalid one is refused with its field errors, and only the two valid ones were placed
    assert outcomes[0]["result"]["order_id"] == "ord_0" and outcomes[2]["result"]["order_id"] == "ord_1"
    assert outcomes[1]["error"]["code"] == "invalid_input" and "items" in outcomes[1]["error"]["fields"]
    assert [request[0] for request in place_batch.call_args.args[0]] == ["usr_1", "usr_3"]


def test_every_order_placed_under_load_is_logged_with_its_own_request_id(api, stack):
    _, _, _, sku = open_shop(api, stock=100)
    buyers = [api.register_user() for _ in range(8)]
    request_ids = [f"trace-{uuid.uuid4().hex[:12]}" for _ in buyers]

    def order(i):
        return requests.post(f"{stack.gateway_url}/api/v1/orders", json=order_body(sku), timeout=15, headers={
            "Authorization": f"Bearer {buyers[i]['token']}", "X-Request-Id": request_ids[i]}).json()["order_id"]
    # when eight shoppers order at once (most of them are placed in batches)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        order_ids = list(pool.map(order, range(8)))

    # then the orders service's log names each order's request: its own RPC, or its line in a batch
    def logged():
        lines = (stack.logs_dir / "orders.log").read_text().splitlines()
        for request_id, order_id in zip(request_ids, order_ids):
            mine = [line for line in lines if request_id in line]
            assert any("rpc orders.create_order ok" in line or f"order {order_id} placed" in line
                       for line in mine), (request_id, order_id)
    eventually(logged, timeout=5)
