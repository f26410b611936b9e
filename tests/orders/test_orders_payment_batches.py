"""Payments in batches. Pays tapped together reach the orders service as one pay_many call (one read of the
orders, one write of their payments at the sandbox provider, their notifications sent at once); notifications
that arrive together are applied in one transaction (OrdersStore.apply_payments, through the gateway's batch
call or the saga's GroupCommit): the common case only (a plain order's first payment, the right amount).
Everything else in a batch (a repeat, a second payment of one order, a wrong amount, a group seat, a cancelled
order) is handed back to be decided alone, exactly as before; a copy recorded meanwhile by another request aborts
the batch with nothing written. Each caller gets its own answer."""
import concurrent.futures
import json
import threading
import time
import uuid

from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest.mock import patch

import eventlet
import pytest
import requests
from pymongo import MongoClient

from kit.batching import ALONE
from kit.config import load_settings
from kit.mongo import connect
from kit.validation import utcnow
from orders import saga as orders_saga
from orders.store import OrdersStore
from tests.flows import expect
from tests.helpers import Api, CommandsSeen, eventually
from tests.orders.shop import ADDRESS, distinct, notification, notify, open_shop, place


@pytest.fixture(scope="module")
def store(stack):
    client = connect(stack.mongo_uri)
    yield OrdersStore(client, client["quanzi_orders"], "orders", load_settings({}))
    client.close()


def note_of(order, **overrides):
    note = notification(order, **overrides)
    return {**note, "paid_at": utcnow()}  # as the RPC schema loads it


def one_payment(provider, order_id, amount_fen):
    return provider.create_payments([(order_id, amount_fen)])[order_id]


def tap_all(api, taps):
    """POST /orders/{id}/pay for every (buyer, order id) at once, each thread with its own HTTP session; the
    answers in order."""
    local = threading.local()

    def tap(request):
        buyer, order_id = request
        if not hasattr(local, "api"):
            local.api = Api(api.base_url[:-len("/api/v1")], api.admin_phone, api.admin_password)
        return local.api.post(f"/orders/{order_id}/pay", token=buyer["token"])
    with concurrent.futures.ThreadPoolExecutor(len(taps)) as pool:
        return list(pool.map(tap, taps))


def paid_events(store, order_id):
    return list(store.outbox.events.find({"subject": order_id, "type": "order.paid"}))


def test_a_mixed_batch_applies_the_plain_payments_together_and_hands_every_other_note_back(api, stack, store):
    # given a shop with six unpaid orders, one of them cancelled, one paid already, and a group seat
    _, _, _, sku = open_shop(api, stock=20)
    buyer = api.register_user()
    plain, other, twice, wrong, cancelled, paid = (place(api, buyer["token"], sku) for _ in range(6))
    expect(api.post(f"/orders/{cancelled['order_id']}/cancel", token=buyer["token"]), 200)
    repeat = notification(paid)
    assert notify(api, stack.env["PAYMENT_HMAC_SECRET"], repeat).json()["outcome"] == "applied"
    _, _, _, group_sku = open_shop(api, group_buy={"size": 2, "price_fen": 3900, "window_seconds": 600})
    seat = expect(api.post("/group-buys", json={"qty": 1, "address": ADDRESS, "sku_id": group_sku},
                           token=buyer["token"]), 201)
    notes = [note_of(plain), note_of(other), note_of(twice), note_of(twice), note_of(wrong, amount_fen=1),
             note_of(cancelled), {**repeat, "paid_at": utcnow()}, note_of(seat)]
    # when they arrive together
    outcomes = store.apply_payments(notes, utcnow())
    # then the two plain orders and the first note of `twice` are paid in the batch, each with its order.paid
    assert outcomes[:3] == [("applied", None, "paid")] * 3
    # and the repeat of the payment that paid `paid` is answered in the batch as one, with nothing written
    assert outcomes[6] == ("duplicate", None, "paid")
    # and the second payment of `twice`, the wrong amount, the cancelled order and the group seat go alone (where
    # apply_payment refunds or refuses, as before batching)
    assert outcomes[3:6] + outcomes[7:] == [ALONE] * 4
    for order, note in ((plain, notes[0]), (other, notes[1]), (twice, notes[2])):
        stored = store.orders.find_one({"_id": order["order_id"]})
        assert (stored["status"], stored["trade_no"]) == ("paid", note["trade_no"])
        assert store.payments.find_one({"_id": note["trade_no"]})["outcome"] == "applied"
        [event] = paid_events(store, order["order_id"])
        assert event["envelope"]["data"]["trade_no"] == note["trade_no"]
        created = store.outbox.events.find_one({"subject": order["order_id"], "type": "order.created"})
        assert event["seq"] > created["seq"]  # relayed after the order's creation
    for note in notes[3:6] + notes[7:]:
        assert store.payments.find_one({"_id": note["trade_no"]}) is None
    assert len(paid_events(store, paid["order_id"])) == 1
    for order in (wrong, cancelled, seat):
        assert store.orders.find_one({"_id": order["order_id"]})["status"] != "paid"
        assert paid_events(store, order["order_id"]) == []


