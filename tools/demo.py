"""`make demo`: a realistic demo loaded through the public API, as a client would (so it exercises it), like
Saleor's populatedb. Idempotent: every step first looks whether its result is there already, so running it again
(or on every `make run` over an empty database) adds nothing twice.

    python -m tools.demo [--url http://127.0.0.1:8000]      (GATEWAY_URL works too)

Accounts (password for all but the admin: demo1234): see ACCOUNTS, listed in README."""
import argparse
import os
import sys
import time
import uuid

import requests

PASSWORD = "demo1234"
ADDRESS = {"recipient": "李小美", "phone": "13712345678", "region": "浙江省 杭州市 西湖区", "detail": "文三路 90 号"}
ACCOUNTS = {  # phone: (nickname, role in the story)
    "13900000001": ("茶老板老王", "merchant: 西湖茶香小铺"),
    "13900000002": ("果园主阿芳", "merchant: 赣南鲜果园"),
    "13700000001": ("小美", "shopper who shares (earns commission)"),
    "13700000002": ("阿强", "小美's friend, buys through her shares"),
    "13700000003": ("丽丽", "小美's friend"),
    "13700000004": ("大伟", "阿强's friend, opens group buys"),
}
SHOPS = {
    "13900000001": ("西湖茶香小铺", "杭州西湖产区直发，三代茶农"),
    "13900000002": ("赣南鲜果园", "果园直采，坏果包赔"),
}
# (shop owner, title, category, description, image, [(attrs, price_fen, stock)], level1_bp, group_buy)
PRODUCTS = [
    ("13900000001", "西湖龙井 明前特级", "茶叶", "2026年明前头采，豆香浓郁，手工炒制。", "longjing",
     [({"规格": "100g"}, 12800, 200), ({"规格": "250g 礼盒"}, 29800, 80)], 1000,
     {"size": 3, "price_fen": 9900, "window_seconds": 86400}),
    ("13900000001", "安吉白茶 一级", "茶叶", "氨基酸含量高，鲜爽回甘。", "baicha",
     [({"规格": "125g"}, 8800, 150)], 800, {"size": 2, "price_fen": 6900, "window_seconds": 86400}),
    ("13900000001", "云南普洱熟茶 饼茶", "茶叶", "勐海原料，七年陈化，357g。", "puer",
     [({"规格": "357g"}, 15800, 60)], 1200, None),
    ("13900000002", "赣南脐橙 5斤装", "水果", "现摘现发，果径75mm以上。", "orange",
     [({"规格": "5斤"}, 3990, 500), ({"规格": "10斤"}, 6990, 300)], 1000,
     {"size": 2, "price_fen": 2990, "window_seconds": 86400}),
    ("13900000002", "烟台红富士苹果", "水果", "脆甜多汁，一箱12个。", "apple",
     [({"规格": "12个装"}, 4990, 300)], 600, None),
    ("13900000002", "每日坚果礼盒 30包", "零食", "六种坚果果干，独立小包装。", "nuts",
     [({"规格": "30包"}, 9900, 200)], 1500, {"size": 3, "price_fen": 7900, "window_seconds": 86400}),
]
IMAGES = {  # name: (background, foreground, label)
    "longjing": ("#e8f5e9", "#2e7d32", "龙井"), "baicha": ("#f1f8e9", "#558b2f", "白茶"),
    "puer": ("#efebe9", "#5d4037", "普洱"), "orange": ("#fff3e0", "#ef6c00", "脐橙"),
    "apple": ("#ffebee", "#c62828", "苹果"), "nuts": ("#fff8e1", "#8d6e63", "坚果"),
}
MEDIA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "public", "media")


def svg(name):
    """A small product picture (SVG, a few hundred bytes): served by the gateway at /media/demo-<name>.svg."""
    background, color, text = IMAGES[name]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 400"><rect width="400" height="400" '
            f'fill="{background}"/><circle cx="200" cy="170" r="110" fill="{color}" opacity="0.85"/>'
            f'<text x="200" y="195" font-size="72" text-anchor="middle" fill="#fff" '
            f'font-family="sans-serif">{text}</text><text x="200" y="350" font-size="28" text-anchor="middle" '
            f'fill="{color}" font-family="sans-serif">圈子好物</text></svg>\n')


def write_images(folder=MEDIA):
    """(Re)generates the demo pictures in web/public/media (committed; the web build copies them to dist)."""
    os.makedirs(folder, exist_ok=True)
    for name in IMAGES:
        with open(os.path.join(folder, f"demo-{name}.svg"), "w", encoding="utf-8") as out:
            out.write(svg(name))


class DemoError(RuntimeError):
    pass


