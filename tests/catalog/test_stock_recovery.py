"""A reservation is claim → hold (one conditional update per SKU) → confirm → tidy (batched), with no
multi-document transaction on the SKU. A process that dies between any two of these steps (simulated: the store raises at that
point, so none of its own clean-up runs) leaves stock that the release (the orders sweep's undo of a stuck intent)
gives back exactly once, and a retried reservation never takes the stock twice."""
import time
import uuid
from datetime import timedelta

import pytest

from catalog.store import CatalogStore
from kit.config import load_settings
from kit.errors import Conflict, NotFound, Unavailable
from kit.mongo import connect
from kit.validation import utcnow
from tests.flows import approved_merchant, expect, product_payload


class Died(BaseException):
    """The process stopped here (kill -9): nothing after this point ran."""


def dies_at(point, nth=1):
    """A crash hook: the process dies right after the nth time it reaches `point`."""
    reached = []

    def crash(step):
        if step == point:
            reached.append(step)
            if len(reached) == nth:
                raise Died(point)
    return crash


@pytest.fixture(scope="module")
def store(stack):
    client = connect(stack.mongo_uri)
    yield CatalogStore(client, client["quanzi_catalog"], "catalog", load_settings({}))
    client.close()


@pytest.fixture
def two_skus(api):
    owner, merchant = approved_merchant(api)
    product = expect(api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], skus=[{"attrs": {"size": "250g"}, "price_fen": 5000, "stock": 10},
                                       {"attrs": {"size": "500g"}, "price_fen": 9000, "stock": 10}])), 201)
    return sorted(s["sku_id"] for s in product["skus"])  # a reservation works through its lines in SKU order


def stock(store, skus):
    return [store.skus.find_one({"_id": s})["stock"] for s in skus]


def holds(store, skus):
    return [len(store.skus.find_one({"_id": s}).get("holds", [])) for s in skus]


def order_id():
    return f"ord_{uuid.uuid4().hex[:20]}"


def lines(skus):
    return [{"sku_id": skus[0], "qty": 2}, {"sku_id": skus[1], "qty": 3}]


def late_hold_after_release(store, skus):
    """An order released after its first line's hold, whose second line was held after that release by a process
    that then died before its confirm (so it never gave that late hold back itself). Returns the order id."""
    order = order_id()
    steps = []

    def released_then_died(step):
        steps.append(step)
        if steps == ["claimed", "held"]:
            assert store.release(order) is True  # the order gave up after the first hold
        elif len(steps) == 3:
            raise Died(step)
    with pytest.raises(Died):
        store.reserve(order, lines(skus), False, crash=released_then_died)
    assert stock(store, skus) == [10, 7]
    return order


# every point between two steps: claim | hold line 1 | hold line 2 | confirm | tidy
STEPS = [("claimed", 1), ("held", 1), ("held", 2), ("confirmed", 1)]
TAKEN = {("claimed", 1): [10, 10], ("held", 1): [8, 10], ("held", 2): [8, 7], ("confirmed", 1): [8, 7]}


@pytest.mark.parametrize("point,nth", STEPS)
def test_a_reservation_cut_short_at_any_step_is_given_back_once_by_the_release(store, two_skus, point, nth):
    order = order_id()
    # given a reservation whose process died right after the nth time it reached the step `point`
    with pytest.raises(Died):
        store.reserve(order, lines(two_skus), False, crash=dies_at(point, nth))
    assert stock(store, two_skus) == TAKEN[point, nth]
    # when the order's undo releases it (twice: the sweep may retry)
    assert store.release(order) is True
    assert store.release(order) is False
    # then exactly what was taken comes back, no hold is left behind, and the order cannot reserve again
    assert stock(store, two_skus) == [10, 10]
    assert holds(store, two_skus) == [0, 0]
    with pytest.raises(Conflict):
        store.reserve(order, lines(two_skus), False)
    assert stock(store, two_skus) == [10, 10]