def test_a_copy_recorded_meanwhile_aborts_the_batch_with_nothing_written(api, store):
    # given two unpaid orders, and a copy of the first one's notification recorded by a concurrent request
    _, _, _, sku = open_shop(api)
    buyer = api.register_user()
    first, second = place(api, buyer["token"], sku), place(api, buyer["token"], sku)
    notes = [note_of(first), note_of(second)]
    store.payments.insert_one({"_id": notes[0]["trade_no"], "order_id": first["order_id"], "outcome": "applied",
                               "amount_fen": first["total_fen"], "received_at": utcnow()})
    # when the batch is applied
    outcomes = store.apply_payments(notes, utcnow())
    # then both are decided alone, and the batch wrote nothing: the second order is unpaid, without an event
    assert outcomes == [ALONE, ALONE]
    assert store.orders.find_one({"_id": second["order_id"]})["status"] == "pending_payment"
    assert store.payments.find_one({"_id": notes[1]["trade_no"]}) is None
    assert paid_events(store, second["order_id"]) == [] and paid_events(store, first["order_id"]) == []


def test_concurrent_notifications_are_written_together_and_each_caller_gets_its_own_answer(api, store):
    # given twelve unpaid orders, and a notification in flight (what arrives now waits for the next batch)
    _, _, _, sku = open_shop(api, stock=20)
    buyer = api.register_user()
    orders = [place(api, buyer["token"], sku) for _ in range(12)]
    notes = [note_of(order) for order in orders]
    saga = orders_saga.OrderSaga(store, None, None, load_settings({}))
    batcher = orders_saga._payments_of(store)
    before = (batcher.batches, batcher.batched)
    answers = {}
    batcher._alone += 1
    pool = eventlet.GreenPool(20)
    # when their notifications arrive at once, one of them twice
    for i, note in enumerate(notes + notes[:1]):
        pool.spawn_n(lambda i, note: answers.__setitem__(i, saga.apply_payment(note)), i, note)
    pool.waitall()
    batcher._alone -= 1
    # then they were written together, every order is paid once with one order.paid, and the repeat was told so
    assert batcher.batched - before[1] == 13 and batcher.batches - before[0] < 13
    assert sorted(answers[i][0] for i in range(13)) == ["applied"] * 12 + ["duplicate"]
    for order, note in zip(orders, notes):
        stored = store.orders.find_one({"_id": order["order_id"]})
        assert (stored["status"], stored["trade_no"]) == ("paid", note["trade_no"])
        assert len(paid_events(store, order["order_id"])) == 1


