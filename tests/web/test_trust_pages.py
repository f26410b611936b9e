"""Trust you can see, in a real browser (headless Chromium) against the real stack: reviews with the merchant's reply
and the merchant's public profile, a return with goods walked through by the buyer and the merchant, and a rejected
refund escalated by the buyer and decided by an admin in the dispute queue. The steps before each scenario's point
(a shop, orders paid and shipped, the return's approval) go through the API; the steps the scenario is
about are clicked. The return's approval is an API call for a reason: the test stack approves an unanswered
request after REFUND_RESPONSE_WINDOW = 12 s, which a browser round trip on shared cores may pass (the rejection is
clicked in a console opened before the request)."""
import os
import shutil
import time
import uuid
from pathlib import Path

from tests.flows import expect
from tests.helpers import eventually
from tests.orders.shop import ADDRESS
from tests.web.conftest import PHONE
from tests.web.test_storefront import shop


def evidence(page, name):
    """The screenshots of the conftest (375 and 1280 px under the stack's folder), and, when P14_SHOTS names a
    folder, the whole page at 375 px there (for people reviewing the pages; nothing asserts on it)."""
    page.screenshot(name)
    folder = os.environ.get("P14_SHOTS")
    if folder:
        height = page.driver.execute_script("window.scrollTo(0, 0); return document.documentElement.scrollHeight")
        page.driver.set_window_size(PHONE[0], max(PHONE[1], min(int(height) + 90, 3000)))
        time.sleep(0.2)
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.driver.save_screenshot(str(Path(folder) / f"p14-{name}.png"))
        page.driver.set_window_size(*PHONE)


def bought(api, owner, buyer, sku_id, *, qty=1, complete=False):
    """The buyer's order of `qty`, paid and shipped (and received, when `complete`): its id."""
    order = expect(api.post("/orders", json={"items": [{"sku_id": sku_id, "qty": qty}], "address": ADDRESS},
                            token=buyer["token"]), 201)
    oid = order["order_id"]
    expect(api.post(f"/orders/{oid}/pay", token=buyer["token"]), 200)
    expect(api.post(f"/orders/{oid}/ship", json={"carrier": "顺丰速运", "tracking_no": "SF1001"},
                    token=owner["token"]), 200)
    if complete:
        expect(api.post(f"/orders/{oid}/confirm-receipt", token=buyer["token"]), 200)
    return oid


def review(api, buyer, product_id, order_id, rating, text):
    """The catalog learns that an order completed from order.completed: a review right after may wait for it."""
    return eventually(lambda: expect(api.post(f"/products/{product_id}/reviews", json={
        "order_id": order_id, "rating": rating, "text": text}, token=buyer["token"]), 201))


def order_of(api, user, order_id):
    return expect(api.get(f"/orders/{order_id}", token=user["token"]), 200)