@pytest.mark.parametrize("point,nth", STEPS[:3])
def test_a_retry_after_the_owner_died_finishes_the_reservation_without_taking_stock_twice(store, two_skus, point,
                                                                                           nth):
    order = order_id()
    with pytest.raises(Died):
        store.reserve(order, lines(two_skus), False, crash=dies_at(point, nth))
    # given the dead owner's claim has lapsed
    store.reservations.update_one({"_id": order}, {"$set": {"claimed_until": store.reservations.find_one(
        {"_id": order})["created_at"].replace(year=2000)}})
    # when the same order is reserved again, it takes the claim over and finishes
    result = store.reserve(order, lines(two_skus), False)
    assert [line["qty"] for line in result["lines"]] == [2, 3]
    # then each line was taken once, and the holds are tidied with the next batch
    assert stock(store, two_skus) == [8, 7]
    store.tidy_holds()
    assert holds(store, two_skus) == [0, 0]
    assert store.reservations.find_one({"_id": order})["status"] == "reserved"
    # and a release gives it back once
    assert store.release(order) is True
    assert stock(store, two_skus) == [10, 10]


def test_a_live_claim_is_waited_for_not_taken_over(store, two_skus):
    order = order_id()
    with pytest.raises(Died):
        store.reserve(order, lines(two_skus), False, crash=dies_at("held"))
    # given the owner's claim has not lapsed: a second caller waits, then gives up without touching stock
    store.WAIT_SECONDS = 0.3
    try:
        with pytest.raises(Unavailable):  # no refusal: the first call may still finish it
            store.reserve(order, lines(two_skus), False)
    finally:
        del store.WAIT_SECONDS
    assert stock(store, two_skus) == [8, 10]
    assert store.release(order) is True
    assert stock(store, two_skus) == [10, 10]


def test_a_sold_out_line_gives_back_the_lines_held_before_it(store, two_skus):
    order = order_id()
    with pytest.raises(Conflict):
        store.reserve(order, [{"sku_id": two_skus[0], "qty": 4}, {"sku_id": two_skus[1], "qty": 11}], False)
    assert stock(store, two_skus) == [10, 10]
    assert holds(store, two_skus) == [0, 0]


def test_a_release_while_the_reservation_is_holding_gets_every_unit_back_once(store, two_skus):
    order = order_id()
    released = []

    def order_gives_up(step):
        if step == "held" and not released:  # after the first line's hold, the order gives up and releases
            released.append(store.release(order))
    # when the order is released while its reservation is between two holds
    with pytest.raises(Conflict):
        store.reserve(order, lines(two_skus), False, crash=order_gives_up)
    # then the release gave back the first hold, the reservation gave back the one it placed after the release,
    # and nothing is left held or given twice
    assert released == [True]
    assert stock(store, two_skus) == [10, 10]
    assert holds(store, two_skus) == [0, 0]
    assert store.reservations.find_one({"_id": order})["status"] == "released"


def test_a_hold_placed_after_the_release_by_a_process_that_then_died_is_given_back_by_the_next_release(store,
                                                                                                      two_skus):
    order = late_hold_after_release(store, two_skus)
    # when the order's undo releases it again (the sweep retries), then the late hold comes back, once
    assert store.release(order) is False
    assert store.release(order) is False
    assert stock(store, two_skus) == [10, 10]
    assert holds(store, two_skus) == [0, 0]


def test_an_owner_that_stalls_past_its_claim_never_holds_again_after_another_caller_took_it_over(store, two_skus):
    order = order_id()
    store.CLAIM_LEASE, store.HOLD_WITHIN = timedelta(seconds=0.6), 0.2  # the production 15 s / 5 s, shrunk
    answers = []

    def stalls(step):
        if step == "held" and not answers:  # the owner stalls after its first hold until its claim lapsed
            time.sleep(0.7)
            answers.append(store.reserve(order, lines(two_skus), False))  # a retry takes the claim over, finishes
    try:
        # when the stalled owner then wakes up to hold its second line
        with pytest.raises(Unavailable):
            store.reserve(order, lines(two_skus), False, crash=stalls)
    finally:
        del store.CLAIM_LEASE, store.HOLD_WITHIN
    # then it held nothing more (its outcome is not known to it: no refusal), and the reservation that the other
    # caller finished took each line once
    assert [line["qty"] for line in answers[0]["lines"]] == [2, 3]
    assert stock(store, two_skus) == [8, 7]
    store.tidy_holds()
    assert holds(store, two_skus) == [0, 0]
    assert store.reservations.find_one({"_id": order})["status"] == "reserved"
    assert store.release(order) is True
    assert stock(store, two_skus) == [10, 10]