def test_notifications_arriving_at_the_gateway_together_each_get_their_own_answer(api, stack, mongo):
    # given ten unpaid orders and one more whose notification says the wrong amount
    _, _, _, sku = open_shop(api, stock=20)
    buyer = api.register_user()
    orders = [place(api, buyer["token"], sku) for _ in range(11)]
    bodies = [notification(order) for order in orders[:10]] + [notification(orders[10], amount_fen=1)]
    bodies.append(bodies[0])  # and the provider sending the first one twice
    secret = stack.env["PAYMENT_HMAC_SECRET"]
    local = threading.local()

    def send(body):
        if not hasattr(local, "api"):
            local.api = Api(api.base_url[:-len("/api/v1")], api.admin_phone, api.admin_password)
        return notify(local.api, secret, body)
    # when they all arrive at once
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, bodies))
    # then the ten are paid once each, the wrong amount is refused with its field, and the repeat is told so
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert sorted(a.json()["outcome"] for a in answers[:10] + answers[11:]) == ["applied"] * 10 + ["duplicate"]
    assert all(a.json()["status"] == "paid" for a in answers[:10])
    assert answers[10].status_code == 422 and "amount_fen" in answers[10].json()["error"]["fields"]
    db = mongo["quanzi_orders"]
    assert db.orders.count_documents({"_id": {"$in": [o["order_id"] for o in orders[:10]]}, "status": "paid"}) == 10
    assert db.orders.find_one({"_id": orders[10]["order_id"]})["status"] == "pending_payment"
    assert db.payments.count_documents({"order_id": {"$in": [o["order_id"] for o in orders]}}) == 10


def names(keep, concerns=False):
    """A CommandsSeen note: the name of each command `keep(event)` selects; with `concerns`, each write's name
    says the write concern it asked for ("insert w=1"; "default": none, the server's)."""
    def note(event):
        if not keep(event):
            return None
        concern = event.command.get("writeConcern", {}).get("w", "default")
        wrote = event.command_name in ("insert", "update", "delete", "findAndModify")
        return f"{event.command_name} w={concern}" if concerns and wrote else event.command_name
    return note


def to_orders_db_or_commit(event):
    """The commands sent to the orders' database, and the transactions' commits (run on admin)."""
    return event.database_name == "quanzi_orders" or event.command_name == "commitTransaction"


def about_payments(event):
    """The commands about the provider's payments."""
    return event.command.get(event.command_name) == "payments"


def test_notifications_repeating_the_payments_their_pays_applied_are_answered_from_one_read(api, stack):
    # given two orders paid by their pays (each applied from the provider's answer to the shop's trade query)
    # and an unpaid one
    _, _, _, sku = open_shop(api)
    buyer = api.register_user()
    paid = [expect(api.post(f"/orders/{place(api, buyer['token'], sku)['order_id']}/pay", token=buyer["token"]),
                   200) for _ in range(2)]
    unpaid = place(api, buyer["token"], sku)
    commands = CommandsSeen(names(to_orders_db_or_commit))
    client = MongoClient(stack.mongo_uri, tz_aware=True, event_listeners=[commands])
    settings = load_settings({})
    saga = orders_saga.OrderSaga(OrdersStore(client, client["quanzi_orders"], "orders", settings), None, None,
                                 settings)
    try:
        # when the provider's notifications of the two paid orders arrive together
        repeats = [note_of(order, trade_no=order["trade_no"]) for order in paid]
        outcomes = saga.apply_notifications(repeats)
        # then each is answered as a repeat from one read, with no transaction and nothing written
        assert outcomes == [("duplicate", None, "paid")] * 2
        assert commands.seen == ["find"]
        # when they arrive again, with a fresh notification of the unpaid order
        commands.seen.clear()
        outcomes = saga.apply_notifications(repeats + [note_of(unpaid)])
        # then the repeats are answered from that read and only the fresh one is applied, in a transaction
        assert outcomes == [("duplicate", None, "paid")] * 2 + [("applied", None, "paid")]
        assert commands.seen[0] == "find" and commands.seen[-1] == "commitTransaction"
    finally:
        client.close()


def test_the_gateways_batch_of_notifications_is_answered_one_by_one():
    from nameko.testing.services import worker_factory

    from kit.errors import RuleRefused
    from orders.service import OrdersService

    good = {"trade_no": "sbx000001", "order_id": "ord_1", "amount_fen": 5800, "status": "success",
            "paid_at": "2026-11-22T08:00:00+00:00"}
    wrong = dict(good, trade_no="sbx000003", order_id="ord_3")
    applied = [("applied", None, "paid"), RuleRefused("payment amount does not match the order",
                                                     {"amount_fen": ["expected 5800"]})]
    # given a batch from the gateway: a valid notification, one without a trade_no, and one of the wrong amount
    with patch.object(orders_saga.OrderSaga, "apply_notifications", return_value=applied) as apply_payments:
        outcomes = worker_factory(OrdersService, config=load_settings({})).payments_notified(
            [good, {k: v for k, v in good.items() if k != "trade_no"}, wrong])
    # then each is answered on its own: applied, refused for its missing field (never applied), refused for its
    # amount
    assert outcomes[0] == {"result": {"outcome": "applied", "order_id": "ord_1", "status": "paid", "refund_id": None}}
    assert outcomes[1]["error"]["code"] == "invalid_input" and "trade_no" in outcomes[1]["error"]["fields"]
    assert outcomes[2]["error"]["code"] == "rule_refused" and "amount_fen" in outcomes[2]["error"]["fields"]
    assert [note["trade_no"] for note in apply_payments.call_args.args[0]] == ["sbx000001", "sbx000003"]


