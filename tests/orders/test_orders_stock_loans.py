"""Stock on loan (orders.loans): a hot SKU with deep stock is sold from lots the catalog lent the orders service, in
one transaction per batch and without a catalog call per order. Whatever happens (a race, a cancellation, a price
change, a product taken down, a crash between the loan's steps), the books add up: the catalog's stock, the lots
lent and given back, the units on loan and the orders always account for every unit, and nothing is oversold."""
import concurrent.futures
import uuid

import pytest

from catalog.domain import LOAN_FLOOR
from kit.config import load_settings
from kit.errors import NotFound
from orders import domain
from orders.store import OrdersStore
from tests.flows import expect
from tests.helpers import Api, eventually
from tests.orders.shop import mint_buyers, open_shop, order_body

# unpaid orders stay unpaid while a test counts them (the crash tests, last, run with the usual payment timeout)
pytestmark = pytest.mark.usefixtures("patient_orders")

DEEP = LOAN_FLOOR + 2 * domain.LOAN_LOT + 500  # enough for lots to be lent


def burst(api, stack, sku, count, threads=16):
    """`count` buyers order one unit each, `threads` at a time (the orders arrive together, as batches)."""
    buyers = mint_buyers(stack, count)
    gateway = api.base_url[:-len("/api/v1")]

    def order(buyer):
        client = Api(gateway, api.admin_phone, api.admin_password)
        try:
            return client.post("/orders", json=order_body(sku), token=buyer["token"], timeout=60)
        finally:
            client.session.close()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(order, buyers))


def books(mongo, sku, initial):
    """Where every unit of the SKU is: {"stock", "lent" (net of returns), "on_loan", "sold_from_loans",
    "reserved_orders", "held" (by the catalog's reservations: the reserved orders, and intents cut short that the
    sweep has not undone yet), "unsettled"} and the two sums that must hold once every lot is settled."""
    catalog, orders = mongo.quanzi_catalog, mongo.quanzi_orders
    stock = catalog.skus.find_one({"_id": sku})["stock"]
    held = sum(line["qty"] for r in catalog.reservations.find({"lines.sku_id": sku,
                                                               "status": {"$in": ["reserving", "reserved"]}})
               for line in r["lines"] if line["sku_id"] == sku)
    lent = sum(l["qty"] if l["kind"] == "lend" else -l["qty"] for l in catalog.loans.find({"sku_id": sku}))
    loan = orders.loans.find_one({"_id": sku}) or {"units": 0}
    live = {"$nin": ["creating", "abandoned", "cancelled"]}
    sold_from_loans = orders.orders.count_documents({"lines.sku_id": sku, "stock": "loan", "status": live})
    reserved = orders.orders.count_documents({"lines.sku_id": sku, "stock": {"$exists": False}, "status": live})
    unsettled = orders.loan_ops.count_documents({"sku_id": sku, "status": "asked"})
    return {"stock": stock, "lent": lent, "on_loan": loan["units"], "sold_from_loans": sold_from_loans,
            "reserved_orders": reserved, "held": held, "unsettled": unsettled,
            "catalog_side": initial - stock - lent - held, "loan_side": lent - loan["units"] - sold_from_loans}


def settled(mongo, sku, initial, **expected):
    """The books once every lot is settled: both sides add up to zero (and any `expected` figure is reached)."""
    def check():
        b = books(mongo, sku, initial)
        assert (b["unsettled"], b["catalog_side"], b["loan_side"]) == (0, 0, 0), b
        assert {k: b[k] for k in expected} == expected, b
        return b
    return eventually(check, timeout=45, interval=0.5)


def on_loan(mongo, sku):
    """Wait until the SKU's loan has units (its first lot arrived) and return them."""
    def check():
        loan = mongo.quanzi_orders.loans.find_one({"_id": sku})
        assert loan and loan["units"] > 0, loan
        return loan["units"]
    return eventually(check, timeout=20, interval=0.2)


def hot_sku(api, stack, mongo, stock=DEEP, price_fen=1000):
    """A product with deep stock whose SKU this process has seen ordered often: its loan has units."""
    owner, _, product, sku = open_shop(api, price_fen=price_fen, stock=stock)
    answers = burst(api, stack, sku, 24)
    assert {a.status_code for a in answers} == {201}
    on_loan(mongo, sku)
    return owner, product, sku


