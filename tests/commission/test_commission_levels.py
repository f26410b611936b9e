"""Compliance by construction: one level by default, two at most, never a third; rates capped where they are set;
a depth outside {1, 2} stops the service at start."""
import time

import pytest

from tests.commission import bus as ev
from tests.commission.bus import Story, uid
from tests.flows import approved_merchant, expect, product_payload
from tests.helpers import eventually
from tools.stack import ServiceProcess, free_port


def chain(send, length):
    """Users u0 <- u1 <- ... (each invited by the previous), each with a share code: [(user, code)]."""
    users = [uid("usr") for _ in range(length)]
    events = [ev.user_joined(users[0])]
    events += [ev.user_joined(user, inviter_id=inviter) for inviter, user in zip(users, users[1:])]
    codes = [uid("sc") for _ in users]
    events += [ev.share_created(code, user) for user, code in zip(users, codes)]
    send(*events)
    return list(zip(users, codes))


def test_with_one_level_the_sharers_inviter_earns_nothing(send, books):
    (inviter, _), (sharer, code) = chain(send, 2)
    send(Story(uid("usr"), share_code=code).paid())
    assert books.summary(sharer)["pending_fen"] == 1000
    assert books.summary(inviter)["pending_fen"] == 0


@pytest.fixture(scope="module")
def two_levels(stack):
    stack.restart_service("commission", {"COMMISSION_MAX_LEVELS": "2"})
    try:
        yield
    finally:
        stack.restart_service("commission")  # back to the stack's own settings (one level)


def test_with_two_levels_the_sharers_inviter_earns_the_level_2_rate(two_levels, send, books, kombu_listener):
    listener = kombu_listener("commission.events", ["commission.accrued"])
    (inviter, _), (sharer, code) = chain(send, 2)
    story = Story(uid("usr"), share_code=code, lines=[ev.line(10_000, level1_bp=1200, level2_bp=300)])
    send(story.paid())
    assert books.summary(sharer)["pending_fen"] == 1200
    assert books.summary(inviter)["pending_fen"] == 300
    level2 = listener.wait_for(lambda b: b["subject"] == story.order_id and b["data"]["level"] == 2)
    assert level2["data"] == {"order_id": story.order_id, "beneficiary_id": inviter, "level": 2, "amount_fen": 300}


def test_a_deep_invite_chain_pays_exactly_two_levels_on_one_order(two_levels, send, books, mongo):
    """C1 + C4: a five-deep chain; the order through the deepest sharer pays that sharer and their inviter,
    nobody above them, and nothing for the team's size or volume."""
    members = chain(send, 5)
    users = [user for user, _ in members]
    deepest_code = members[-1][1]
    orders = [Story(uid("usr"), share_code=deepest_code) for _ in range(3)]
    send(*(order.paid() for order in orders))
    pending = [books.summary(user)["pending_fen"] for user in users]
    assert pending == [0, 0, 0, 3 * 500, 3 * 1000]
    ledger = mongo["quanzi_commission"]["ledger"]
    entries = list(ledger.find({"order_id": {"$in": [o.order_id for o in orders]}}))
    assert sorted((e["level"], e["beneficiary_id"]) for e in entries) == \
        sorted([(1, users[4])] * 3 + [(2, users[3])] * 3), "one accrual per order and level, nothing else"
    assert {e["level"] for e in ledger.find({"beneficiary_id": {"$in": users}})} <= {1, 2}


def test_the_inviter_buying_through_their_invitees_share_earns_no_level_2(two_levels, send, books):
    (inviter, _), (sharer, code) = chain(send, 2)
    send(Story(inviter, share_code=code).paid())
    assert books.summary(sharer)["pending_fen"] == 1000
    assert books.summary(inviter)["pending_fen"] == 0


def test_an_inviter_bound_later_counts_for_level_2_and_first_touch_stays(two_levels, send, books):
    sharer, first, second, code = uid("usr"), uid("usr"), uid("usr"), uid("sc")
    send(ev.user_joined(sharer), ev.share_created(code, sharer))
    bound = {"user_id": sharer, "inviter_id": first, "share_code": uid("sc"), "bound_at": ev.iso(ev.now())}
    send(("inviter.bound", bound))
    send(("inviter.bound", {**bound, "inviter_id": second}))  # a second binding never replaces the first
    send(Story(uid("usr"), share_code=code).paid())
    assert books.summary(first)["pending_fen"] == 500
    assert books.summary(second)["pending_fen"] == 0


def test_over_http_the_sharer_earns_level_1_and_the_inviter_they_registered_through_level_2(two_levels, api):
    from tests.orders.shop import ADDRESS, open_shop, pay
    _, _, product, sku = open_shop(api, price_fen=10_000)  # 10 % level 1, 5 % level 2
    inviter = api.register_user()
    invite = expect(api.post("/shares", json={"product_id": product["product_id"]}, token=inviter["token"]), 201)
    sharer = api.register_user(share_code=invite["share_code"])
    code = expect(api.post("/shares", json={"product_id": product["product_id"]}, token=sharer["token"]),
                  201)["share_code"]
    buyer = api.register_user()
    order = expect(api.post("/orders", json={"items": [{"sku_id": sku, "qty": 1}], "address": ADDRESS,
                                             "share_code": code}, token=buyer["token"]), 201)
    pay(api, buyer["token"], order["order_id"])

    def pending(user):
        return expect(api.get("/commissions/summary", token=user["token"]), 200)["pending_fen"]

    def both_paid():
        assert (pending(sharer), pending(inviter)) == (1000, 500)
    eventually(both_paid, timeout=20, interval=0.2)


def test_rates_above_the_platform_cap_are_refused_where_they_are_set(api):
    owner, merchant = approved_merchant(api)
    response = api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], commission={"level1_bp": 2500, "level2_bp": 600}))
    assert response.status_code == 400
    assert "commission" in response.json()["error"]["fields"]


def test_three_levels_refuse_to_start_with_a_clear_message(stack):
    spec = stack.services["commission"].spec
    log_path = stack.logs_dir / f"commission-levels3-{uid('run')}.log"
    process = ServiceProcess(spec, {**stack.env, "COMMISSION_MAX_LEVELS": "3"}, free_port(), log_path)
    process.start()
    try:
        deadline = time.monotonic() + 60
        while process.is_running() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not process.is_running(), "the service started with COMMISSION_MAX_LEVELS=3"
        assert process.returncode != 0
        assert "COMMISSION_MAX_LEVELS='3' refused" in log_path.read_text()
    finally:
        process.kill()
