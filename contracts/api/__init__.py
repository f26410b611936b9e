"""The RPC payloads that cross the gateway boundary: one module per service (`contracts.api.orders`, ...).

The service validates its RPC payloads with these schemas and the gateway uses the same classes for the HTTP
bodies and queries (and so for the OpenAPI document), so the edge and the service apply one rule. A change here
changes the public HTTP API: treat it like a change of an event contract. Schemas a service uses only
internally (service-to-service payloads, the viewer passed along) stay in the service's own `schemas.py`.
"""
