"""The gateway's product views and the signed-out pages kept beside them (gateway.cache): a page goes with the view
it was made from and never outlives it, or the parts it shows."""
import time

from gateway.cache import ProductViews, TtlMap


def test_a_kept_page_is_answered_until_its_view_or_its_parts_expire():
    views = ProductViews(ttl=0.3)
    view = {"product_id": "prd_1", "merchant_id": "mch_1"}
    # given a view and the page made from it, whose open groups expire before the view
    views.put("prd_1", view)
    views.put_page("prd_1", view, {"page": 1}, until=time.monotonic() + 0.1)
    assert views.page("prd_1") == {"page": 1}
    # then the page goes when its parts expire, the view stays until its own expiry
    time.sleep(0.15)
    assert views.page("prd_1") is None and views.get("prd_1") is view
    # and a page with no earlier part expiry lives as long as its view, not longer
    views.put_page("prd_1", view, {"page": 2})
    time.sleep(0.2)
    assert views.page("prd_1") is None and views.get("prd_1") is None


def test_a_page_made_from_a_view_replaced_or_dropped_meanwhile_is_not_kept():
    views = ProductViews()
    old, new = {"product_id": "prd_1", "merchant_id": "mch_1"}, {"product_id": "prd_1", "merchant_id": "mch_1"}
    # given a worker that made a page from a view, while the product changed and another worker put a new view
    views.put("prd_1", old)
    views.put("prd_1", new)
    # when the first worker keeps its page
    views.put_page("prd_1", old, {"price": "old"})
    # then it is not answered (it shows the old view); the page of the current view is
    assert views.page("prd_1") is None
    views.put_page("prd_1", new, {"price": "new"})
    assert views.page("prd_1") == {"price": "new"}
    # and a dropped view (a catalog event) takes its page along; so does a new view put in its place
    views.drop("prd_1")
    views.put_page("prd_1", new, {"price": "new"})
    assert views.page("prd_1") is None
    views.put("prd_1", new)
    views.put_page("prd_1", new, {"price": "new"})
    views.put("prd_1", dict(new))
    assert views.page("prd_1") is None


def test_a_suspended_merchant_takes_its_products_pages_along():
    views = ProductViews()
    mine, other = {"product_id": "prd_1", "merchant_id": "mch_1"}, {"product_id": "prd_2", "merchant_id": "mch_2"}
    for product_id, view in (("prd_1", mine), ("prd_2", other)):
        views.put(product_id, view)
        views.put_page(product_id, view, {"of": product_id})
    views.drop_merchant("mch_1")
    assert views.page("prd_1") is None and views.page("prd_2") == {"of": "prd_2"}


def test_a_part_map_says_when_its_value_expires():
    parts = TtlMap(ttl=5)
    before = time.monotonic()
    parts.put("prd_1", [])
    assert parts.expires("prd_2") is None
    assert before + 5 <= parts.expires("prd_1") <= time.monotonic() + 5