def test_a_sku_emptied_by_a_dead_owners_hold_is_announced_by_the_caller_that_finishes_the_reservation(
        store, two_skus):
    order = order_id()
    everything = [{"sku_id": two_skus[0], "qty": 10}]
    # given an owner that took the SKU's last units and died before confirming
    with pytest.raises(Died):
        store.reserve(order, everything, False, crash=dies_at("held"))
    store.reservations.update_one({"_id": order}, {"$set": {"claimed_until": utcnow() - timedelta(1)}})
    # when a retry takes the claim over and finishes
    store.reserve(order, everything, False)
    # then the SKU's depletion is announced through the outbox, once the reservation is confirmed
    assert stock(store, two_skus) == [0, 10]
    announced = list(store.outbox.events.find({"type": "stock.depleted", "envelope.data.sku_id": two_skus[0]}))
    assert len(announced) == 1


def test_a_release_that_died_after_stopping_the_reservation_is_finished_by_the_next_release(store, two_skus):
    order = order_id()
    with pytest.raises(Died):
        store.reserve(order, lines(two_skus), False, crash=dies_at("held", 2))
    # given a release that stopped the reservation (its first write) and died before giving the holds back
    store.reservations.update_one({"_id": order}, {"$set": {"status": "released"}})
    assert stock(store, two_skus) == [8, 7]
    # when the order's undo is retried, then the holds come back, once
    assert store.release(order) is False
    assert store.release(order) is False
    assert stock(store, two_skus) == [10, 10]
    assert holds(store, two_skus) == [0, 0]


def backdate_holds(store, skus, seconds=120):
    """Make every hold on these SKUs look `seconds` old (the sweep's STALE_HOLD is 60 s)."""
    for sku in skus:
        doc = store.skus.find_one({"_id": sku})
        store.skus.update_one({"_id": sku}, {"$set": {"holds": [dict(h, at=utcnow() - timedelta(seconds=seconds))
                                                               for h in doc.get("holds", [])]}})


def test_a_late_hold_of_a_released_order_whose_caller_died_is_given_back_by_the_sweep_once(store, two_skus):
    order = late_hold_after_release(store, two_skus)
    # given nobody releases the order again: a fresh hold is some caller's work in progress, left alone
    assert store.sweep_holds(utcnow()) == 0
    assert stock(store, two_skus) == [10, 7]
    # when the catalog's sweep finds it older than STALE_HOLD (twice: several replicas sweep)
    backdate_holds(store, two_skus)
    assert store.sweep_holds(utcnow()) == 1
    assert store.sweep_holds(utcnow()) == 0
    # then the late hold came back, once
    assert stock(store, two_skus) == [10, 10]
    assert holds(store, two_skus) == [0, 0]


def test_confirmed_holds_are_tidied_in_one_batch_and_a_lost_batch_by_the_sweep_without_touching_stock(
        store, two_skus):
    orders = [order_id() for _ in range(3)]
    # given three orders of one line each on the same SKU: their holds wait for the batch
    for order in orders:
        store.reserve(order, [{"sku_id": two_skus[0], "qty": 1}], False)
    assert stock(store, two_skus) == [7, 10] and holds(store, two_skus) == [3, 0]
    # when the batch runs, then one update pulled them all, and the stock is untouched
    store.tidy_holds()
    assert stock(store, two_skus) == [7, 10] and holds(store, two_skus) == [0, 0]
    # given a batch lost with its process (the queue is dropped before it ran)
    lost = order_id()
    store.reserve(lost, [{"sku_id": two_skus[1], "qty": 2}], False)
    store._untidy.clear()
    backdate_holds(store, two_skus)
    # when the sweep finds the old hold of a reserved order, then it pulls it and gives nothing back
    assert store.sweep_holds(utcnow()) == 1
    assert stock(store, two_skus) == [7, 8] and holds(store, two_skus) == [0, 0]
    # and the reservation still gives its stock back once
    assert store.release(lost) is True and store.release(lost) is False
    assert stock(store, two_skus) == [7, 10]


