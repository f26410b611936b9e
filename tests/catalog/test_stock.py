"""Stock reservations by order id: atomic under concurrency, idempotent, all-or-nothing, released once."""
import uuid

import pytest

from kit.errors import Conflict, NotFound
from tests.flows import approved_merchant, expect, product_payload


def order_id():
    return f"ord_{uuid.uuid4().hex[:20]}"


@pytest.fixture
def product(api):
    def make(stock=50, skus=None):
        owner, merchant = approved_merchant(api)
        return expect(api.post("/products", json=product_payload(merchant["merchant_id"], stock=stock, skus=skus),
                               token=owner["token"]), 201)
    return make


def sku_stock(rpc, product_id):
    return {s["sku_id"]: s["stock"] for s in rpc.catalog.get_product(product_id)["skus"]}


def test_200_concurrent_reservations_for_50_units_sell_exactly_50(rpc, product):
    item = product(stock=50)
    sku_id = item["skus"][0]["sku_id"]
    # when 200 orders try to reserve one unit each, all at once
    replies = [rpc.catalog.reserve_stock.call_async({"order_id": order_id(), "lines": [{"sku_id": sku_id, "qty": 1}]})
               for _ in range(200)]
    outcomes = []
    for reply in replies:
        try:
            reply.result()
            outcomes.append("reserved")
        except Conflict:
            outcomes.append("sold out")
    # then exactly 50 succeed and stock ends at zero, never below
    assert outcomes.count("reserved") == 50
    assert outcomes.count("sold out") == 150
    assert sku_stock(rpc, item["product_id"]) == {sku_id: 0}


def test_one_order_reserved_20_times_concurrently_reserves_once(rpc, product):
    item = product(stock=10)
    sku_id = item["skus"][0]["sku_id"]
    same_order = order_id()
    payload = {"order_id": same_order, "lines": [{"sku_id": sku_id, "qty": 3}]}
    results = [r.result() for r in [rpc.catalog.reserve_stock.call_async(payload) for _ in range(20)]]
    assert all(r == results[0] for r in results)
    assert sku_stock(rpc, item["product_id"]) == {sku_id: 7}
    # releasing twice gives the stock back once
    assert rpc.catalog.release_stock(same_order)["released"] is True
    assert rpc.catalog.release_stock(same_order)["released"] is False
    assert sku_stock(rpc, item["product_id"]) == {sku_id: 10}
    # and the released order cannot reserve again (a late retry must not leak stock)
    with pytest.raises(Conflict):
        rpc.catalog.reserve_stock(payload)


def test_an_order_reserves_all_its_lines_or_none(rpc, product):
    item = product(skus=[{"attrs": {"size": "S"}, "price_fen": 100, "stock": 5},
                         {"attrs": {"size": "L"}, "price_fen": 120, "stock": 1}])
    small, large = (s["sku_id"] for s in item["skus"])
    with pytest.raises(Conflict) as err:
        rpc.catalog.reserve_stock({"order_id": order_id(), "lines": [{"sku_id": small, "qty": 2},
                                                                       {"sku_id": large, "qty": 2}]})
    assert "sku_id" in err.value.fields
    assert sku_stock(rpc, item["product_id"]) == {small: 5, large: 1}
    reserved = rpc.catalog.reserve_stock({"order_id": order_id(), "lines": [{"sku_id": small, "qty": 2},
                                                                             {"sku_id": large, "qty": 1}]})
    assert {line["sku_id"]: line["unit_price_fen"] for line in reserved["lines"]} == {small: 100, large: 120}
    assert all(line["level1_bp"] == 1000 and line["level2_bp"] == 500 for line in reserved["lines"])
    assert sku_stock(rpc, item["product_id"]) == {small: 3, large: 0}


def test_a_release_before_its_reserve_blocks_the_late_reserve(rpc, product):
    item = product(stock=3)
    late = order_id()
    assert rpc.catalog.release_stock(late)["released"] is False
    with pytest.raises(Conflict):
        rpc.catalog.reserve_stock({"order_id": late, "lines": [{"sku_id": item["skus"][0]["sku_id"], "qty": 1}]})
    assert sku_stock(rpc, item["product_id"]) == {item["skus"][0]["sku_id"]: 3}


def test_unknown_sku_is_not_found_and_suspended_products_cannot_be_reserved(api, rpc, product):
    with pytest.raises(NotFound):
        rpc.catalog.reserve_stock({"order_id": order_id(), "lines": [{"sku_id": "sku_missing", "qty": 1}]})
    owner, merchant = approved_merchant(api)
    item = expect(api.post("/products", json=product_payload(merchant["merchant_id"], stock=5),
                           token=owner["token"]), 201)
    expect(api.post(f"/admin/merchants/{merchant['merchant_id']}/suspend", json={"reason": "audit"},
                    token=api.admin_token()), 200)
    with pytest.raises(Conflict):
        rpc.catalog.reserve_stock({"order_id": order_id(), "lines": [{"sku_id": item["skus"][0]["sku_id"], "qty": 1}]})


def test_selling_out_announces_stock_depleted_to_other_teams(rpc, product, kombu_listener):
    listener = kombu_listener("catalog.events", ["stock.depleted", "product.published"])
    item = product(stock=2)
    sku_id = item["skus"][0]["sku_id"]
    rpc.catalog.reserve_stock({"order_id": order_id(), "lines": [{"sku_id": sku_id, "qty": 2}]})
    depleted = listener.wait_for(lambda m: m["type"] == "stock.depleted" and m["data"]["sku_id"] == sku_id, timeout=10)
    assert depleted["specversion"] == "1.0" and depleted["source"] == "/quanzi/catalog"
    assert depleted["data"] == {"product_id": item["product_id"], "sku_id": sku_id}
    published = listener.wait_for(lambda m: m["type"] == "product.published"
                                  and m["data"]["product_id"] == item["product_id"], timeout=10)
    assert published["data"]["commission"] == {"level1_bp": 1000, "level2_bp": 500}
    assert published["dataschema"] == "urn:quanzi:events:product.published:v1"