# -- the rules (pure) ----------------------------------------------------------------------------------------
def test_a_sku_is_hot_once_a_process_sees_a_few_of_its_orders_within_the_window():
    hot = domain.HotSkus()
    assert not hot.saw("sku_a", 1, clock=0.0)
    assert hot.saw("sku_a", domain.HOT_ORDERS - 1, clock=0.5)
    # still hot in the next window (counted from the last), cold once two windows passed without enough orders
    assert hot.saw("sku_a", 1, clock=domain.HOT_SECONDS + 0.1)
    assert not hot.saw("sku_a", 1, clock=4 * domain.HOT_SECONDS)
    assert not hot.saw("sku_b", domain.HOT_ORDERS - 1, clock=0.0)


def test_a_loan_asks_for_a_lot_when_low_for_its_price_when_stale_and_backs_off_when_refused():
    from datetime import datetime, timezone
    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    fresh = {"units": domain.LOAN_LOW + 1, "line": {"sku_id": "s"}, "priced_at": now, "last_lent": domain.LOAN_LOT}
    assert domain.lot_to_ask(None, now) == domain.LOAN_LOT
    assert domain.lot_to_ask(fresh, now) is None
    assert domain.lot_to_ask(dict(fresh, units=domain.LOAN_LOW - 1), now) == domain.LOAN_LOT
    assert domain.lot_to_ask(fresh, now + domain.LOAN_REFRESH) == 0  # the price only
    # the catalog lent nothing last time (the SKU's last units): asked again only after LOAN_REFRESH
    refused = dict(fresh, units=0, last_lent=0)
    assert domain.lot_to_ask(refused, now) is None
    assert domain.lot_to_ask(refused, now + domain.LOAN_REFRESH) == domain.LOAN_LOT
    # a loan sells while its units and its price last, and never a product off sale
    assert domain.loan_covers(fresh, fresh["units"], now)
    assert not domain.loan_covers(fresh, fresh["units"] + 1, now)
    assert not domain.loan_covers(fresh, 1, now + domain.LOAN_PRICED_FOR)
    assert not domain.loan_covers(dict(fresh, line=None), 1, now)


# -- the catalog's side ----------------------------------------------------------------------------------------
def test_the_catalog_lends_a_lot_once_per_loan_id_keeps_its_floor_and_takes_units_back_once(api, rpc, mongo):
    _, _, product, sku = open_shop(api, price_fen=1200, stock=LOAN_FLOOR + 100)
    loan_id, back_id = f"lot_{uuid.uuid4().hex[:20]}", f"lot_{uuid.uuid4().hex[:20]}"
    # a lot that would leave fewer than LOAN_FLOOR units is not lent; its price comes back all the same
    refused = rpc.catalog.lend_stock({"loan_id": loan_id, "sku_id": sku, "qty": 101})
    assert refused["lent"] == 0 and refused["line"]["unit_price_fen"] == 1200
    assert refused["line"]["merchant_id"] == product["merchant_id"]
    # a lot that leaves them is lent once, however often it is asked for (the first answer decides)
    loan_id = f"lot_{uuid.uuid4().hex[:20]}"
    assert rpc.catalog.lend_stock({"loan_id": loan_id, "sku_id": sku, "qty": 100})["lent"] == 100
    assert rpc.catalog.lend_stock({"loan_id": loan_id, "sku_id": sku, "qty": 100})["lent"] == 100
    assert mongo.quanzi_catalog.skus.find_one({"_id": sku})["stock"] == LOAN_FLOOR
    # units given back count once per loan id
    assert rpc.catalog.take_back_stock({"loan_id": back_id, "sku_id": sku, "qty": 40}) == {"returned": True}
    assert rpc.catalog.take_back_stock({"loan_id": back_id, "sku_id": sku, "qty": 40}) == {"returned": False}
    assert mongo.quanzi_catalog.skus.find_one({"_id": sku})["stock"] == LOAN_FLOOR + 40
    with pytest.raises(NotFound):
        rpc.catalog.lend_stock({"loan_id": f"lot_{uuid.uuid4().hex[:20]}", "sku_id": "sku_missing", "qty": 1})


