"""Scenario steps of the order tests: a shop with a product, placing and paying orders, the provider's callback."""
import json
import uuid

from contracts.payment import SIGNATURE_HEADER, sign
from tools.flows import ADDRESS, approved_merchant, expect, mint_buyers, product_payload  # noqa: F401


def open_shop(api, price_fen=5000, stock=20, group_buy=None, skus=None, owner=None):
    """An approved merchant with one published product: (owner, merchant, product, first sku id)."""
    owner, merchant = approved_merchant(api, owner)
    product = expect(api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], title=f"Longjing {uuid.uuid4().hex[:6]}", price_fen=price_fen, stock=stock,
        group_buy=group_buy, skus=skus)), 201)
    return owner, merchant, product, product["skus"][0]["sku_id"]


def order_body(sku_id, qty=1, share_code=None):
    body = {"items": [{"sku_id": sku_id, "qty": qty}], "address": ADDRESS}
    if share_code:
        body["share_code"] = share_code
    return body


def place(api, token, sku_id, qty=1, key=None, status=201):
    headers = {"Idempotency-Key": key} if key else None
    return expect(api.post("/orders", json=order_body(sku_id, qty), token=token, headers=headers), status)


def pay(api, token, order_id):
    return expect(api.post(f"/orders/{order_id}/pay", token=token), 200)


def ship(api, token, order_id, status=200):
    return expect(api.post(f"/orders/{order_id}/ship", json={"carrier": "SF Express", "tracking_no": "SF1234567"},
                           token=token), status)


def stock_of(rpc, product_id):
    return rpc.catalog.get_product(product_id)["skus"][0]["stock"]


def notification(order, trade_no=None, amount_fen=None):
    """The body a payment provider would post for `order` (a view with order_id and total_fen)."""
    return {"trade_no": trade_no or f"test{uuid.uuid4().hex[:16]}", "order_id": order["order_id"],
            "amount_fen": order["total_fen"] if amount_fen is None else amount_fen, "status": "success",
            "paid_at": "2026-11-22T08:00:00+00:00"}


def notify(api, secret, body, signature=None, raw=None):
    """Post a notification as the provider does: raw JSON bytes, HMAC-SHA256 of exactly those bytes."""
    raw = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    signature = sign(raw, secret) if signature is None else signature
    if signature:
        headers[SIGNATURE_HEADER] = signature
    return api.session.post(api.base_url + "/payments/notify", data=raw, headers=headers, timeout=10)


def distinct(messages):
    """Events as a subscriber applies them: once per envelope id. Delivery is at-least-once (a relay that dies
    between publishing and marking an event sent publishes it again after a restart, under the same id)."""
    seen = set()
    return [m for m in messages if not (m["id"] in seen or seen.add(m["id"]))]


def events_of(listener, order_id=None, group_id=None):
    """(type, envelope) of the distinct events received so far for one order or group."""
    return [(m["type"], m) for m in distinct(listener.messages)
            if (order_id and m["data"].get("order_id") == order_id)
            or (group_id and m["data"].get("group_id") == group_id and m["type"].startswith("groupbuy."))]
