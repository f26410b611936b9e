"""The social loop in a real browser (headless Chromium), each scenario as a person clicks through the H5 pages,
against the real stack. Steps that are not the scenario's point (accounts, a merchant's catalogue) go through the
API; what the scenario is about is clicked. Each saves screenshots at 375 and 1280 px under the stack's folder."""
import json
import uuid
from pathlib import Path

from tests.flows import approved_merchant, expect, product_payload
from tests.social.social_flows import befriend

FIRST_LOAD_BYTES = 300_000
FIRST_LOAD_SECONDS = 3  # the aim is 1 s (0.3-0.5 s measured here); the 2 cores are shared with other stacks


def shop(api, *, title, price_fen=5000, group_buy=None, commission_bp=1000, stock=50):
    owner, merchant = approved_merchant(api, name=f"{title} 小店")
    payload = product_payload(merchant["merchant_id"], title=title, price_fen=price_fen, stock=stock, category="茶叶",
                              commission={"level1_bp": commission_bp, "level2_bp": 0}, group_buy=group_buy,
                              skus=[{"attrs": {"规格": "250g"}, "price_fen": price_fen, "stock": stock}])
    payload["images"] = ["/media/demo-longjing.svg"]  # the site's own picture: the test machine has no internet
    product = expect(api.post("/products", json=payload, token=owner["token"]), 201)
    return owner, merchant, product


def fill_address(page, recipient="王小明", phone="13712345678", region="上海市 浦东新区", detail="世纪大道 100 号"):
    page.type("[data-test=recipient]", recipient).type("[data-test=address-phone]", phone)
    page.type("[data-test=region]", region).type("[data-test=detail]", detail)


def order_id_of(page):
    page.wait(lambda: "/orders/ord_" in page.driver.current_url)
    return page.driver.current_url.split("/orders/")[1].split("?")[0]


def measure_first_load(page, url):
    """A cold first visit: empty cache, then the time until the buy button shows and the bytes that took."""
    page.driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    page.driver.get(url)
    page.element("[data-test=buy]", timeout=10)
    return page.driver.execute_script("""
        const nav = performance.getEntriesByType('navigation')[0];
        const bytes = performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, nav.transferSize);
        return {ms: performance.now(), bytes: bytes, requests: performance.getEntriesByType('resource').length + 1};
    """)


def test_a_friend_opens_a_share_link_registers_buys_and_the_sharer_sees_the_commission(page, api, stack):
    title = f"明前龙井 {uuid.uuid4().hex[:6]}"
    _, _, product = shop(api, title=title, price_fen=5000, commission_bp=1000)
    sharer = api.register_user(nickname="分享达人A")
    # A shares the product from its page
    page.sign_in_as(sharer)
    page.open(f"/#/p/{product['product_id']}").sees(title, "¥50.00")
    page.click("[data-test=share]")
    share_url = page.wait(lambda: page.element("[data-test=share-url] input").get_attribute("value"))
    assert "/s/" in share_url and "/api/" not in share_url
    code = share_url.rsplit("/", 1)[1]
    # B opens the link on a phone, signed out, cold: the product, its price and the buy button within a second
    page.sign_out()
    figures = measure_first_load(page, f"{stack.gateway_url}/s/{code}")
    (Path(stack.home) / "first-load.json").write_text(json.dumps(figures))
    print(f"\nfirst load of /s/{{code}}: {figures['bytes'] / 1000:.1f} kB in {figures['requests']} requests, "
          f"buy button after {figures['ms']:.0f} ms")
    assert figures["bytes"] < FIRST_LOAD_BYTES and figures["ms"] < FIRST_LOAD_SECONDS * 1000, figures
    page.sees(title, "¥50.00", "暂无评价", "单独购买")
    page.screenshot("share-landing")
    # B registers from the page, then buys and pays
    page.click("[data-test=buy]").sees("注册并登录", "你正在通过好友的分享注册")
    buyer_phone = api.new_phone()
    page.type("[data-test=phone]", buyer_phone).type("[data-test=password]", "b-secret-123")
    page.type("[data-test=nickname]", "好友B").click("[data-test=submit]")
    page.sees(title).click("[data-test=buy]").click("[data-test=confirm-sku]")
    page.sees("确认订单", title)
    fill_address(page)
    page.screenshot("checkout")
    page.click("[data-test=place-order]").sees("沙箱支付", "待付款", "¥58.00")  # ¥50 + ¥8 shipping
    order_id = order_id_of(page)
    page.click("[data-test=pay]").sees("已付款")
    page.does_not_see("沙箱支付")
    page.screenshot("paid")
    # the sharer is B's inviter and the order carries the share
    buyer_token = api.login(buyer_phone, "b-secret-123")
    assert expect(api.get("/me", token=buyer_token), 200)["inviter_id"] == sharer["user_id"]
    assert expect(api.get(f"/orders/{order_id}", token=buyer_token), 200)["share_code"] == code
    # A's wallet shows the commission (10% of the goods: ¥5.00) pending
    page.sign_out()
    page.sign_in_as(sharer)
    page.open("/#/wallet").sees_eventually("待结算", "¥5.00", "佣金入账")
    assert page.element("[data-test=pending]").text == "¥5.00"
    page.screenshot("wallet")
    # and B's order page shows it paid
    page.sign_out()
    page.sign_in_as({"token": buyer_token})
    page.open(f"/#/orders/{order_id}").sees("已付款", title, "¥58.00", "上海市 浦东新区")
    page.open("/#/orders").sees(title, "已付款")
    # and signs out: the token stops working at the API too
    page.open("/#/me").click("[data-test=logout]").sees("登录", "手机号")
    assert api.get("/me", token=buyer_token).status_code == 401


