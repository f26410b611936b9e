"""Catalog entrypoints with nameko's worker_factory: who may act, and that refused input never reaches the store."""
from unittest.mock import MagicMock

import pytest
from nameko.testing.services import worker_factory

from catalog.service import CatalogService
from kit.config import load_settings
from kit.errors import Forbidden, InvalidInput, NotFound, RuleRefused
from tests.flows import product_payload

SETTINGS = load_settings({})


def service_with(merchant):
    store = MagicMock()
    store.get_merchant.return_value = merchant
    return worker_factory(CatalogService, store=store, config=SETTINGS), store


def merchant(status="approved", owner_id="usr_owner"):
    return {"_id": "mch_1", "owner_id": owner_id, "status": status}


def test_an_approved_owner_publishes_with_prices_and_search_terms():
    service, store = service_with(merchant())
    view = service.create_product("usr_owner", product_payload("mch_1", title="龙井 tea", price_fen=500, stock=3))
    product, skus = store.insert_product.call_args.args
    assert product["visible"] is True and product["min_price_fen"] == 500
    assert {"龙井", "tea"} <= set(product["terms"])
    assert skus[0]["stock"] == 3 and skus[0]["product_id"] == product["_id"] == view["product_id"]


@pytest.mark.parametrize("status", ["pending", "rejected", "suspended"])
def test_only_an_approved_merchant_may_publish(status):
    service, store = service_with(merchant(status))
    with pytest.raises(Forbidden):
        service.create_product("usr_owner", product_payload("mch_1"))
    store.insert_product.assert_not_called()


def test_someone_elses_merchant_looks_like_it_does_not_exist():
    service, store = service_with(merchant(owner_id="usr_other"))
    with pytest.raises(NotFound):
        service.create_product("usr_owner", product_payload("mch_1"))
    store.insert_product.assert_not_called()


def test_commission_above_the_platform_cap_is_refused_before_any_write():
    service, store = service_with(merchant())
    with pytest.raises(RuleRefused) as err:
        service.create_product("usr_owner", product_payload("mch_1", commission={"level1_bp": 3000, "level2_bp": 1}))
    assert "commission" in err.value.fields
    store.insert_product.assert_not_called()


def test_a_reservation_payload_with_operators_never_reaches_the_store():
    service, store = service_with(merchant())
    with pytest.raises(InvalidInput) as err:
        service.reserve_stock({"order_id": {"$ne": None}, "lines": [{"sku_id": "sku_1", "qty": 0}]})
    assert set(err.value.fields) == {"order_id", "lines"}
    store.reserve.assert_not_called()