# -- the orders' side --------------------------------------------------------------------------------------------
def test_a_sku_the_catalog_does_not_know_is_never_lent_and_leaves_no_lot_open(api, stack, mongo):
    # given buyers hammering a SKU that does not exist (a stale link)
    sku = f"sku_{uuid.uuid4().hex[:20]}"
    answers = burst(api, stack, sku, 12)
    # then each is told so, and the lot the SKU's popularity asked for is closed with nothing lent (not retried
    # by every sweep)
    assert {a.status_code for a in answers} == {404}

    def closed():
        lots = list(mongo.quanzi_orders.loan_ops.find({"sku_id": sku}))
        assert lots and {(lot["status"], lot["lent"]) for lot in lots} == {("done", 0)}, lots
    eventually(closed, timeout=20, interval=0.2)
    assert mongo.quanzi_catalog.loans.count_documents({"sku_id": sku}) == 0


def test_a_hot_sku_is_sold_from_its_loan_without_overselling_and_the_books_add_up(api, stack, mongo):
    # given a hot SKU with deep stock, its first lot on loan
    _, _, sku = hot_sku(api, stack, mongo)
    # when 120 more buyers order it, 16 at a time
    answers = burst(api, stack, sku, 120)
    # then every order is placed, most of them from the loan, at the catalog's price
    assert {a.status_code for a in answers} == {201}
    placed = [mongo.quanzi_orders.orders.find_one({"_id": a.json()["order_id"]}) for a in answers]
    assert sum(1 for o in placed if o.get("stock") == "loan") >= 60
    assert {o["lines"][0]["unit_price_fen"] for o in placed} == {1000}
    assert {o["status"] for o in placed} == {"pending_payment"}
    # and every unit is accounted for: the catalog's stock, the lots lent, the loan's units and the orders
    b = settled(mongo, sku, DEEP)
    assert b["reserved_orders"] + b["sold_from_loans"] == 144 and b["held"] == b["reserved_orders"]


def test_a_cancelled_order_sold_from_a_loan_gives_its_unit_back_to_the_loan(api, stack, mongo):
    _, _, sku = hot_sku(api, stack, mongo)
    buyer = mint_buyers(stack, 1)[0]
    order = eventually(lambda: _placed_from_loan(api, mongo, sku, buyer), timeout=20)
    units = mongo.quanzi_orders.loans.find_one({"_id": sku})["units"]
    stock = mongo.quanzi_catalog.skus.find_one({"_id": sku})["stock"]
    expect(api.post(f"/orders/{order['_id']}/cancel", token=buyer["token"]), 200)
    # its unit goes back to the loan it came from, once; the catalog's stock does not move
    eventually(lambda: _assert_equal(mongo.quanzi_orders.loans.find_one({"_id": sku})["units"], units + 1))
    assert mongo.quanzi_catalog.skus.find_one({"_id": sku})["stock"] == stock
    settled(mongo, sku, DEEP)
    # and a second event of the same order (a late payment paid back after the cancellation) gives nothing again:
    # the books still add up
    store = OrdersStore(mongo, mongo.quanzi_orders, "orders", load_settings({}))
    with mongo.start_session() as session:
        assert store.back_to_loan(order["_id"], session)
    settled(mongo, sku, DEEP)


def _placed_from_loan(api, mongo, sku, buyer):
    answer = expect(api.post("/orders", json=order_body(sku), token=buyer["token"]), 201)
    order = mongo.quanzi_orders.orders.find_one({"_id": answer["order_id"]})
    assert order.get("stock") == "loan", "placed through the catalog: the loan was not fresh yet"
    return order


def _assert_equal(actual, expected):
    assert actual == expected, (actual, expected)


