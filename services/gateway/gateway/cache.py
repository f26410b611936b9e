"""The product read model: public product views kept in gateway memory, so a product page costs no RPC.

Filled on a miss from catalog.get_product, dropped when catalog events say a product changed (each gateway
replica has its own broadcast queue), and refreshed after TTL so stock figures stay close to live."""
import time

from nameko.extensions import DependencyProvider

TTL_SECONDS = 5.0
MAX_ENTRIES = 50_000


class ProductViews:
    def __init__(self, ttl=TTL_SECONDS):
        self.ttl = ttl
        self.entries = {}

    def get(self, product_id):
        entry = self.entries.get(product_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, product_id, view):
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()
        self.entries[product_id] = (time.monotonic() + self.ttl, view)

    def drop(self, product_id):
        self.entries.pop(product_id, None)

    def drop_merchant(self, merchant_id):
        for product_id, (_, view) in list(self.entries.items()):
            if view.get("merchant_id") == merchant_id:
                self.entries.pop(product_id, None)


class ProductCache(DependencyProvider):
    def setup(self):
        self.views = ProductViews()

    def get_dependency(self, worker_ctx):
        return self.views


class TtlMap:
    """A small time-bounded map for page parts that may lag a little (open groups, social proof)."""

    def __init__(self, ttl, max_entries=MAX_ENTRIES):
        self.ttl, self.max_entries, self.entries = ttl, max_entries, {}

    def get(self, key):
        entry = self.entries.get(key)
        return entry[1] if entry is not None and entry[0] >= time.monotonic() else None

    def put(self, key, value):
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key):
        self.entries.pop(key, None)


class PageParts(DependencyProvider):
    """Caches for the aggregated product page: open groups (2 s: seats fill fast), a viewer's social proof
    (30 s) and the commission preview (until the product changes)."""

    def setup(self):
        self.parts = {"groups": TtlMap(2), "social": TtlMap(30), "commission": TtlMap(300)}

    def get_dependency(self, worker_ctx):
        return self.parts