def test_a_line_refused_after_holds_gives_back_what_was_held(store, two_skus):
    order = order_id()
    # given an order whose second line names no SKU: the first line's hold goes back, the reservation is released
    with pytest.raises(NotFound):
        store.reserve(order, [{"sku_id": two_skus[0], "qty": 2}, {"sku_id": "zzz_no_such_sku", "qty": 1}], False)
    assert stock(store, two_skus) == [10, 10] and holds(store, two_skus) == [0, 0]
    assert store.reservations.find_one({"_id": order})["status"] == "released"
    # given a product taken off sale: every line was held, then given back when pricing refused it
    product_id = store.skus.find_one({"_id": two_skus[0]})["product_id"]
    store.products.update_one({"_id": product_id}, {"$set": {"visible": False}})
    try:
        with pytest.raises(Conflict):
            store.reserve(order_id(), lines(two_skus), False)
    finally:
        store.products.update_one({"_id": product_id}, {"$set": {"visible": True}})
    assert stock(store, two_skus) == [10, 10] and holds(store, two_skus) == [0, 0]


# -- group commit: single-line reservations that arrive together are written as one batch ----------------------
def one_line(skus, qty=1, at=0):
    return {"sku_id": skus[at], "qty": qty}


# the batch's holds on both SKUs are one bulk: "held" is reached once, with both held
BATCH_TAKEN = {("claimed", 1): [10, 10], ("held", 1): [5, 6], ("confirmed", 1): [5, 6]}


@pytest.mark.parametrize("point,nth", BATCH_TAKEN)
def test_a_batch_cut_short_at_any_step_is_given_back_once_per_order_by_the_release(store, two_skus, point, nth):
    orders = [order_id() for _ in range(3)]
    # given a batch of three orders (two on one SKU, one on the other) whose process died after the nth `point`
    requests = [(orders[0], one_line(two_skus, 2), False), (orders[1], one_line(two_skus, 3), False),
                (orders[2], one_line(two_skus, 4, at=1), False)]
    with pytest.raises(Died):
        store.reserve_many(requests, crash=dies_at(point, nth))
    assert stock(store, two_skus) == BATCH_TAKEN[point, nth]
    # when each order's undo releases it (twice: the sweep may retry)
    for order in orders:
        assert store.release(order) is True
        assert store.release(order) is False
    # then everything came back once, no hold is left, and none of them can reserve again
    assert stock(store, two_skus) == [10, 10]
    assert holds(store, two_skus) == [0, 0]
    with pytest.raises(Conflict):
        store.reserve(orders[0], [one_line(two_skus, 2)], False)


def test_a_batch_the_sku_cannot_cover_holds_order_by_order_and_refuses_only_the_rest(store, two_skus):
    # given three orders of 4 on a SKU with 10 left, and one of them already claimed by an earlier call
    orders = [order_id() for _ in range(4)]
    store.reserve(orders[3], [one_line(two_skus, 1, at=1)], False)
    requests = [(o, one_line(two_skus, 4), False) for o in orders[:3]] + [(orders[3], one_line(two_skus, 1, 1), False)]
    # when they are written as one batch
    outcomes = store.reserve_many(requests)
    # then the first two hold, the third is sold out (its claim released), and the already claimed one is left
    # to `reserve` (None), which returns the first outcome without taking stock again
    assert [o["lines"][0]["qty"] for o in outcomes[:2]] == [4, 4]
    assert isinstance(outcomes[2], Conflict) and outcomes[3] is None
    assert store.reservations.find_one({"_id": orders[2]})["status"] == "released"
    assert store.reserve(orders[3], [one_line(two_skus, 1, at=1)], False)["lines"][0]["qty"] == 1
    assert stock(store, two_skus) == [2, 9]
    store.tidy_holds()
    assert holds(store, two_skus) == [0, 0]


