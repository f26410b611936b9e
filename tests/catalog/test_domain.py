"""Catalog rules, without I/O."""
from datetime import datetime, timezone

import pytest

from catalog import domain
from kit.errors import Conflict, InvalidInput


@pytest.mark.parametrize("current, action, expected", [
    ("pending", "approve", "approved"),
    ("pending", "reject", "rejected"),
    ("approved", "suspend", "suspended"),
    ("suspended", "approve", "approved"),
])
def test_merchant_review_moves_through_allowed_states(current, action, expected):
    assert domain.merchant_transition(current, action) == expected


@pytest.mark.parametrize("current, action", [
    ("rejected", "approve"), ("approved", "approve"), ("approved", "reject"), ("pending", "suspend"),
    ("suspended", "suspend"), ("rejected", "suspend"),
])
def test_merchant_review_refuses_illegal_moves(current, action):
    with pytest.raises(Conflict):
        domain.merchant_transition(current, action)


def test_commission_within_cap_passes_and_above_cap_names_the_field():
    domain.check_commission({"level1_bp": 2000, "level2_bp": 1000}, 3000)
    with pytest.raises(InvalidInput) as err:
        domain.check_commission({"level1_bp": 2500, "level2_bp": 501}, 3000)
    assert "commission" in err.value.fields


def test_group_price_must_be_below_every_sku_price():
    domain.check_group_buy({"price_fen": 899, "size": 2, "window_seconds": 60}, [900, 1200])
    domain.check_group_buy(None, [900])
    with pytest.raises(InvalidInput) as err:
        domain.check_group_buy({"price_fen": 900, "size": 2, "window_seconds": 60}, [900, 1200])
    assert err.value.fields["group_buy"]["price_fen"]


def test_unit_price_uses_group_price_only_for_group_orders():
    product = {"group_buy": {"price_fen": 500}}
    assert domain.unit_price(product, {"price_fen": 800}, group=False) == 800
    assert domain.unit_price(product, {"price_fen": 800}, group=True) == 500
    with pytest.raises(Conflict):
        domain.unit_price({"group_buy": None}, {"price_fen": 800}, group=True)


def test_chinese_titles_are_found_by_any_contained_phrase():
    terms = set(domain.search_terms("西湖龙井 green Tea", "明前特级"))
    for query in ("龙井", "西湖龙井", "龙", "tea", "GREEN tea", "特级"):
        assert set(domain.query_terms(query)) <= terms, query
    assert not set(domain.query_terms("乌龙")) <= terms
    assert not set(domain.query_terms("coffee")) <= terms


def test_query_terms_ignore_punctuation_and_operators():
    assert domain.query_terms('{"$gt": ""}') == ["gt"]
    assert domain.query_terms("") == []


def test_an_average_rating_is_rounded_half_up_from_integers():
    # the mean of the reviews themselves, from their integer sum and count (never floats added up)
    assert domain.average_of(0, 0) is None
    assert domain.average_of(4, 1) == 4.0
    assert domain.average_of(10, 3) == 3.33  # 3.333…
    assert domain.average_of(11, 3) == 3.67  # 3.666…
    assert domain.average_of(33, 8) == 4.13  # 4.125 exactly: half up (a float round() would give 4.12)
    assert domain.average_of(5 * 10**9, 10**9) == 5.0


def test_a_merchants_public_profile_shows_no_owner_and_rates_over_every_review():
    merchant = {"_id": "mch_1", "owner_id": "usr_o", "name": "Tea house", "description": "leaves",
                "status": "approved", "reason": None, "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
                "approved_at": datetime(2026, 1, 2, tzinfo=timezone.utc)}
    profile = domain.merchant_profile(merchant, 10, 3)
    assert profile == {"merchant_id": "mch_1", "name": "Tea house", "description": "leaves", "status": "approved",
                       "since": "2026-01-02T00:00:00+00:00", "rating": {"average": 3.33, "count": 3}}