def test_a_group_buy_opened_by_a_and_joined_by_b_through_the_share_page_forms_for_both(page, api):
    title = f"拼团白茶 {uuid.uuid4().hex[:6]}"
    _, _, product = shop(api, title=title, price_fen=5000,
                         group_buy={"size": 2, "price_fen": 3900, "window_seconds": 3600})
    leader, friend = api.register_user(nickname="团长A"), api.register_user(nickname="团员B")
    # A opens a group from the product page and pays
    page.sign_in_as(leader)
    page.open(f"/#/p/{product['product_id']}").sees(title, "2人拼团", "还没有人开团")
    page.click("[data-test=open-group]").click("[data-test=confirm-sku]").sees("发起拼团")
    fill_address(page)
    page.click("[data-test=place-order]").sees("沙箱支付", "¥39.00")
    page.click("[data-test=pay]").sees("待成团")
    page.click("[data-test=group-link]").sees("拼团中", "还差")
    group_id = page.driver.current_url.rsplit("/", 1)[1]
    share = expect(api.post("/shares", json={"product_id": product["product_id"], "channel": "wechat"},
                            token=leader["token"]), 201)
    # B opens A's link: the open group with one seat left and its countdown; B joins and pays
    page.sign_out()
    page.sign_in_as(friend)
    page.open(f"/s/{share['share_code']}").sees(title, "还差 1 人成团", "去参团")
    page.element(f"[data-group='{group_id}'] .van-count-down")
    page.screenshot("share-with-open-group")
    page.click(f"[data-group='{group_id}'] button").click("[data-test=confirm-sku]").sees("参与拼团")
    fill_address(page, recipient="李四")
    page.click("[data-test=place-order]").sees("沙箱支付")
    page.click("[data-test=pay]")
    page.click("[data-test=group-link]").sees_eventually("已成团")
    page.screenshot("formed")
    # A sees it formed too
    page.sign_out()
    page.sign_in_as(leader)
    page.open(f"/#/group/{group_id}").sees("已成团", "团长 已付款", "团员 已付款")


def test_a_merchant_creates_a_product_in_the_console_after_the_admin_approves_and_shoppers_find_it(page, api):
    owner = api.register_user(nickname="新商家")
    shop_name, title = f"山野茶庄 {uuid.uuid4().hex[:6]}", f"高山云雾茶 {uuid.uuid4().hex[:6]}"
    # the owner applies in the merchant console
    page.sign_in_as(owner)
    page.open("/merchant/").sees("申请开店")
    page.type("[data-test=shop-name]", shop_name).click("[data-test=apply]").sees(shop_name, "待审核")
    # the admin approves it in the admin console
    page.sign_out()
    page.sign_in_as({"token": api.admin_token()})
    page.open("/admin/").sees("商家审核", shop_name)
    merchant_id = expect(api.get("/me", token=owner["token"]), 200)["merchants"][0]["merchant_id"]
    page.screenshot("review-queue")
    page.click(f"[data-merchant='{merchant_id}'] [data-test=approve]")
    page.wait(lambda: shop_name not in page.text())
    page.click(text="已通过").sees(shop_name)
    # the owner lists a product with two SKUs, a commission and a group offer
    page.sign_out()
    page.sign_in_as(owner)
    page.open("/merchant/").sees(shop_name, "已通过", "发布商品")
    page.type("[data-test=p-title]", title).type("[data-test=p-category]", "茶叶")
    page.type("[data-test=sku-name]", "100g").type("[data-test=sku-price]", "66.00").type("[data-test=sku-stock]", "30")
    page.type("[data-test=p-commission]", "8")
    page.click("[data-test=p-group]").type("[data-test=p-group-size]", "3").type("[data-test=p-group-price]", "55.5")
    page.screenshot("create-product")
    page.click("[data-test=create-product]").sees(f"已上架：{title}")
    # a shopper finds it by searching the storefront
    page.sign_out()
    page.open("/").sees("全部")
    page.type(".van-search", title.split()[1])
    page.click(text="搜索").sees(title, "¥66.00", "3人团")
    page.screenshot("search")
    page.click(text=title).sees(title, "3人拼团 · 拼团价 ¥55.50")
    found = expect(api.get("/products", params={"q": title.split()[1]}), 200)["items"]
    assert [p["title"] for p in found] == [title]
    assert found[0]["group_buy"]["price_fen"] == 5550


