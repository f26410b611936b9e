"""Shared input rules: ids are whole values, money is a strict integer, maps cannot smuggle operators."""
import pytest

from kit.errors import InvalidInput
from kit.validation import Fen, Id, SafeDict, StrictSchema, load


class Payload(StrictSchema):
    order_id = Id(required=True)
    amount_fen = Fen()
    attrs = SafeDict()


@pytest.mark.parametrize("bad", ["usr_1\n", "usr 1", "", "x" * 65, "usr_1;drop", {"$ne": None}])
def test_an_id_is_a_whole_plain_token(bad):
    with pytest.raises(InvalidInput) as err:
        load(Payload, {"order_id": bad})
    assert "order_id" in err.value.fields


@pytest.mark.parametrize("bad", [9.5, "100", True, -1])
def test_money_is_a_non_negative_whole_number_of_fen(bad):
    with pytest.raises(InvalidInput) as err:
        load(Payload, {"order_id": "ord_1", "amount_fen": bad})
    assert "amount_fen" in err.value.fields


@pytest.mark.parametrize("key", ["$where", "a.b", ""])
def test_map_keys_cannot_be_operators_or_paths(key):
    with pytest.raises(InvalidInput):
        load(Payload, {"order_id": "ord_1", "attrs": {key: "x"}})


def test_good_input_passes_unchanged_and_unknown_fields_are_named():
    assert load(Payload, {"order_id": "ord_1", "amount_fen": 100, "attrs": {"size": "M"}}) == \
        {"order_id": "ord_1", "amount_fen": 100, "attrs": {"size": "M"}}
    with pytest.raises(InvalidInput) as err:
        load(Payload, {"order_id": "ord_1", "status": "paid"})
    assert err.value.fields == {"status": ["Unknown field."]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e300, -1.0])
def test_money_refuses_what_is_no_whole_number_of_fen_in_range(bad):
    with pytest.raises(InvalidInput) as err:
        load(Payload, {"order_id": "ord_1", "amount_fen": bad})
    assert "amount_fen" in err.value.fields


def test_a_whole_json_number_written_with_a_fraction_is_the_integer_it_equals():
    # JSON (and JSON Schema's `integer`) make no difference between 100 and 100.0: the API document calls both
    # valid, so both load, as the int 100 (never a float in the database)
    loaded = load(Payload, {"order_id": "ord_1", "amount_fen": 100.0})
    assert loaded["amount_fen"] == 100 and type(loaded["amount_fen"]) is int
