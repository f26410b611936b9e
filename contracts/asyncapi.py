"""The AsyncAPI 3 document of Quanzi's events, generated from contracts/events.py (never written by hand).

One channel per event type (its address is the routing key on the service's topic exchange), one `send`
operation per channel (the owning service publishes), and one message whose payload is the CloudEvents envelope
with that type's `data` schema. Examples come from contracts/examples/<type>.json, the golden payloads the
compatibility test holds every schema change against."""
import json
from pathlib import Path

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from contracts.envelope import EnvelopeSchema
from contracts.events import EVENTS

EXAMPLES = Path(__file__).parent / "examples"

VERSIONING = (
    "Versioning: each event type has a schema_version (envelope `schemaversion`, and `dataschema` "
    "`urn:quanzi:events:<type>:v<n>`). A compatible change (a new optional field) keeps the type and version; "
    "consumers must ignore fields they do not know. A breaking change (removing, renaming or retyping a field, "
    "a new required field) publishes a new type `<type>.v<n+1>` beside the old one, both for a deprecation "
    "period of at least 90 days announced in this document. Delivery is at least once: dedupe on `id`.")


def json_schemas():
    """{schema name: JSON Schema} for the envelope and every data schema (AsyncAPI Schema is JSON Schema)."""
    spec = APISpec("events", "1", "3.1.0", plugins=[MarshmallowPlugin()])
    for spec_ in {s.schema for s in EVENTS.values()}:
        spec.components.schema(spec_.__name__, schema=spec_)
    spec.components.schema("Envelope", schema=EnvelopeSchema)
    schemas = spec.to_dict()["components"]["schemas"]
    return json.loads(json.dumps(schemas).replace("#/components/schemas/", "#/components/schemas/"))


def example_for(event_type):
    path = EXAMPLES / f"{event_type}.json"
    return json.loads(path.read_text()) if path.exists() else None


def build_asyncapi(version="1.0.0"):
    schemas = json_schemas()
    channels, operations, messages = {}, {}, {}
    for event_type, spec in sorted(EVENTS.items()):
        key = event_type.replace(".", "_")
        envelope = json.loads(json.dumps(schemas["Envelope"]))
        envelope["properties"]["type"] = {"type": "string", "const": event_type}
        envelope["properties"]["data"] = {"$ref": f"#/components/schemas/{spec.schema.__name__}"}
        message = {
            "name": event_type, "title": event_type, "summary": spec.summary, "contentType": "application/json",
            "payload": envelope,
            "bindings": {"amqp": {"contentEncoding": "utf-8", "messageType": event_type, "bindingVersion": "0.3.0"}},
        }
        example = example_for(event_type)
        if example is not None:
            message["examples"] = [{"name": "golden", "payload": example}]
        messages[key] = message
        channels[key] = {
            "address": event_type,
            "description": f"Routing key `{event_type}` on the topic exchange `{spec.exchange}`.",
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {"amqp": {"is": "routingKey", "bindingVersion": "0.3.0", "exchange": {
                "name": spec.exchange, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}}},
        }
        operations[f"publish_{key}"] = {
            "action": "send", "summary": f"{spec.source_service} publishes {event_type}",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Quanzi events", "version": version,
                 "description": "Events other teams subscribe to. Every message is a CloudEvents 1.0 envelope "
                                "(structured mode, JSON) carrying ids and fen amounts, never personal data. "
                                + VERSIONING},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:5682", "protocol": "amqp", "protocolVersion": "0-9-1",
                              "description": "the broker `make run` starts (its AMQP_URI is printed)"}},
        "channels": channels, "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
