"""The scenario steps live in tools/flows.py (the tools use them too)."""
from tools.flows import approved_merchant, expect, product_payload, published_product  # noqa: F401
