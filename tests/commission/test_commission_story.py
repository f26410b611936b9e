"""The whole story over HTTP, with the real producers: a share, a click, a purchase (alone or in a group buy),
payment, shipping, receipt, the after-sales window, settlement, a withdrawal; refunds and failed groups."""
from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import ADDRESS, open_shop, pay, ship


def summary(api, user):
    return expect(api.get("/commissions/summary", token=user["token"]), 200)


def wait_summary(api, user, timeout=20, **expected):
    def check():
        current = summary(api, user)
        assert {k: current[k] for k in expected} == expected, current
        return current
    return eventually(check, timeout=timeout, interval=0.2)


def share_link(api, sharer, product_id):
    return expect(api.post("/shares", json={"product_id": product_id, "channel": "wechat"}, token=sharer["token"]),
                  201)["share_code"]


def test_share_click_buy_pay_ship_confirm_settle_and_withdraw(api):
    # given a tea at 100 yuan paying 10 % to the sharer, and a shopper who shares it
    owner, _, product, sku = open_shop(api, price_fen=10_000)
    sharer, buyer = api.register_user(nickname="sharer"), api.register_user(nickname="friend")
    code = share_link(api, sharer, product["product_id"])
    # when a friend opens the link, buys through it and pays
    expect(api.get(f"/s/{code}", token=buyer["token"]), 200)
    order = expect(api.post("/orders", json={"items": [{"sku_id": sku, "qty": 1}], "address": ADDRESS,
                                             "share_code": code}, token=buyer["token"]), 201)
    pay(api, buyer["token"], order["order_id"])
    # then the sharer sees 10 yuan pending, on that order
    wait_summary(api, sharer, pending_fen=1000, frozen_fen=0, withdrawable_fen=0)
    entries = expect(api.get("/commissions/ledger", token=sharer["token"]), 200)["items"]
    assert [(e["order_id"], e["level"], e["kind"], e["amount_fen"], e["status"]) for e in entries] == \
        [(order["order_id"], 1, "accrual", 1000, "pending")]
    # when it ships and the buyer confirms receipt: frozen through the after-sales window (8 s here)
    ship(api, owner["token"], order["order_id"])
    expect(api.post(f"/orders/{order['order_id']}/confirm-receipt", token=buyer["token"]), 200)
    wait_summary(api, sharer, pending_fen=0, frozen_fen=1000)
    # then once the window passed with no refund open, it is withdrawable
    wait_summary(api, sharer, timeout=25, frozen_fen=0, withdrawable_fen=1000)
    # and the sharer withdraws it to the sandbox payout, once whatever the retries
    headers = {"Idempotency-Key": f"wd-{order['order_id']}"}
    first = expect(api.post("/commissions/withdrawals", json={"amount_fen": 1000}, token=sharer["token"],
                            headers=headers), 201)
    retry = expect(api.post("/commissions/withdrawals", json={"amount_fen": 1000}, token=sharer["token"],
                            headers=headers), 201)
    assert first["status"] == "completed" and retry["withdrawal_id"] == first["withdrawal_id"]
    assert summary(api, sharer) == {"pending_fen": 0, "frozen_fen": 0, "withdrawable_fen": 0,
                                    "withdrawing_fen": 0, "withdrawn_fen": 1000}
    # and the buyer earned nothing on their own purchase
    assert summary(api, buyer)["pending_fen"] == 0


def test_a_30_percent_refund_reverses_30_percent_and_a_rejected_refund_still_settles(api):
    owner, _, product, sku = open_shop(api, price_fen=10_000)
    sharer, buyer = api.register_user(), api.register_user()
    code = share_link(api, sharer, product["product_id"])
    order = expect(api.post("/orders", json={"items": [{"sku_id": sku, "qty": 1}], "address": ADDRESS,
                                             "share_code": code}, token=buyer["token"]), 201)
    oid = order["order_id"]
    pay(api, buyer["token"], oid)
    ship(api, owner["token"], oid)
    expect(api.post(f"/orders/{oid}/confirm-receipt", token=buyer["token"]), 200)
    # a refund of 30 % of the goods, approved; then one for the rest, rejected
    asked = expect(api.post(f"/orders/{oid}/refunds", json={"reason": "dented", "amount_fen": 3000},
                            token=buyer["token"]), 201)
    expect(api.post(f"/refunds/{asked['refund_id']}/approve", token=owner["token"]), 200)
    wait_summary(api, sharer, frozen_fen=700)
    rest = expect(api.post(f"/orders/{oid}/refunds", json={"reason": "all"}, token=buyer["token"]), 201)
    expect(api.post(f"/refunds/{rest['refund_id']}/reject", json={"reason": "fine"}, token=owner["token"]), 200)
    # the remaining 70 % settles once the window is over
    wait_summary(api, sharer, timeout=25, frozen_fen=0, withdrawable_fen=700)
    kinds = sorted((e["kind"], e["amount_fen"]) for e in
                   expect(api.get("/commissions/ledger", token=sharer["token"]), 200)["items"])
    # (an order's events travel on one queue per type: the freeze may have seen the refund first or not)
    assert kinds in ([("accrual", 1000), ("freeze", 1000), ("reversal", 300), ("settle", 700)],
                     [("accrual", 1000), ("freeze", 700), ("reversal", 300), ("settle", 700)])


def test_a_group_buy_through_a_share_pays_when_formed_and_is_reversed_when_it_fails(api):
    owner, _, product, sku = open_shop(api, price_fen=10_000, group_buy={"size": 2, "price_fen": 8000,
                                                                          "window_seconds": 4})
    sharer = api.register_user()
    code = share_link(api, sharer, product["product_id"])
    body = {"sku_id": sku, "qty": 1, "address": ADDRESS, "share_code": code}
    # a group that forms: two friends through the share, both pay at the group price (800 fen each)
    leader, member = api.register_user(), api.register_user()
    opened = expect(api.post("/group-buys", json=body, token=leader["token"]), 201)
    joined = expect(api.post(f"/group-buys/{opened['group_id']}/join", json=body, token=member["token"]), 201)
    pay(api, leader["token"], opened["order_id"])
    pay(api, member["token"], joined["order_id"])
    assert expect(api.get(f"/group-buys/{opened['group_id']}"), 200)["status"] == "formed"
    wait_summary(api, sharer, pending_fen=1600)
    # a group that fails: one paid seat, nobody else in the window; the member is refunded
    loner = api.register_user()
    lonely = expect(api.post("/group-buys", json=body, token=loner["token"]), 201)
    pay(api, loner["token"], lonely["order_id"])
    wait_summary(api, sharer, pending_fen=2400)
    eventually(lambda: _assert_equal(expect(api.get(f"/group-buys/{lonely['group_id']}"), 200)["status"], "failed"),
               timeout=20, interval=0.5)
    # then that commission is reversed and the formed group's stays
    wait_summary(api, sharer, pending_fen=1600)
    reversals = [e for e in expect(api.get("/commissions/ledger", token=sharer["token"]), 200)["items"]
                 if e["kind"] == "reversal"]
    assert [(e["order_id"], e["amount_fen"], e["status"]) for e in reversals] == \
        [(lonely["order_id"], 800, "reversed")]


def _assert_equal(actual, expected):
    assert actual == expected