class Client:
    """The demo's view of the public API: one session, bearer tokens per person, an Idempotency-Key per POST."""

    def __init__(self, url):
        self.url = url.rstrip("/") + "/api/v1"
        self.http = requests.Session()
        self.http.trust_env = False  # a local gateway: never through a proxy from the environment
        self.tokens = {}

    def call(self, method, path, phone=None, expect=(200, 201, 204), **kwargs):
        headers = {"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {}
        if phone:
            headers["Authorization"] = f"Bearer {self.tokens[phone]}"
        response = self.http.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        if response.status_code not in expect:
            raise DemoError(f"{method} {path} -> {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def sign_in(self, phone, password=PASSWORD, nickname=None):
        answer = self.http.post(f"{self.url}/auth/login", json={"phone": phone, "password": password}, timeout=30)
        if answer.status_code == 401 and nickname:
            self.call("POST", "/auth/register", json={"phone": phone, "password": password, "nickname": nickname},
                      expect=(201,))
            answer = self.http.post(f"{self.url}/auth/login", json={"phone": phone, "password": password}, timeout=30)
        if answer.status_code != 200:
            raise DemoError(f"cannot sign in {phone}: {answer.status_code} {answer.text[:200]}")
        self.tokens[phone] = answer.json()["access_token"]
        return self.call("GET", "/me", phone)


def load(url, admin_phone, admin_password, say=print):
    api = Client(url)
    admin = api.sign_in(admin_phone, admin_password)
    me = {phone: api.sign_in(phone, nickname=nickname) for phone, (nickname, _) in ACCOUNTS.items()}
    uid = {phone: m["user_id"] for phone, m in me.items()}

    # -- merchants: apply, the admin approves -----------------------------------------------------------------
    shops = {}
    for phone, (name, description) in SHOPS.items():
        merchant = next(iter(me[phone]["merchants"]), None) or api.call(
            "POST", "/merchants", phone, json={"name": name, "description": description})
        if merchant["status"] == "pending":
            merchant = api.call("POST", f"/admin/merchants/{merchant['merchant_id']}/approve", admin_phone)
        shops[phone] = merchant["merchant_id"]
    say(f"demo: {len(shops)} approved merchants (reviewed by admin {admin['user_id']})")

    # -- products with pictures, SKUs, commission, group offers ---------------------------------------------
    products = {}
    for owner, title, category, description, image, skus, level1_bp, group in PRODUCTS:
        found = api.call("GET", "/products", params={"merchant_id": shops[owner], "limit": 100})["items"]
        product = next((p for p in found if p["title"] == title), None)
        if product is None:
            product = api.call("POST", "/products", owner, json={
                "merchant_id": shops[owner], "title": title, "category": category, "description": description,
                "images": [f"/media/demo-{image}.svg"], "commission": {"level1_bp": level1_bp, "level2_bp": 0},
                "skus": [{"attrs": a, "price_fen": p, "stock": s} for a, p, s in skus], "group_buy": group})
        products[image] = api.call("GET", f"/products/{product['product_id']}")
    say(f"demo: {len(products)} products")

    # -- friends --------------------------------------------------------------------------------------------
    pairs = [("13700000001", "13700000002"), ("13700000001", "13700000003"), ("13700000002", "13700000004"),
             ("13900000001", "13700000001")]
    for a, b in pairs:
        friends = {f["user_id"] for f in api.call("GET", "/friends", a, params={"limit": 50})["items"]}
        if uid[b] in friends:
            continue
        request = api.call("POST", "/friends/requests", a, json={"user_id": uid[b]}, expect=(201, 409))
        if request and request.get("status") == "pending":
            api.call("POST", f"/friends/requests/{request['request_id']}/accept", b)
    say(f"demo: {len(pairs)} friendships")

    # -- shares and moments with product cards ---------------------------------------------------------------
    def share(phone, image, channel="moments"):
        return api.call("POST", "/shares", phone, json={"product_id": products[image]["product_id"],
                                                        "channel": channel})["share_code"]

    moments = [("13700000001", "longjing", "今年的明前龙井到了，豆香特别足，朋友们一起拼团更划算！", "friends"),
               ("13700000003", "orange", "赣南脐橙真的甜，孩子一口气吃了三个🍊", "public"),
               ("13700000002", None, "周末去西湖边喝茶，天气真好。", "friends")]
    own = {phone: api.call("GET", f"/users/{uid[phone]}/moments", phone, params={"limit": 50})["items"]
           for phone in {m[0] for m in moments}}
    codes = {}
    for phone, image, text, visibility in moments:
        posted = next((m for m in own[phone] if m["text"] == text), None)
        if posted is not None:  # there already: its share link too
            if image:
                codes[(phone, image)] = posted["product"]["share_code"]
            continue
        if image:
            codes[(phone, image)] = share(phone, image)
        body = {"text": text, "visibility": visibility, "images": []}
        if image:
            body.update(product_id=products[image]["product_id"], share_code=codes[(phone, image)])
        api.call("POST", "/moments", phone, json=body)
    say(f"demo: {len(moments)} moments, shares {sorted(codes.values())}")

    # -- orders in several statuses, commissions --------------------------------------------------------------
    if api.call("GET", "/orders", "13700000002", params={"limit": 1})["items"]:
        say("demo: orders are there already")
        return summary(url, products, codes, say)
    xiaomei_share = codes[("13700000001", "longjing")]
    api.call("GET", f"/s/{xiaomei_share}", "13700000002")  # 阿强 opens 小美's link: she earns on what he buys

    def sku(image, index=0):
        return products[image]["skus"][index]["sku_id"]

    def order(phone, image, share_code=None, index=0, qty=1):
        body = {"items": [{"sku_id": sku(image, index), "qty": qty}], "address": ADDRESS}
        if share_code:
            body["share_code"] = share_code
        return api.call("POST", "/orders", phone, json=body)["order_id"]

    def pay(phone, order_id):
        return api.call("POST", f"/orders/{order_id}/pay", phone)

    tea_owner, fruit_owner = "13900000001", "13900000002"
    completed = order("13700000002", "longjing", xiaomei_share, index=1)  # paid, shipped, received: completed
    pay("13700000002", completed)
    api.call("POST", f"/orders/{completed}/ship", tea_owner, json={"carrier": "顺丰速运", "tracking_no": "SF1000000001"})
    api.call("POST", f"/orders/{completed}/confirm-receipt", "13700000002")
    shipped = order("13700000002", "longjing", xiaomei_share)  # paid and shipped
    pay("13700000002", shipped)
    api.call("POST", f"/orders/{shipped}/ship", tea_owner, json={"carrier": "中通快递", "tracking_no": "ZT2000000002"})
    pay("13700000003", order("13700000003", "baicha", share("13700000001", "baicha", "wechat")))  # paid (to ship)
    order("13700000004", "puer")  # waiting for payment
    cancelled = order("13700000004", "apple")
    api.call("POST", f"/orders/{cancelled}/cancel", "13700000004")
    refund = order("13700000003", "apple")  # shipped, then the buyer asks for a refund: the merchant decides
    pay("13700000003", refund)
    api.call("POST", f"/orders/{refund}/ship", fruit_owner, json={"carrier": "京东物流", "tracking_no": "JD3000000003"})
    api.call("POST", f"/orders/{refund}/refunds", "13700000003", json={"reason": "苹果有磕碰"})
    # group buys: 大伟 opens an orange group and 阿强 joins (formed); 小美 opens a Longjing group (waiting)
    group = api.call("POST", "/group-buys", "13700000004", json={"sku_id": sku("orange"), "qty": 1, "address": ADDRESS})
    pay("13700000004", group["order_id"])
    joined = api.call("POST", f"/group-buys/{group['group_id']}/join", "13700000002",
                      json={"sku_id": sku("orange"), "qty": 1, "address": ADDRESS})
    pay("13700000002", joined["order_id"])
    waiting = api.call("POST", "/group-buys", "13700000001", json={"sku_id": sku("longjing"), "qty": 1,
                                                                   "address": ADDRESS})
    pay("13700000001", waiting["order_id"])
    say("demo: orders completed, shipped, paid, pending payment, cancelled, refund requested; groups formed and open")
    return summary(url, products, codes, say)


def summary(url, products, codes, say):
    share = codes.get(("13700000001", "longjing"))
    say(f"demo: ready. Storefront {url}/  share link {url}/s/{share}  merchant console {url}/merchant/  "
        f"admin console {url}/admin/")
    return {"products": products, "shares": codes}


def wait_until_up(url, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{url}/health", timeout=3).json().get("status") == "ok":
                return
        except (requests.RequestException, ValueError):
            pass
        if time.monotonic() > deadline:
            raise DemoError(f"{url} is not healthy: start it with `make run`")
        time.sleep(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--images", action="store_true", help="only (re)write the demo pictures into web/public")
    args = parser.parse_args(argv)
    if args.images:
        write_images()
        return 0
    try:
        wait_until_up(args.url)
        load(args.url, os.environ.get("ADMIN_PHONE", "13800000000"), os.environ.get("ADMIN_PASSWORD", "admin-change-me"))
    except (DemoError, requests.RequestException) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
