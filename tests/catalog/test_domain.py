"""Catalog rules, without I/O."""
import pytest

from catalog import domain
from kit.errors import Conflict, RuleRefused


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
    with pytest.raises(RuleRefused) as err:
        domain.check_commission({"level1_bp": 2500, "level2_bp": 501}, 3000)
    assert "commission" in err.value.fields


def test_group_price_must_be_below_every_sku_price():
    domain.check_group_buy({"price_fen": 899, "size": 2, "window_seconds": 60}, [900, 1200])
    domain.check_group_buy(None, [900])
    with pytest.raises(RuleRefused) as err:
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
