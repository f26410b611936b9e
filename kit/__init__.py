"""Quanzi service kit: what every service needs and nothing else.

config (settings from the environment), mongo (a store per service), outbox (state change + event in one
transaction, relayed with publisher confirms), events (reliable, idempotent consumers with retry and a
dead-letter queue), metrics and health, logs (structured, redacted), validation, errors.
"""