def test_a_price_change_reaches_orders_sold_from_a_loan_at_once(api, stack, mongo):
    # given a hot SKU sold from its loan at 10 yuan
    owner, product, sku = hot_sku(api, stack, mongo)
    # when the merchant raises the price
    expect(api.patch(f"/products/{product['product_id']}", token=owner["token"],
                     json={"skus": [{"sku_id": sku, "price_fen": 1500}]}), 200)
    # then, once the catalog's product.updated reached the orders service, no order is sold at the old price
    eventually(lambda: _assert_equal(mongo.quanzi_orders.loans.find_one({"_id": sku})["priced_at"].year, 2000))
    answers = burst(api, stack, sku, 24)
    prices = {mongo.quanzi_orders.orders.find_one({"_id": a.json()["order_id"]})["lines"][0]["unit_price_fen"]
              for a in answers}
    assert prices == {1500}
    settled(mongo, sku, DEEP)


def test_a_flash_sale_with_loans_in_play_never_oversells_and_its_last_units_are_sold_order_by_order(
        api, stack, mongo):
    # given a SKU with a couple of lots above the floor, and more buyers than units
    initial = LOAN_FLOOR + 2 * domain.LOAN_LOT + 44
    _, _, product, sku = open_shop(api, price_fen=1000, stock=initial)
    # when they all order it, 16 at a time
    answers = burst(api, stack, sku, initial + 80)
    # then lots were lent and sold, the catalog sold out order by order, and nothing was sold twice: every unit
    # is in an order or still on loan (a lot's last units, given back to the catalog once idle)
    placed = sum(1 for a in answers if a.status_code == 201)
    assert {a.status_code for a in answers} == {201, 409}
    b = settled(mongo, sku, initial, stock=0)
    assert b["sold_from_loans"] > 0 and b["lent"] >= domain.LOAN_LOT
    assert placed == b["sold_from_loans"] + b["reserved_orders"]
    assert placed + b["on_loan"] == initial


def test_a_lot_lent_by_the_catalog_when_orders_died_before_recording_it_is_credited_by_the_sweep(
        api, stack, mongo, crashing_orders):
    # given a product with deep stock, and an orders service that dies right after the catalog lent its first lot
    _, _, product, sku = open_shop(api, price_fen=1000, stock=DEEP)
    crashing_orders(f"loan_lent:{sku}")
    burst(api, stack, sku, 12)  # some of these are cut short by the crash: the gateway answers them 503
    eventually(lambda: _assert_equal(stack.services["orders"].is_running(), False), timeout=20)
    lent = mongo.quanzi_catalog.loans.find_one({"sku_id": sku, "kind": "lend"})
    assert lent["qty"] == domain.LOAN_LOT
    assert mongo.quanzi_orders.loan_ops.find_one({"_id": lent["_id"]})["status"] == "asked"
    # when it is back
    stack.restart_service("orders")
    # then the sweep asks for that lot again (the catalog lends nothing twice) and credits it, once; the books add
    # up (orders still on their way when it died may have made the SKU hot again, and borrowed another lot)
    settled(mongo, sku, DEEP)
    credited = mongo.quanzi_orders.loan_ops.find_one({"_id": lent["_id"]})
    assert (credited["status"], credited["lent"]) == ("done", domain.LOAN_LOT)


def test_units_of_a_product_taken_down_go_back_and_a_crash_on_the_way_loses_none(
        api, stack, mongo, crashing_orders):
    # given a hot SKU with units on loan
    _, product, sku = hot_sku(api, stack, mongo)
    # and an orders service that dies right after taking the units off the loan to give them back
    crashing_orders(f"loan_taken_back:{sku}")
    # when an admin takes the product down
    expect(api.post(f"/admin/products/{product['product_id']}/takedown", json={"reason": "counterfeit"},
                    token=api.admin_token()), 200)
    eventually(lambda: _assert_equal(stack.services["orders"].is_running(), False), timeout=30)
    assert mongo.quanzi_orders.loans.find_one({"_id": sku})["units"] == 0
    stack.restart_service("orders")
    # then the units reach the catalog's stock once, and the books add up (units of its unpaid orders, cancelled
    # by the payment timeout meanwhile, come back to the loan and go back to the catalog in turn)
    b = settled(mongo, sku, DEEP, on_loan=0)
    assert b["lent"] == b["sold_from_loans"]
    returns = list(mongo.quanzi_orders.loan_ops.find({"sku_id": sku, "kind": "return"}))
    assert returns and {r["status"] for r in returns} == {"done"}