def test_pays_tapped_at_the_same_moment_are_paid_together_and_each_answered_on_its_own(api, mongo, kombu_listener):
    # given twelve buyers with an unpaid order each, and one of them tapping "pay" twice
    listener = kombu_listener("orders.events", ["order.paid"])
    _, _, _, sku = open_shop(api, stock=20)
    buyers = [api.register_user() for _ in range(12)]
    orders = [place(api, buyer["token"], sku) for buyer in buyers]
    taps = [(buyer, order["order_id"]) for buyer, order in zip(buyers, orders)] + [(buyers[0], orders[0]["order_id"])]
    taps.append((buyers[1], orders[2]["order_id"]))  # and one trying to pay someone else's order
    # when they all tap at once
    answers = tap_all(api, taps)
    # then every order is paid, each answer shows its own order paid, the double tap paid once, and nobody paid
    # another's order
    assert [a.status_code for a in answers[:13]] == [200] * 13
    assert [(a.json()["order_id"], a.json()["status"]) for a in answers[:12]] == \
        [(o["order_id"], "paid") for o in orders]
    assert answers[12].json()["order_id"] == orders[0]["order_id"] and answers[12].json()["status"] == "paid"
    assert answers[13].status_code == 404
    # and each answer (made from the orders the batch wrote) is the order as it reads back (which also lists its
    # refunds)
    for buyer, answer in zip(buyers, answers[:12]):
        read = expect(api.get(f"/orders/{answer.json()['order_id']}", token=buyer["token"]), 200)
        assert read.pop("refunds") == [] and answer.json() == read
    ids = [o["order_id"] for o in orders]

    def all_recorded():  # the provider records the acknowledged notifications after the answers, off their path
        assert mongo["quanzi_sandbox_pay"]["payments"].count_documents(
            {"order_id": {"$in": ids}, "status": "notified"}) == 12
    eventually(all_recorded)
    assert mongo["quanzi_orders"]["payments"].count_documents({"order_id": {"$in": ids}}) == 12
    for order_id in ids:
        listener.wait_for(lambda m, order_id=order_id: m["data"]["order_id"] == order_id)
    time.sleep(0.5)  # room for a second order.paid to show up, were there one
    # (only these orders: an earlier test's order.paid may still be on its way, e.g. after a restart of orders
    # the outbox relays once the dead process's lease has expired)
    assert sorted(m["data"]["order_id"] for m in distinct(listener.messages) if m["data"]["order_id"] in ids) \
        == sorted(ids)