def test_a_shopper_reads_reviews_with_the_merchants_reply_and_opens_the_merchants_rated_profile(page, api):
    title = f"碧螺春 {uuid.uuid4().hex[:6]}"
    owner, merchant, product = shop(api, title=title, price_fen=5000)
    pid, sku = product["product_id"], product["skus"][0]["sku_id"]
    # given a buyer who received the goods, and five earlier buyers who reviewed it (5 stars each)
    writer = api.register_user(nickname="茶友小王")
    oid = bought(api, owner, writer, sku, complete=True)
    for n in range(5):
        earlier = api.register_user(nickname=f"老顾客{n}")
        review(api, earlier, pid, bought(api, owner, earlier, sku, complete=True), 5, f"回购第{n}次，好喝")
    # when that buyer writes a review on the completed order: three stars and a text
    page.sign_in_as(writer)
    page.open(f"/#/orders/{oid}").sees("已完成", "评价商品", title)
    page.click(f"[data-review-product='{pid}'] .van-rate__item:nth-child(3)")
    page.type("[data-test=review-text]", "香气一般，包装很好")
    evidence(page, "order-review-form")
    page.click("[data-test=post-review]").sees("已评价")
    # and the merchant answers it in the console, once
    page.sign_out()
    page.sign_in_as(owner)
    page.open("/merchant/").sees(merchant["name"]).click(text="评价").sees("香气一般，包装很好", "茶友小王")
    written = expect(api.get(f"/products/{pid}/reviews", params={"limit": 1}), 200)["items"][0]
    assert (written["rating"], written["text"]) == (3, "香气一般，包装很好")
    page.type(f"[data-review='{written['review_id']}'] [data-test=reply-text]", "感谢反馈，下次加急发货")
    page.click(f"[data-review='{written['review_id']}'] [data-test=send-reply]").sees("已回复：感谢反馈，下次加急发货")
    evidence(page, "merchant-reviews")
    assert api.post(f"/reviews/{written['review_id']}/reply", json={"text": "again"},
                    token=owner["token"]).status_code == 409
    # then a signed-out shopper sees the newest review first with the reply, the average, and five at a time
    page.sign_out()
    page.open(f"/#/p/{pid}").sees(title, "商品评价", "茶友小王", "香气一般，包装很好", "商家回复：感谢反馈，下次加急发货")
    page.sees("4.7 分 · 6 条评价")  # (5 × 5 + 3) / 6 = 4.67
    reviews = page.driver.find_elements("css selector", "[data-review]")
    assert len(reviews) == 5 and "茶友小王" in reviews[0].text and "老顾客4" in reviews[1].text
    page.does_not_see("老顾客0")
    evidence(page, "product-reviews-first-page")
    page.click("[data-test=more-reviews]").sees("老顾客0", "回购第0次，好喝")
    page.wait(lambda: not page.driver.find_elements("css selector", "[data-test=more-reviews]"))
    evidence(page, "product-reviews")
    # and the merchant's name and rating open its public profile
    link = page.element("[data-test=merchant-link]")
    assert merchant["name"] in link.text and "4.7 分 · 6 条评价" in link.text
    page.click("[data-test=merchant-link]")
    page.sees(merchant["name"], "店铺评分", "4.7", "6 条评价", "入驻", title)
    assert page.element("[data-test=merchant-name]").text == merchant["name"]
    evidence(page, "merchant-profile")


def test_a_return_with_goods_walked_by_the_buyer_and_the_merchant_ends_with_the_money_back(page, api):
    page.allowed_console.append(r"status of 400")  # the API refusing a bad tracking number is part of it
    title = f"紫砂壶 {uuid.uuid4().hex[:6]}"
    owner, merchant, product = shop(api, title=title, price_fen=5000)
    buyer = api.register_user(nickname="退货的买家")
    oid = bought(api, owner, buyer, product["skus"][0]["sku_id"])
    # when the buyer of a shipped order asks for ¥30 back with the goods going back
    page.sign_in_as(buyer)
    page.open(f"/#/orders/{oid}").sees("已发货", "申请退款", "需要退货")
    page.type("[data-test=refund-reason]", "壶盖有裂纹").type("[data-test=refund-amount]", "30")
    page.click("[data-test=return-goods]")
    evidence(page, "refund-with-return-form")
    page.click("[data-test=request-refund]").sees("退货退款 · 待商家处理 · ¥30.00", "退款中")
    rid = order_of(api, buyer, oid)["refunds"][0]["refund_id"]
    # and the merchant agrees (through the API: see the module's note)
    expect(api.post(f"/refunds/{rid}/approve", token=owner["token"]), 200)
    # then the buyer is asked to send the goods back, and a tracking number that is not one is refused next to it
    page.sees_eventually("退货退款 · 商家已同意，请寄回商品 · ¥30.00")
    page.type("[data-test=return-carrier]", "中通快递").type("[data-test=return-tracking]", "中通 123")
    page.click("[data-test=send-return]")
    page.wait(lambda: page.field_error("[data-test=return-tracking]"))
    evidence(page, "return-shipment-error")
    page.type("[data-test=return-tracking]", "ZT20261130").click("[data-test=send-return]")
    page.sees("商品寄回中，待商家确认收货", "退货物流：中通快递 ZT20261130")
    evidence(page, "returning")
    # when the merchant confirms in the console that the goods arrived
    page.sign_out()
    page.sign_in_as(owner)
    page.open("/merchant/").sees(merchant["name"]).click(text="退款")
    page.sees("退货退款 ¥30.00：壶盖有裂纹", "买家已寄回：中通快递 ZT20261130")
    evidence(page, "merchant-confirm-return")
    page.click(f"[data-refund='{rid}'] [data-test=confirm-return]")
    page.wait(lambda: "买家已寄回" not in page.text())
    # then the buyer sees the ¥30 refunded, the order still shipped with the rest of the money kept
    page.sign_out()
    page.sign_in_as(buyer)
    page.open(f"/#/orders/{oid}").sees("退货退款 · 已退款 · ¥30.00", "已发货")
    assert page.element("[data-test=refunded]").text.endswith("¥30.00")
    evidence(page, "return-refunded")
    after = order_of(api, buyer, oid)
    assert (after["status"], after["refunded_fen"], after["refunds"][0]["status"]) == ("shipped", 3000, "succeeded")


