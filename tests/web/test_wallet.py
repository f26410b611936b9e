"""The sharer's wallet in a real browser: commission earned through a friend's purchase shows as withdrawable once
the after-sales window passed (8 s on the test stack); asking for more than that is refused next to the amount;
a withdrawal moves the money to "withdrawn" and both entries show in the statement."""
from tests.commission.test_commission_story import share_link, wait_summary
from tests.flows import expect
from tests.orders.shop import ADDRESS, open_shop, pay, ship


def test_a_sharer_withdraws_settled_commission_in_the_wallet_and_cannot_take_more(page, api):
    # given a sharer whose friend bought a 100-yuan tea through the link (10 %), received and kept it
    owner, _, product, sku = open_shop(api, price_fen=10_000)
    sharer, buyer = api.register_user(nickname="分享达人"), api.register_user(nickname="买茶的朋友")
    code = share_link(api, sharer, product["product_id"])
    expect(api.get(f"/s/{code}", token=buyer["token"]), 200)
    order = expect(api.post("/orders", json={"items": [{"sku_id": sku, "qty": 1}], "address": ADDRESS,
                                             "share_code": code}, token=buyer["token"]), 201)
    pay(api, buyer["token"], order["order_id"])
    ship(api, owner["token"], order["order_id"])
    expect(api.post(f"/orders/{order['order_id']}/confirm-receipt", token=buyer["token"]), 200)
    wait_summary(api, sharer, timeout=30, frozen_fen=0, withdrawable_fen=1000)
    # when the sharer opens the wallet
    page.allowed_console.append(r"withdrawals - .* status of 409")  # the refusal below is part of the scenario
    page.sign_in_as(sharer)
    page.open("/#/wallet")
    page.wait(lambda: page.element("[data-test=withdrawable]").text == "¥10.00")
    page.sees("佣金入账", "佣金结算")
    # and asks for more than is there: refused next to the amount, nothing moves
    page.type("[data-test=withdraw-amount]", "10.01").click("[data-test=withdraw]")
    page.wait(lambda: page.field_error("[data-test=withdraw-amount]") != "")
    assert page.element("[data-test=withdrawable]").text == "¥10.00"
    page.screenshot("refused")
    # when the sharer withdraws 6 yuan
    page.type("[data-test=withdraw-amount]", "6").click("[data-test=withdraw]")
    # then 4 yuan stay withdrawable, 6 show as withdrawn, and the statement has the withdrawal
    page.wait(lambda: page.element("[data-test=withdrawable]").text == "¥4.00")
    page.sees("¥6.00", "提现申请")
    page.screenshot("withdrawn")
    summary = expect(api.get("/commissions/summary", token=sharer["token"]), 200)
    assert (summary["withdrawable_fen"], summary["withdrawing_fen"] + summary["withdrawn_fen"]) == (400, 600)