def test_the_gateways_batch_of_pays_is_answered_one_by_one():
    from nameko.testing.services import worker_factory

    from orders.service import OrdersService

    def order(order_id, buyer, status="pending_payment", trade_no=None):
        return {"_id": order_id, "buyer_id": buyer, "status": status, "merchant_id": "mch_a", "lines": [],
                "goods_fen": 5000, "shipping_fen": 800, "discount_fen": 0, "total_fen": 5800, "refunded_fen": 0,
                "created_at": utcnow(), "address": {"recipient": "Li"}, "share_code": None, "group_id": None,
                "trade_no": trade_no}
    stored = {"ord_1": order("ord_1", "usr_1"), "ord_2": order("ord_2", "usr_2", "paid", "sbx000002"),
              "ord_3": order("ord_3", "usr_3")}
    service = worker_factory(OrdersService, config=load_settings({}))
    service.store.orders_of.side_effect = lambda ids: {i: stored[i] for i in ids if i in stored}
    paid = dict(stored["ord_1"], status="paid", trade_no="sbx000001")
    # given a batch from the gateway: an unpaid order, a retried tap of a paid one, someone else's order, an order
    # that does not exist, and a malformed order id
    trade = {"trade_no": "sbx000001", "order_id": "ord_1", "amount_fen": 5800, "status": "success",
             "paid_at": "2026-11-22T08:00:00+00:00"}
    with patch.object(orders_saga.OrderSaga, "pay_together",
                      return_value=({"ord_1": paid}, [(trade, ("applied", None, "paid"))])) as pay_together:
        outcomes = service.pay_many([{"viewer": {"user_id": "usr_1"}, "order_id": "ord_1"},
                                     {"viewer": {"user_id": "usr_2"}, "order_id": "ord_2"},
                                     {"viewer": {"user_id": "usr_1"}, "order_id": "ord_3"},
                                     {"viewer": {"user_id": "usr_1"}, "order_id": "ord_9"},
                                     {"viewer": {"user_id": "usr_1"}, "order_id": "../x"}])
    # then only the unpaid one is paid; the paid one is answered as it is; the others are refused on their own
    assert [o["_id"] for o in pay_together.call_args.args[0]] == ["ord_1"]
    assert outcomes[0]["result"]["status"] == "paid" and outcomes[0]["result"]["trade_no"] == "sbx000001"
    assert outcomes[1]["result"]["status"] == "paid" and outcomes[1]["result"]["order_id"] == "ord_2"
    assert outcomes[2]["error"]["code"] == outcomes[3]["error"]["code"] == "not_found"
    assert outcomes[4]["error"]["code"] == "invalid_input"


def test_the_provider_notifies_a_batch_at_once_and_keeps_retrying_only_what_was_not_acknowledged(api, stack):
    from orders.provider import SandboxProvider

    client = connect(stack.mongo_uri)
    try:
        provider = SandboxProvider(client["quanzi_sandbox_pay"], stack.env["PAYMENT_HMAC_SECRET"],
                                   api.base_url + "/payments/notify")
        # given two unpaid orders, the first paid already at the provider by a concurrent tap, and an order the
        # shop does not know (it refuses that notification: 404)
        _, _, _, sku = open_shop(api)
        buyer = api.register_user()
        orders = [place(api, buyer["token"], sku) for _ in range(2)]
        amounts = [(o["order_id"], o["total_fen"]) for o in orders] + [(f"ord_{uuid.uuid4().hex[:12]}", 5800)]
        existing = one_payment(provider, *amounts[0])
        # when the three are paid together
        payments = provider.create_payments(amounts)
        provider.notify_all(list(payments.values()))
        # then the first keeps its one payment, both orders are paid, and only the refused one is not notified
        assert payments[amounts[0][0]]["_id"] == existing["_id"]
        stored = {p["order_id"]: p for p in client["quanzi_sandbox_pay"]["payments"].find(
            {"order_id": {"$in": [order_id for order_id, _ in amounts]}})}
        assert [stored[order_id]["status"] for order_id, _ in amounts] == ["notified", "notified", "refused"]
        assert stored[amounts[2][0]]["last_status"] == 404
        assert [expect(api.get(f"/orders/{o['order_id']}", token=buyer["token"]), 200)["status"] for o in orders] \
            == ["paid", "paid"]
    finally:
        client.close()


class SlowShop(BaseHTTPRequestHandler):
    """A shop whose notify URL answers after `delay` seconds with `status`; it records the trade numbers."""
    protocol_version = "HTTP/1.1"
    delay, status, heard = 0.0, 200, []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.heard.append(body["trade_no"])
        time.sleep(self.delay)
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_shop_provider(stack):
    """A sandbox provider with books of its own (a database no running service sweeps) that notifies SlowShop."""
    from orders.provider import SandboxProvider

    SlowShop.delay, SlowShop.status, SlowShop.heard = 0.0, 200, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowShop)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    commands = CommandsSeen(names(about_payments, concerns=True))
    client = MongoClient(stack.mongo_uri, tz_aware=True, event_listeners=[commands])
    db_name = f"quanzi_test_sandbox_{uuid.uuid4().hex[:8]}"
    provider = SandboxProvider(client[db_name], stack.env["PAYMENT_HMAC_SECRET"],
                               f"http://127.0.0.1:{server.server_address[1]}/api/v1/payments/notify")
    provider.ensure_indexes()
    provider.commands = commands.seen
    yield provider
    server.shutdown()
    server.server_close()
    client.drop_database(db_name)
    client.close()


