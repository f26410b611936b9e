"""Quanzi's public event contract: the CloudEvents envelope and one versioned schema per event type.

Versioning policy: a compatible change (a new optional field) keeps the type and its schema_version; a
breaking change publishes a new type (e.g. `order.paid.v2`) beside the old one for a deprecation period.
"""
from contracts.envelope import EnvelopeSchema, make_envelope, validate_data
from contracts.events import EVENTS, EXCHANGES, EventSpec, spec_for

__all__ = ["EnvelopeSchema", "make_envelope", "validate_data", "EVENTS", "EXCHANGES", "EventSpec", "spec_for"]