def test_a_rejected_refund_escalated_by_the_buyer_is_decided_by_an_admin_and_the_buyer_sees_the_outcome(page, api):
    page.allowed_console.append(r"status of 400")  # an empty reason refused next to the field is part of it
    title = f"蜂蜜礼盒 {uuid.uuid4().hex[:6]}"
    owner, _, product = shop(api, title=title, price_fen=5000)
    buyer = api.register_user(nickname="申诉的买家")
    oid = bought(api, owner, buyer, product["skus"][0]["sku_id"])
    # given the merchant's console is open when the buyer asks for the goods' money back (the request is answered
    # within seconds: the test stack approves it by itself after 12 s)
    page.sign_in_as(owner)
    page.open("/merchant/").sees("发布商品")
    rid = expect(api.post(f"/orders/{oid}/refunds", json={"reason": "蜂蜜结晶发白"}, token=buyer["token"]),
                 201)["refund_id"]
    # when the merchant refuses it, first without a reason (refused next to the field), then with one
    page.click(text="退款").sees("退款 ¥50.00：蜂蜜结晶发白")
    page.click(f"[data-refund='{rid}'] [data-test=reject-refund]")
    page.wait(lambda: page.field_error(f"[data-refund='{rid}'] [data-test=reject-reason]"))
    evidence(page, "merchant-reject-error")
    page.type(f"[data-refund='{rid}'] [data-test=reject-reason]", "结晶是正常现象")
    page.click(f"[data-refund='{rid}'] [data-test=reject-refund]").sees("没有待处理的退款")
    assert order_of(api, buyer, oid)["refunds"][0]["status"] == "rejected"
    # and the buyer escalates it on the order page, first without saying why
    page.sign_out()
    page.sign_in_as(buyer)
    page.open(f"/#/orders/{oid}").sees("仅退款 · 商家已拒绝 · ¥50.00", "商家拒绝：结晶是正常现象", "申请平台介入")
    page.click("[data-test=escalate]")
    page.wait(lambda: page.field_error("[data-test=escalate-reason]"))
    page.type("[data-test=escalate-reason]", "收到时已经变质有异味").click("[data-test=escalate]")
    page.sees("平台介入 · 处理中 · 申请 ¥50.00", "已申请平台介入")
    evidence(page, "escalated")
    dispute_id = order_of(api, buyer, oid)["refunds"][0]["dispute_id"]
    # and the merchant's console says the platform now decides
    page.sign_out()
    page.sign_in_as(owner)
    page.open("/merchant/").click(text="退款").sees("平台介入 ¥50.00：收到时已经变质有异味",
                                                   "买家已申请平台介入，等待平台裁决（你的拒绝理由：结晶是正常现象）")
    evidence(page, "merchant-disputed")
    # then the admin finds it in the dispute queue with both sides' reasons, and refunds ¥20 of it
    page.sign_out()
    page.sign_in_as({"token": api.admin_token()})
    page.open("/admin/").click(text="纠纷处理").sees("管理后台 · 纠纷处理")
    card = f"[data-dispute='{dispute_id}']"
    page.wait(lambda: title in page.element(card).text)
    assert all(t in page.element(card).text for t in ("¥50.00", "收到时已经变质有异味", "结晶是正常现象", oid))
    evidence(page, "admin-dispute-queue")
    page.type(f"{card} [data-test=decide-amount]", "20").type(f"{card} [data-test=decide-reason]", "部分变质，退一部分")
    page.click(f"{card} [data-test=decide-refund]")
    page.wait(lambda: not page.driver.find_elements("css selector", card))
    page.click(text="已裁决").sees("已裁定退款 ¥20.00", "部分变质，退一部分")
    evidence(page, "admin-dispute-decided")
    # and the buyer sees the platform's decision and the money back on the order
    page.sign_out()
    page.sign_in_as(buyer)
    page.open(f"/#/orders/{oid}").sees("平台介入 · 裁定退款 ¥20.00", "平台意见：部分变质，退一部分")
    assert page.element("[data-test=refunded]").text.endswith("¥20.00")
    evidence(page, "dispute-outcome")
    assert order_of(api, buyer, oid)["refunded_fen"] == 2000