def test_the_sweep_never_sends_a_notification_beside_its_first_delivery_and_resends_a_refused_one_after_backoff(
        slow_shop_provider):
    provider = slow_shop_provider
    # given a payment just made, whose first notification the shop takes a while to answer
    SlowShop.delay = 0.6
    payment = one_payment(provider, f"ord_{uuid.uuid4().hex[:12]}", 5800)
    first = threading.Thread(target=provider.notify_all, args=([payment],))
    first.start()
    time.sleep(0.2)
    # when the sweep runs while that notification is on its way
    sent_by_sweep = provider.redeliver_due()
    first.join()
    # then the sweep left it alone: the shop heard it once, and it is marked notified
    assert sent_by_sweep == 0
    assert SlowShop.heard == [payment["_id"]]
    assert provider.payments.find_one({"_id": payment["_id"]})["status"] == "notified"

    # given another payment whose first notification the shop does not acknowledge (503)
    SlowShop.delay, SlowShop.status, SlowShop.heard = 0.0, 503, []
    refused = one_payment(provider, f"ord_{uuid.uuid4().hex[:12]}", 5800)
    tried_at = utcnow()
    assert provider.notify(refused) is False
    # then it waits for its backoff (2 s after the first attempt), held by nobody
    stored = provider.payments.find_one({"_id": refused["_id"]})
    assert (stored["status"], stored["attempts"], stored["last_status"]) == ("created", 1, 503)
    assert stored["notify_due_at"] >= tried_at + timedelta(seconds=2)
    assert stored["claimed_until"] <= utcnow()
    # when its backoff has run out (moved to now here) and the shop is back
    provider.payments.update_one({"_id": refused["_id"]}, {"$set": {"notify_due_at": utcnow()}})
    SlowShop.status = 200
    # then the sweep sends it at once: the first sender's hold ended with its attempt
    assert provider.redeliver_due() == 1
    assert SlowShop.heard == [refused["_id"], refused["_id"]]
    assert provider.payments.find_one({"_id": refused["_id"]})["status"] == "notified"


def test_notifications_sent_later_are_held_from_the_sweep_and_one_lost_to_a_crash_is_sent_once_after_its_hold(
        slow_shop_provider):
    provider = slow_shop_provider
    later = []  # the greenthreads notify_later starts: run here by hand, or never (a crash)
    # given two payments of a batch of pays, whose notifications the shop acknowledges
    payments = provider.create_payments([(f"ord_{uuid.uuid4().hex[:12]}", 5800 + i) for i in range(2)])
    first, second = payments.values()
    # when the pays hand their notifications over, to go out after their answers
    with patch("orders.provider.in_background", lambda fn, *args: later.append((fn, args))):
        provider.notify_later([first])
        provider.notify_later([second])
    # then nothing was sent yet, and until they are, each payment's hold keeps the sweep from sending it
    assert SlowShop.heard == []
    assert provider.redeliver_due() == 0 and SlowShop.heard == []
    # when the first goes out and is recorded, and the process dies before it sends the second
    fn, args = later[0]
    fn(*args)
    assert SlowShop.heard == [first["_id"]]
    assert provider.payments.find_one({"_id": first["_id"]})["status"] == "notified"
    # then, once the second's hold has run out (moved to now here), the sweep sends it, once, and records it, and
    # never sends the first again
    provider.payments.update_one({"_id": second["_id"]}, {"$set": {"claimed_until": utcnow()}})
    assert provider.redeliver_due() == 1
    assert SlowShop.heard == [first["_id"], second["_id"]]
    assert provider.payments.find_one({"_id": second["_id"]})["status"] == "notified"
    assert provider.redeliver_due() == 0


