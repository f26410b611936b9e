"""The order saga's compensations with nameko's worker_factory (store and catalog replaced): whatever step fails,
what was taken is given back, and only what may have been taken."""
from datetime import datetime, timezone
from unittest.mock import MagicMock

import pytest
from nameko.testing.services import worker_factory

from kit.config import load_settings
from kit.errors import Conflict, InvalidInput, RuleRefused
from orders import domain
from orders.service import OrdersService
from tests.orders.shop import order_body

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
SETTINGS = load_settings({})


def reserved(merchant="mch_a", product="prd_a", sku="sku_a"):
    return {"sku_id": sku, "product_id": product, "merchant_id": merchant, "title": "tea", "qty": 1,
            "unit_price_fen": 5000, "level1_bp": 1000, "level2_bp": 0,
            "group_buy": {"size": 2, "price_fen": 3900, "window_seconds": 60}}


def service(reserve=None, existing=None, seat=True):
    store, catalog = MagicMock(), MagicMock()
    intent = {"_id": "ord_new", "buyer_id": "usr_b", "status": "creating", "group_id": None, "created_at": NOW}
    store.insert_intent.side_effect = lambda buyer, key, group_id, now, fingerprint=None: \
        (None, existing) if existing else (dict(intent, group_id=group_id), None)
    store.mark_abandoned.side_effect = lambda order_id: dict(intent, _id=order_id, status="abandoned",
                                                             group_id=store.insert_intent.call_args.args[2])
    store.take_seat.return_value = {"_id": "grp_1", "product_id": "prd_a"} if seat else None
    store.group.return_value = {"_id": "grp_1", "status": "open", "leader_id": "usr_l", "members": [],
                                "free_seats": 0, "expires_at": NOW.replace(year=2099), "size": 2}
    outcome = catalog.reserve_stock.call_async.return_value.result
    if isinstance(reserve, BaseException) or (isinstance(reserve, type) and issubclass(reserve, BaseException)):
        outcome.side_effect = reserve
    else:
        outcome.return_value = {"order_id": "ord_new", "lines": reserve or [reserved()]}
    worker = worker_factory(OrdersService, store=store, catalog=catalog, config=SETTINGS)
    return worker, store, catalog


def released(catalog):
    return [c.args for c in catalog.release_stock.call_async.call_args_list]


def test_a_placed_order_is_confirmed_with_its_captured_lines_and_totals():
    worker, store, catalog = service()
    view = worker.create_order("usr_b", order_body("sku_a"), "key-1")
    order = store.confirm.call_args.args[0]
    assert (order["status"], order["merchant_id"], order["total_fen"], order["shipping_fen"]) == \
        ("pending_payment", "mch_a", 5800, 800)
    assert view["order_id"] == "ord_new" and released(catalog) == []


def test_sold_out_gives_back_the_intent_and_releases_nothing_it_never_got():
    worker, store, catalog = service(reserve=Conflict("sold out"))
    with pytest.raises(Conflict):
        worker.create_order("usr_b", order_body("sku_a"))
    store.drop_intent.assert_called_once_with("ord_new")
    assert released(catalog) == []  # the catalog's reservation is all-or-nothing: nothing to give back


def test_a_reservation_that_may_have_happened_is_released_when_anything_fails_after_it():
    worker, store, catalog = service(reserve=TimeoutError("no answer"))
    with pytest.raises(TimeoutError):
        worker.create_order("usr_b", order_body("sku_a"))
    assert released(catalog) == [("ord_new",)]  # also blocks the reservation if it is still on its way
    store.drop_intent.assert_called_once_with("ord_new")


def test_a_cart_of_two_merchants_is_refused_after_its_reservation_is_given_back():
    worker, store, catalog = service(reserve=[reserved(), reserved(merchant="mch_b", sku="sku_b")])
    with pytest.raises(InvalidInput):
        worker.create_order("usr_b", order_body("sku_a"))
    assert released(catalog) == [("ord_new",)]
    store.confirm.assert_not_called()


def test_an_order_the_sweep_abandoned_meanwhile_gives_everything_back():
    worker, store, catalog = service()
    store.confirm.side_effect = Conflict("placing the order took too long")
    with pytest.raises(Conflict):
        worker.join_group("usr_b", "grp_1", {"sku_id": "sku_a", "address": order_body("x")["address"]})
    assert released(catalog) == [("ord_new",)]
    store.free_seat.assert_called_once_with("grp_1", "ord_new")


def test_a_full_group_refuses_the_join_before_any_stock_is_touched():
    worker, store, catalog = service(seat=False)
    with pytest.raises(Conflict) as err:
        worker.join_group("usr_b", "grp_1", {"sku_id": "sku_a", "address": order_body("x")["address"]})
    assert err.value.fields == {"group_id": ["full"]}
    catalog.reserve_stock.call_async.assert_not_called()
    store.drop_intent.assert_called_once_with("ord_new")


def test_the_same_idempotency_key_returns_the_order_it_made_without_reserving_again():
    made = {"_id": "ord_old", "buyer_id": "usr_b", "status": "paid", "merchant_id": "mch_a", "lines": [],
            "goods_fen": 1, "shipping_fen": 0, "discount_fen": 0, "total_fen": 1, "created_at": NOW,
            "address": order_body("x")["address"]}
    worker, store, catalog = service(existing=made)
    assert worker.create_order("usr_b", order_body("sku_a"), "key-1")["order_id"] == "ord_old"
    catalog.reserve_stock.call_async.assert_not_called()


def test_a_repeat_of_the_request_is_answered_as_a_replay_and_another_request_under_its_key_is_refused():
    # given an order made under key-1 from this request (its digest kept with it)
    made = {"_id": "ord_old", "buyer_id": "usr_b", "status": "pending_payment", "merchant_id": "mch_a", "lines": [],
            "goods_fen": 1, "shipping_fen": 0, "discount_fen": 0, "total_fen": 1, "created_at": NOW,
            "address": order_body("x")["address"], "group_id": None}
    worker, store, catalog = service(existing=dict(made, request_hash=fingerprint_of(order_body("sku_a"))))
    # when the same request comes again (its fields in another order), then it is the same order, marked replayed
    again = dict(reversed(list(order_body("sku_a").items())))
    answer = worker.create_order("usr_b", again, "key-1")
    assert (answer["order_id"], answer["replayed"]) == ("ord_old", True)
    # when another request comes with the same key, then it is refused (422), not answered with that order
    with pytest.raises(RuleRefused) as err:
        worker.create_order("usr_b", order_body("sku_b"), "key-1")
    assert "Idempotency-Key" in err.value.fields
    catalog.reserve_stock.call_async.assert_not_called()


def fingerprint_of(payload):
    from contracts.api.orders import OrderInput
    from kit.validation import load
    return domain.request_fingerprint(load(OrderInput, payload))


def test_a_key_already_used_for_a_plain_order_cannot_open_a_group():
    made = {"_id": "ord_old", "buyer_id": "usr_b", "status": "pending_payment", "group_id": None}
    worker, store, catalog = service(existing=made)
    with pytest.raises(Conflict) as err:
        worker.open_group("usr_b", {"sku_id": "sku_a", "address": order_body("x")["address"]}, "key-1")
    assert "Idempotency-Key" in err.value.fields
    catalog.reserve_stock.call_async.assert_not_called()
