"""kit.paging: the one cursor (every list's, social-feed's included) and the limit + 1 page."""
from datetime import datetime, timedelta, timezone

import pytest

from kit import paging
from kit.errors import InvalidInput


def test_cursor_round_trip_and_refusal():
    at = datetime(2026, 11, 22, 8, 0, 0, 123000, tzinfo=timezone.utc)
    assert paging.decode(paging.encode(at, "mom_ab_12")) == (at, "mom_ab_12")
    assert paging.decode(None) is None
    for bad in ("", "abc", "12", "x_mom", "1_$gt", "1_a:b", "-5_ord_1", "1_" + "a" * 65, "1" * 15 + "_a",
                "1_ord\n"):
        with pytest.raises(InvalidInput) as refused:
            paging.decode(bad)
        assert "cursor" in refused.value.fields


def test_every_cursor_the_pattern_allows_decodes():
    assert paging.decode("9" * 14 + "_a")[0].year == 5138  # the largest: no "year out of range" anywhere
    assert paging.decode("0_a") == (datetime(1970, 1, 1, tzinfo=timezone.utc), "a")


def test_after_takes_a_cursor_or_a_position_and_any_id_field():
    at = datetime(2026, 11, 22, 8, 0, 0, 123000, tzinfo=timezone.utc)
    cursor = paging.encode(at, "usr_1")
    expected = {"$or": [{"since": {"$lt": at}}, {"since": at, "friend": {"$lt": "usr_1"}}]}
    assert paging.after(cursor, "since", "friend") == expected
    assert paging.after((at, "usr_1"), "since", "friend") == expected
    assert paging.after(None, "since") == paging.after("", "since") == {}


def test_a_page_is_limit_items_and_a_cursor_only_when_more_follow():
    at = datetime(2026, 11, 22, tzinfo=timezone.utc)
    docs = [{"friend": f"usr_{9 - i}", "since": at - timedelta(seconds=i)} for i in range(4)]
    items, next_cursor = paging.page(docs, 3, "since", "friend")
    assert items == docs[:3] and paging.decode(next_cursor) == (docs[2]["since"], "usr_7")
    assert paging.page(docs[:3], 3, "since", "friend") == (docs[:3], None)
