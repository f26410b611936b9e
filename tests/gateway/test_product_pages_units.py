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


def test_a_view_past_its_ttl_is_answered_stale_while_one_refresh_runs_then_replaced():
    views = ProductViews(ttl=0.1, stale_for=0.3)
    old, new = {"product_id": "prd_1", "v": 1}, {"product_id": "prd_1", "v": 2}
    # given a view kept, past its TTL
    views.put("prd_1", old)
    assert views.lookup("prd_1") == (old, True)
    time.sleep(0.15)
    # then it is still answered, not fresh (get, for callers that want fresh only, has none)
    assert views.lookup("prd_1") == (old, False) and views.get("prd_1") is None
    # and one refresh at a time may run for it
    token = views.begin_refresh("prd_1")
    assert token is not None and views.begin_refresh("prd_1") is None
    # when it ends with the new view, that is kept, fresh, and another refresh may start later
    views.end_refresh("prd_1", token, new)
    assert views.lookup("prd_1") == (new, True)
    assert views.begin_refresh("prd_1") is not None


def test_a_view_too_stale_is_not_answered_and_a_failed_refresh_keeps_the_stale_one():
    views = ProductViews(ttl=0.1, stale_for=0.2)
    view = {"product_id": "prd_1"}
    views.put("prd_1", view)
    time.sleep(0.15)
    # a refresh that failed (catalog away) ends without a view: the stale one stays, another refresh may start
    token = views.begin_refresh("prd_1")
    views.end_refresh("prd_1", token)
    assert views.lookup("prd_1") == (view, False)
    assert views.begin_refresh("prd_1") is not None
    # past STALE_FOR it is no longer answered: the caller asks catalog and waits
    time.sleep(0.2)
    assert views.lookup("prd_1") == (None, False)


def test_a_refresh_that_began_before_the_product_changed_does_not_bring_back_the_old_view():
    views = ProductViews(ttl=0.05)
    views.put("prd_1", {"product_id": "prd_1", "price": "old"})
    time.sleep(0.06)
    token = views.begin_refresh("prd_1")
    # when a catalog event drops the view while the refresh is under way (its answer may show the old product)
    views.drop("prd_1")
    views.end_refresh("prd_1", token, {"product_id": "prd_1", "price": "old"})
    # then the refresh's answer is not kept: the next request asks catalog
    assert views.lookup("prd_1") == (None, False)


def test_a_refresh_whose_answer_never_came_stops_blocking_the_next_one():
    views = ProductViews(ttl=0.05, refresh_timeout=0.1)
    views.put("prd_1", {"product_id": "prd_1"})
    time.sleep(0.06)
    assert views.begin_refresh("prd_1") is not None  # ... and its answer is lost
    assert views.begin_refresh("prd_1") is None
    time.sleep(0.11)
    assert views.begin_refresh("prd_1") is not None