def test_a_notification_sent_later_whose_record_fails_is_logged_and_left_to_the_sweep(slow_shop_provider, caplog):
    provider = slow_shop_provider
    payment = one_payment(provider, f"ord_{uuid.uuid4().hex[:12]}", 5800)
    later = []
    with patch("orders.provider.in_background", lambda fn, *args: later.append((fn, args))):
        provider.notify_later([payment])
    # when the shop acknowledges it but the provider cannot write that down (its database unreachable)
    fn, args = later[0]
    with patch.object(provider.notified_marks, "update_many", side_effect=ConnectionError("mongo away")):
        fn(*args)  # then nothing escapes the greenthread
    # then it is logged, and the payment waits, held, for the sweep to send it again when its hold ends
    assert "1 notifications not sent or not recorded (ConnectionError)" in caplog.text
    assert SlowShop.heard == [payment["_id"]]
    assert provider.payments.find_one({"_id": payment["_id"]})["status"] == "created"
    provider.payments.update_one({"_id": payment["_id"]}, {"$set": {"claimed_until": utcnow()}})
    assert provider.redeliver_due() == 1


def test_a_batch_of_new_payments_is_one_insert_and_only_orders_paid_before_cost_a_read(slow_shop_provider):
    provider = slow_shop_provider
    # given three orders, one of which has its payment already (a tap before)
    orders = [(f"ord_{uuid.uuid4().hex[:12]}", 5800 + i) for i in range(3)]
    before = one_payment(provider, *orders[1])
    provider.commands.clear()
    # when the three are paid together
    payments = provider.create_payments(orders)
    # then the new ones cost one insert (acknowledged by a majority: kit.durability.DURABLE), the one paid
    # before one read, and it keeps its one payment
    assert provider.commands == ["insert w=majority", "find"]
    assert payments[orders[1][0]]["_id"] == before["_id"]
    stored = {p["order_id"]: p for p in provider.payments.find({"order_id": {"$in": [o for o, _ in orders]}})}
    assert payments == stored  # what the batch answers is what the provider keeps, to the millisecond
    # and a batch of new payments only is one insert
    provider.commands.clear()
    provider.create_payments([(f"ord_{uuid.uuid4().hex[:12]}", 100) for _ in range(4)])
    assert provider.commands == ["insert w=majority"]


def test_a_payment_is_durable_before_the_shop_hears_of_it_and_its_acknowledgement_waits_for_no_journal(
        slow_shop_provider):
    provider = slow_shop_provider
    SlowShop.heard = provider.commands  # one timeline: the provider's commands, and each trade the shop hears of
    provider.commands.clear()  # the indexes made at start
    later = []  # the greenthreads notify_later starts, run here by hand
    # given a payment just made: acknowledged by a majority (kit.durability.DURABLE) before anyone hears of it
    payment = one_payment(provider, f"ord_{uuid.uuid4().hex[:12]}", 5800)
    assert provider.commands == ["insert w=majority"]
    provider.commands.clear()
    # when its notification goes out and the shop acknowledges it
    with patch("orders.provider.in_background", lambda fn, *args: later.append((fn, args))):
        provider.notify_later([payment])
    for fn, args in later:
        fn(*args)
    # then the acknowledgement is recorded without waiting for the journal (APPLIED): a record lost only sends
    # the notification again, answered as a repeat
    assert provider.commands == [payment["_id"], "update w=1"]
    assert provider.payments.find_one({"_id": payment["_id"]})["status"] == "notified"


@pytest.fixture
def small_gateway(stack):
    """The gateway restarted with few workers (MAX_WORKERS); back as it was afterwards."""
    stack.restart_service("gateway", {"MAX_WORKERS": "12"})
    yield 12
    stack.restart_service("gateway")


def test_more_pays_at_once_than_the_gateway_has_workers_are_all_paid_without_waiting_on_each_other(api,
                                                                                                  small_gateway):
    # given twice as many buyers with an unpaid order as the gateway has workers, and the provider's
    # notifications of their pays needing gateway workers too
    _, _, _, sku = open_shop(api, stock=2 * small_gateway + 10)
    buyers = [api.register_user() for _ in range(2 * small_gateway)]
    orders = [place(api, buyer["token"], sku) for buyer in buyers]
    # when they all tap "pay" at once
    started = time.monotonic()
    answers = tap_all(api, [(buyer, order["order_id"]) for buyer, order in zip(buyers, orders)])
    # then every one is paid, and promptly: no pay waits in its worker for a notification (when pays waited for
    # theirs, the notifications once waited for a worker until the provider gave up, 5 s, and the pays timed out)
    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "paid")] * len(buyers)
    assert time.monotonic() - started < 4.5


