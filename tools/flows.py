"""Scenario building blocks shared by the HTTP tests and the tools: the steps a real user or admin takes through the
gateway."""
from kit.validation import new_id

ADDRESS = {"recipient": "林美", "phone": "13912345678", "region": "浙江省 杭州市 西湖区", "detail": "龙井路 1 号"}
SOCIAL_DB = "quanzi_social_feed"


def expect(response, status):
    assert response.status_code == status, f"{response.request.method} {response.request.url} -> " \
                                           f"{response.status_code} {response.text[:500]}"
    return response.json() if response.content else None


def approved_merchant(api, owner=None, name="Test Shop"):
    """A registered user who owns an approved merchant: returns (owner, merchant)."""
    owner = owner or api.register_user(nickname="merchant")
    merchant = expect(api.post("/merchants", json={"name": name}, token=owner["token"]), 201)
    merchant = expect(api.post(f"/admin/merchants/{merchant['merchant_id']}/approve", token=api.admin_token()), 200)
    return owner, merchant


def product_payload(merchant_id, title="Longjing green tea 西湖龙井", price_fen=9900, stock=100, category="tea",
                    commission=None, group_buy=None, skus=None):
    return {"merchant_id": merchant_id, "title": title, "category": category, "description": "spring harvest",
            "images": ["https://img.example.com/tea.jpg"],
            "skus": skus or [{"attrs": {"size": "250g"}, "price_fen": price_fen, "stock": stock}],
            "commission": commission or {"level1_bp": 1000, "level2_bp": 500}, "group_buy": group_buy}


def published_product(api, owner=None, **product):
    """An approved merchant with one published product: returns (owner, merchant, product)."""
    owner, merchant = approved_merchant(api, owner)
    created = expect(api.post("/products", json=product_payload(merchant["merchant_id"], **product),
                              token=owner["token"]), 201)
    return owner, merchant, created


def mint_buyers(stack, count):
    """`count` shoppers with tokens signed by the gateway's key, as /auth/login issues them. Used where a test
    needs hundreds of buyers: registering each would spend ~0.1 s of scrypt CPU per user on this machine."""
    from gateway.auth import issue_token  # the gateway's own signing (services/gateway on the path)
    ids = [new_id("usr") for _ in range(count)]
    return [{"user_id": i, "token": issue_token(stack.env["JWT_SECRET"], i, ["shopper"])} for i in ids]


def befriend(api, a, b):
    """a asks, b accepts."""
    request = expect(api.post("/friends/requests", json={"user_id": b["user_id"]}, token=a["token"]), 201)
    expect(api.post(f"/friends/requests/{request['request_id']}/accept", token=b["token"]), 200)


def post(api, user, text="新茶到了 new tea", **fields):
    return expect(api.post("/moments", json={"text": text, **fields}, token=user["token"]), 201)["moment_id"]
