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
