"""Catalog rules: new merchants and products, merchant review, product offers, search terms. Pure functions; no
I/O."""
import re

from kit.errors import Conflict, RuleRefused
from kit.validation import new_id

MERCHANT_TRANSITIONS = {
    # action: (allowed from, to)
    "approve": ({"pending", "suspended"}, "approved"),  # approving a suspended merchant reinstates it
    "reject": ({"pending"}, "rejected"),
    "suspend": ({"approved"}, "suspended"),
}

MERCHANT_EVENTS = {"approve": "merchant.approved", "reject": "merchant.rejected", "suspend": "merchant.suspended"}


def new_merchant(owner_id, application, now):
    """A merchant as applied for: pending until an admin reviews it."""
    return {"_id": new_id("mch"), "owner_id": owner_id, "name": application["name"],
            "description": application["description"], "status": "pending", "reason": None,
            "created_at": now, "updated_at": now}


def merchant_transition(current, action):
    allowed, target = MERCHANT_TRANSITIONS[action]
    if current not in allowed:
        raise Conflict(f"a {current} merchant cannot be {target}")
    return target


def check_commission(rates, max_total_bp):
    """C6: level1 + level2 may not exceed the platform cap (a compliance rule on valid rates: 422)."""
    total = rates["level1_bp"] + rates["level2_bp"]
    if total > max_total_bp:
        raise RuleRefused("commission above the platform cap", {
            "commission": [f"level1_bp + level2_bp = {total} exceeds the cap of {max_total_bp} basis points"]})


def check_group_buy(offer, sku_prices):
    """A group price is a real discount: below every SKU's own price (a rule across valid fields: 422)."""
    if offer is None:
        return
    cheapest = min(sku_prices)
    if offer["price_fen"] >= cheapest:
        raise RuleRefused("group price must be a discount", {
            "group_buy": {"price_fen": [f"must be below the lowest SKU price ({cheapest} fen)"]}})


def new_product(owner_id, merchant, data, now):
    """A published product and its SKUs from a checked ProductInput: (product, skus)."""
    product_id = new_id("prd")
    skus = [{"_id": new_id("sku"), "product_id": product_id, "merchant_id": merchant["_id"],
             "attrs": s["attrs"], "price_fen": s["price_fen"], "stock": s["stock"]} for s in data["skus"]]
    product = {
        "_id": product_id, "merchant_id": merchant["_id"], "owner_id": owner_id, "title": data["title"],
        "description": data["description"], "category": data["category"], "images": data["images"],
        "commission": data["commission"], "group_buy": data["group_buy"],
        "min_price_fen": min(s["price_fen"] for s in skus), "status": "published", "visible": True,
        "terms": search_terms(data["title"], data["description"], data["category"]),
        "rating_sum": 0, "rating_count": 0, "created_at": now, "updated_at": now,
    }
    return product, skus


# Stock lent to the orders service in lots (its hot SKUs are then sold without asking the catalog per order,
# as flash-sale systems split a hot item's stock into buckets). A lot is lent only while this many units stay
# here: a SKU's last units are always sold order by order, so "sold out" and `stock.depleted` stay exact.
LOAN_FLOOR = 1000


def lendable(stock, qty):
    """How much of `qty` may be lent from `stock`: all of it while LOAN_FLOOR units stay, else nothing."""
    return qty if stock - qty >= LOAN_FLOOR else 0


def unit_price(product, sku, group):
    if not group:
        return sku["price_fen"]
    if not product.get("group_buy"):
        raise Conflict("this product has no group-buy offer")
    return product["group_buy"]["price_fen"]


_WORD = re.compile(r"[a-z0-9]+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")


def search_terms(*texts):
    """Index terms: lower-case latin words and, for Chinese runs (no spaces between words), every single
    character and every pair of neighbours, so a query of any length finds titles that contain it."""
    terms = set()
    for text in texts:
        text = (text or "").lower()
        terms.update(_WORD.findall(text))
        for run in _CJK.findall(text):
            terms.update(run)
            terms.update(run[i:i + 2] for i in range(len(run) - 1))
    return sorted(terms)


def query_terms(query):
    """The terms a document must all carry to match `query` (pairs for Chinese, words for latin)."""
    query = (query or "").lower()
    terms = set(_WORD.findall(query))
    for run in _CJK.findall(query):
        terms.update([run] if len(run) == 1 else (run[i:i + 2] for i in range(len(run) - 1)))
    return sorted(terms)


def merchant_view(merchant):
    return {"merchant_id": merchant["_id"], "owner_id": merchant["owner_id"], "name": merchant["name"],
            "description": merchant["description"], "status": merchant["status"], "reason": merchant.get("reason"),
            "created_at": merchant["created_at"].isoformat()}


def average_of(rating_sum, count):
    """The average of `count` integer ratings summing to `rating_sum`, rounded half up to two decimals, computed
    in integers (hundredths = round-half-up(100 × sum / count)); the float is only its JSON spelling. None when
    nothing was rated."""
    if not count:
        return None
    hundredths = (200 * rating_sum + count) // (2 * count)
    return hundredths / 100


def rating_of(product):
    count = product.get("rating_count", 0)
    return {"average": average_of(product.get("rating_sum", 0), count), "count": count}


def merchant_profile(merchant, rating_sum, rating_count):
    """The public face of an approved merchant: no owner, no review notes. Its rating is over every review of
    every one of its products (each review weighs the same; not an average of product averages)."""
    return {"merchant_id": merchant["_id"], "name": merchant["name"], "description": merchant["description"],
            "status": merchant["status"], "since": (merchant.get("approved_at") or merchant["created_at"]).isoformat(),
            "rating": {"average": average_of(rating_sum, rating_count), "count": rating_count}}


def product_summary(product):
    return {"product_id": product["_id"], "merchant_id": product["merchant_id"], "title": product["title"],
            "category": product["category"], "image": (product.get("images") or [None])[0],
            "min_price_fen": product["min_price_fen"], "group_buy": product.get("group_buy"),
            "rating": rating_of(product)}


def product_view(product, skus):
    return {
        "product_id": product["_id"], "merchant_id": product["merchant_id"], "title": product["title"],
        "description": product["description"], "category": product["category"], "images": product["images"],
        "skus": [{"sku_id": s["_id"], "attrs": s["attrs"], "price_fen": s["price_fen"], "stock": s["stock"]}
                 for s in skus],
        "min_price_fen": product["min_price_fen"], "commission": product["commission"],
        "group_buy": product.get("group_buy"), "status": "published" if product.get("visible") else "hidden",
        "rating": rating_of(product), "created_at": product["created_at"].isoformat(),
    }


def review_view(review):
    return {"review_id": review["_id"], "product_id": review["product_id"], "order_id": review["order_id"],
            "rating": review["rating"], "text": review["text"], "created_at": review["created_at"].isoformat(),
            "reviewer": {"nickname": review.get("nickname")}, "reply": reply_view(review.get("reply"))}


def public_review(review):
    """A review as anyone reads it on the product: no order, no buyer id."""
    return {"review_id": review["_id"], "rating": review["rating"], "text": review["text"],
            "created_at": review["created_at"].isoformat(), "reviewer": {"nickname": review.get("nickname")},
            "reply": reply_view(review.get("reply"))}


def reply_view(reply):
    return None if reply is None else {"text": reply["text"], "created_at": reply["created_at"].isoformat()}