@pytest.mark.parametrize("point", ["pay_created", "pay_applied"])
def test_a_crash_between_the_steps_of_a_pay_leaves_the_order_paid_once_and_its_notification_acknowledged(
        api, stack, mongo, crashing_orders, kombu_listener, point):
    listener = kombu_listener("orders.events", ["order.paid"])
    _, _, _, sku = open_shop(api)
    buyer = api.register_user()
    order = place(api, buyer["token"], sku)
    orders, provider_payments = mongo["quanzi_orders"]["orders"], mongo["quanzi_sandbox_pay"]["payments"]
    orders.update_one({"_id": order["order_id"]}, {"$set": {"due_at": utcnow() + timedelta(hours=1)}})
    # given an orders service that dies at `point` of its next pay: its payment made at the provider, not yet
    # applied (pay_created), or applied, its notification not yet sent (pay_applied)
    crashing_orders(f"{point}#1")
    # when the buyer taps "pay"
    try:
        requests.post(f"{stack.gateway_url}/api/v1/orders/{order['order_id']}/pay", timeout=3,
                      headers={"Authorization": f"Bearer {buyer['token']}"})
    except requests.RequestException:
        pass
    def died():
        assert not stack.services["orders"].is_running()
    eventually(died, timeout=20)
    [payment] = provider_payments.find({"order_id": order["order_id"]})
    assert payment["status"] == "created"  # no notification went out
    assert orders.find_one({"_id": order["order_id"]})["status"] == ("pending_payment" if point == "pay_created"
                                                                      else "paid")
    # and the service comes back, and the payment's hold ends (moved to now here: it is 10 s)
    stack.restart_service("orders")
    provider_payments.update_one({"_id": payment["_id"]}, {"$set": {"claimed_until": utcnow()}})

    # then the sweep sends the notification, the shop acknowledges it, and the order is paid by that payment
    def notified():
        assert provider_payments.find_one({"_id": payment["_id"]})["status"] == "notified"
    eventually(notified, timeout=20)
    stored = orders.find_one({"_id": order["order_id"]})
    assert (stored["status"], stored["trade_no"]) == ("paid", payment["_id"])
    assert mongo["quanzi_orders"]["payments"].count_documents({"order_id": order["order_id"]}) == 1
    # and a tap again answers the paid order, charging nothing more
    again = expect(api.post(f"/orders/{order['order_id']}/pay", token=buyer["token"]), 200)
    assert (again["status"], again["trade_no"]) == ("paid", payment["_id"])
    assert provider_payments.count_documents({"order_id": order["order_id"]}) == 1
    # and one order.paid was published
    listener.wait_for(lambda m: m["data"]["order_id"] == order["order_id"], timeout=20)
    time.sleep(0.5)
    assert [m["data"]["order_id"] for m in distinct(listener.messages)].count(order["order_id"]) == 1


def test_a_batch_of_pays_is_answered_from_the_orders_its_transaction_wrote(api, stack, slow_shop_provider):
    # given three unpaid orders
    _, _, _, sku = open_shop(api)
    buyer = api.register_user()
    ids = [place(api, buyer["token"], sku)["order_id"] for _ in range(3)]
    commands = CommandsSeen(names(to_orders_db_or_commit))
    client = MongoClient(stack.mongo_uri, tz_aware=True, event_listeners=[commands])
    settings = load_settings({})
    store = OrdersStore(client, client["quanzi_orders"], "orders", settings)
    saga = orders_saga.OrderSaga(store, None, slow_shop_provider, settings)
    try:
        orders = list(store.orders_of(ids).values())
        commands.seen.clear()
        # when they are paid together
        after, applied = saga.pay_together(orders)
        # then they were applied in one transaction, and their answers are the orders it wrote: nothing read after
        assert [outcome for _, (outcome, _, _) in applied] == ["applied"] * 3
        assert commands.seen[0] == "find" and commands.seen[-1] == "commitTransaction"
        assert commands.seen.count("find") == 1
        assert after == store.orders_of(ids)  # as they read back
        assert {order["status"] for order in after.values()} == {"paid"}
    finally:
        client.close()
