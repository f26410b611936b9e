"""The event contract other teams build on: every type documented, golden payloads still valid, AsyncAPI valid."""
import ast
import copy
import json
from pathlib import Path

import jsonschema
import pytest

from contracts import EVENTS, EnvelopeSchema, make_envelope, validate_data
from contracts.asyncapi import EXAMPLES, build_asyncapi

REPO = Path(__file__).resolve().parents[2]
ASYNCAPI_SCHEMA = REPO / ".venv" / "share" / "asyncapi" / "asyncapi-3.0.0.json"
GOLDEN = {path.stem: json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))}


def test_every_event_type_has_a_golden_payload_and_nothing_else_does():
    assert set(GOLDEN) == set(EVENTS)


@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_golden_payload_still_matches_its_schema(event_type):
    """A change that removes, renames or retypes a field, or adds a required one, breaks other teams: it fails here.
    Publish a new type (order.paid.v2) instead, as docs/architecture.md's versioning policy says."""
    golden = GOLDEN[event_type]
    assert EnvelopeSchema().validate(golden) == {}
    assert golden["type"] == event_type
    assert golden["dataschema"] == EVENTS[event_type].dataschema
    validate_data(event_type, golden["data"])


def test_the_golden_check_catches_a_breaking_change():
    broken = copy.deepcopy(GOLDEN["order.paid"]["data"])
    broken["paid_time"] = broken.pop("paid_at")  # a rename
    with pytest.raises(ValueError, match="paid_at"):
        validate_data("order.paid", broken)


def test_events_refuse_personal_data():
    data = dict(GOLDEN["user.joined"]["data"], phone="13912345678")
    with pytest.raises(ValueError, match="phone"):
        make_envelope("user.joined", data)


def emitted_event_types():
    """Event types the services' code emits with a literal type (store.emit(session, "x.y", ...))."""
    found = set()
    for path in (REPO / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "emit":
                for arg in node.args[:2]:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "." in arg.value:
                        found.add((arg.value, path.relative_to(REPO).as_posix()))
            if isinstance(node, ast.Dict) and node.values and all(
                    isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value in EVENTS
                    for v in node.values):
                found.update((v.value, path.relative_to(REPO).as_posix()) for v in node.values)
    return found


def test_every_event_the_services_emit_is_documented():
    emitted = emitted_event_types()
    assert emitted, "the scan found no emit calls: it is broken"
    undocumented = sorted((t, where) for t, where in emitted if t not in EVENTS)
    assert undocumented == []


def test_asyncapi_document_is_valid_asyncapi_3_and_lists_every_event():
    if not ASYNCAPI_SCHEMA.exists():
        pytest.skip("AsyncAPI JSON schema not installed (make install fetches @asyncapi/specs with npm)")
    doc = build_asyncapi()
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    assert [e.message for e in validator.iter_errors(doc)] == []
    documented = {c["address"]: c["bindings"]["amqp"]["exchange"]["name"] for c in doc["channels"].values()}
    assert documented == {t: spec.exchange for t, spec in EVENTS.items()}
    for message in doc["components"]["messages"].values():
        assert message["examples"][0]["payload"]["type"] == message["name"]
    # and the validator does reject a malformed document
    broken = copy.deepcopy(doc)
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording, invalid in 3
    assert list(validator.iter_errors(broken))