def test_concurrent_reservations_of_a_hot_sku_never_oversell_and_announce_the_depletion_once(store, two_skus):
    import eventlet
    from catalog import group_commit
    orders = [order_id() for _ in range(16)]
    answers = {}

    def buy(order):
        try:
            answers[order] = group_commit.reserve(store, order, [one_line(two_skus)], False)["lines"][0]["qty"]
        except Conflict:
            answers[order] = "sold out"
    batcher = group_commit.batcher_of(store)
    batcher._alone += 1  # given a reservation in flight: what arrives now waits for the next batch
    # when 16 shoppers buy one each of a SKU with 10 left, all at once (and one taps twice)
    pool = eventlet.GreenPool(20)
    for order in orders + orders[:1]:
        pool.spawn_n(buy, order)
    pool.waitall()
    batcher._alone -= 1
    # then exactly 10 got one, 6 were told it sold out, the stock is 0, and it was announced once
    assert sorted(answers.values(), key=str) == [1] * 10 + ["sold out"] * 6
    assert batcher.batched == 17 and batcher.batches < 17  # they were written together
    assert stock(store, two_skus)[0] == 0
    assert store.reservations.count_documents({"_id": {"$in": orders}, "status": "reserved"}) == 10
    assert store.outbox.events.count_documents({"type": "stock.depleted",
                                                "envelope.data.sku_id": two_skus[0]}) == 1
    # and releasing every order gives back exactly the 10
    for order in orders:
        store.release(order)
    assert stock(store, two_skus)[0] == 10


def test_a_batch_over_several_skus_holds_them_in_one_bulk_and_falls_back_only_where_stock_is_short(store, two_skus):
    # given a batch of orders on two SKUs (10 left each): 2 + 3 on the first, 4 + 7 on the second (11 > 10)
    orders = [order_id() for _ in range(4)]
    requests = [(orders[0], one_line(two_skus, 2), False), (orders[1], one_line(two_skus, 3), False),
                (orders[2], one_line(two_skus, 4, at=1), False), (orders[3], one_line(two_skus, 7, at=1), False)]
    # when they are written as one batch
    outcomes = store.reserve_many(requests)
    # then the first SKU's orders held together, the second SKU's went one by one: 4 fits, 7 no longer does
    assert [o["lines"][0]["qty"] for o in outcomes[:3]] == [2, 3, 4]
    assert isinstance(outcomes[3], Conflict)
    assert store.reservations.find_one({"_id": orders[3]})["status"] == "released"
    assert stock(store, two_skus) == [5, 6]
    store.tidy_holds()
    assert holds(store, two_skus) == [0, 0]


def test_concurrent_orders_spread_over_skus_never_oversell_and_announce_each_depletion_once(store, two_skus,
                                                                                           monkeypatch):
    import eventlet
    from catalog import group_commit
    answers = {}
    one_by_one = []
    hold = store._hold
    monkeypatch.setattr(store, "_hold", lambda *args: one_by_one.append(args) or hold(*args))

    def buy(at, order):
        try:
            answers[order] = group_commit.reserve(store, order, [one_line(two_skus, at=at % 2)], False)["lines"][0]["qty"]
        except Conflict:
            answers[order] = "sold out"

    def rush(shoppers):
        batcher = group_commit.batcher_of(store)
        batcher._alone += 1  # given a reservation in flight: what arrives now waits for the next batch
        pool = eventlet.GreenPool(shoppers)
        for at in range(shoppers):
            pool.spawn_n(buy, at, order_id())
        pool.waitall()
        batcher._alone -= 1
    # when 20 shoppers buy one each, alternating between two SKUs with 10 left each, all at once
    rush(20)
    # then every one got one, in one bulk hold over both SKUs (no order held on its own), both SKUs are at 0, and
    # each depletion was announced once, by the batch that caused it
    assert list(answers.values()) == [1] * 20 and one_by_one == []
    assert stock(store, two_skus) == [0, 0]
    # and when 6 more come, they are told it sold out, and nothing is announced again
    rush(6)
    assert sorted(answers.values(), key=str) == [1] * 20 + ["sold out"] * 6
    assert stock(store, two_skus) == [0, 0]
    for sku in two_skus:
        assert store.outbox.events.count_documents({"type": "stock.depleted", "envelope.data.sku_id": sku}) == 1
    store.tidy_holds()
    assert holds(store, two_skus) == [0, 0]
