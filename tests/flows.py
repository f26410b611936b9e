"""Scenario building blocks shared by the HTTP tests: the steps a real user or admin takes through the gateway."""


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