def test_moments_a_post_with_a_product_card_is_liked_and_commented_by_a_friend_and_hidden_from_a_stranger(page, api):
    title = f"安吉白茶 {uuid.uuid4().hex[:6]}"
    _, _, product = shop(api, title=title, price_fen=8800)
    author, friend, stranger = (api.register_user(nickname=n) for n in ("作者小美", "好友阿强", "陌生人"))
    befriend(api, friend, author)
    text = f"新茶到了，一起喝 {uuid.uuid4().hex[:4]}"
    # the author shares the product to moments, for friends only
    page.sign_in_as(author)
    page.open(f"/#/moments?product={product['product_id']}").sees(title)
    page.type("[data-test=moment-text]", text).click("[data-test=post-moment]")
    page.sees(text, "好友可见")
    page.wait(lambda: title in page.element(".moment .product-card").text)
    # a friend sees it with the product card, likes it and comments
    page.sign_out()
    page.sign_in_as(friend)
    page.open("/#/moments").sees(text, title, "¥88.00")
    page.click("[data-test=like]").sees("已赞", "❤ 好友阿强")
    page.type("[data-test=comment-text]", "我也要一盒").click("[data-test=send-comment]").sees("好友阿强：我也要一盒")
    page.screenshot("friend-comments")
    # the card opens the author's share page
    page.click(".moment .product-card").sees("好友分享给你一件好物", title)
    # a stranger sees none of it
    page.sign_out()
    page.sign_in_as(stranger)
    page.open("/#/moments").sees("朋友圈还没有动态")
    page.does_not_see(text)
    moment_id = expect(api.get("/timeline", token=author["token"]), 200)["items"][0]["moment_id"]
    assert api.get(f"/moments/{moment_id}", token=stranger["token"]).status_code == 404


def test_bad_input_in_forms_shows_the_apis_field_errors_next_to_the_fields(page, api):
    page.allowed_console.append(r"status of 400")  # the API refusing the forms is the point here
    # registering with a phone number that is not one
    page.open("/#/login?register=1").sees("注册并登录")
    page.type("[data-test=phone]", "12345").type("[data-test=password]", "short")
    page.type("[data-test=nickname]", "新人").click("[data-test=submit]")
    page.wait(lambda: page.field_error("[data-test=phone]"))
    assert page.field_error("[data-test=phone]") == "Not a mainland mobile number."
    assert "8" in page.field_error("[data-test=password]")
    page.screenshot("register-errors")
    # checking out with an empty address and a bad phone
    _, _, product = shop(api, title=f"坚果礼盒 {uuid.uuid4().hex[:6]}", price_fen=9900)
    page.sign_in_as(api.register_user())
    page.open(f"/#/checkout?product={product['product_id']}&sku={product['skus'][0]['sku_id']}&qty=1&mode=single")
    page.sees("确认订单")
    page.type("[data-test=address-phone]", "999")
    page.click("[data-test=place-order]")
    page.wait(lambda: page.field_error("[data-test=recipient]"))
    for field in ("recipient", "region", "detail"):
        assert "Length" in page.field_error(f"[data-test={field}]") or page.field_error(f"[data-test={field}]")
    assert page.field_error("[data-test=address-phone]") == "Not a mainland mobile number."
    page.sees("确认订单")  # still here: nothing was ordered
    page.screenshot("checkout-errors")
    assert expect(api.get("/orders", token=page.driver.execute_script(
        "return localStorage.getItem('quanzi.token')")), 200)["items"] == []


def test_the_api_reference_and_the_events_render_in_a_browser(page):
    page.open("/docs").sees("Quanzi", "/api/v1/orders", timeout=30)
    page.does_not_see("Unable to render this definition")
    assert len(page.driver.find_elements("css selector", ".opblock")) > 40
    page.screenshot("swagger")
    page.open("/docs/events").sees("order.paid", "orders.events", "commission.accrued", "channels")
    assert len(page.driver.find_elements("css selector", ".message")) >= 20
    page.screenshot("events")
