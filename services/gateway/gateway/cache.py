"""The product read model: public product views kept in gateway memory, so a product page costs no RPC.

Filled on a miss from catalog.get_product, dropped when catalog events say a product changed (each gateway
replica has its own broadcast queue), and refreshed after TTL so stock figures stay close to live. The refresh is
stale-while-revalidate: the first request after the TTL starts it in the background and every request answers from
the view kept meanwhile (for at most STALE_FOR past the TTL), so no request waits on catalog for a product it has.
Waiting on it was the product page's p99: every view expired every 5 s under load, and the requests that found it
expired each asked catalog again (tens of ms on a busy machine) while the others were answered in 2-3 ms.

Beside each view, the signed-out product page made from it (the same for every signed-out viewer): the gateway's
edge answers it without starting a worker (ApiRoute's `anonymous_pages`), which saves about a third of such a
request's CPU. It goes with its view (a view replaced or dropped takes its page along) and never outlives the view
or the cached parts it shows (the open groups, PageParts), so it is never staler than they are."""
import time

from nameko.extensions import DependencyProvider, SharedExtension

TTL_SECONDS = 5.0
STALE_FOR = 30.0  # how long past its TTL a view is still answered while it is being refreshed
REFRESH_TIMEOUT = 10.0  # a refresh not ended by then (its answer lost) no longer stops another from starting
MAX_ENTRIES = 50_000


class ProductViews:
    def __init__(self, ttl=TTL_SECONDS, stale_for=STALE_FOR, refresh_timeout=REFRESH_TIMEOUT):
        self.ttl, self.stale_for, self.refresh_timeout = ttl, stale_for, refresh_timeout
        self.entries = {}  # product_id: (expires, view)
        self.pages = {}  # product_id: (expires, page), each made from the view held in entries
        self.refreshing = {}  # product_id: (token, started) of the refresh under way

    def get(self, product_id):
        """The view kept for the product, within its TTL, or None."""
        view, fresh = self.lookup(product_id)
        return view if fresh else None

    def lookup(self, product_id):
        """(view, fresh): the view kept and whether it is within its TTL. Past its TTL it is still given, not fresh,
        for STALE_FOR more: the caller answers with it and refreshes it (begin_refresh). (None, False) when there
        is none, or it is older than that."""
        entry = self.entries.get(product_id)
        if entry is None:
            return None, False
        now = time.monotonic()
        if entry[0] >= now:
            return entry[1], True
        return (entry[1], False) if entry[0] + self.stale_for >= now else (None, False)

    def begin_refresh(self, product_id):
        """A token for refreshing the product's view, or None when a refresh of it is under way (one at a time)."""
        under_way = self.refreshing.get(product_id)
        if under_way is not None and under_way[1] + self.refresh_timeout > time.monotonic():
            return None
        token = object()
        self.refreshing[product_id] = (token, time.monotonic())
        return token

    def end_refresh(self, product_id, token, view=None):
        """The refresh `token` ended, with the product's new `view` (kept) or without it (it failed: the view kept
        is answered until it is too stale, and the next request past the TTL tries again). A view dropped after the
        refresh began (an event said the product changed) is not brought back by it."""
        under_way = self.refreshing.get(product_id)
        if under_way is None or under_way[0] is not token:
            return
        del self.refreshing[product_id]
        if view is not None:
            self.put(product_id, view)

    def put(self, product_id, view):
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()
            self.pages.clear()
            self.refreshing.clear()
        self.entries[product_id] = (time.monotonic() + self.ttl, view)
        self.pages.pop(product_id, None)

    def page(self, product_id):
        """The anonymous page of the product, as put_page kept it, or None."""
        entry = self.pages.get(product_id)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put_page(self, product_id, view, page, until=None):
        """Keep the signed-out `page` made from `view`, if that view is still the one held (not replaced or
        dropped meanwhile by another worker or an event), until the view expires, or `until` (time.monotonic())
        if earlier: when the parts of the page it shows expire."""
        entry = self.entries.get(product_id)
        if entry is not None and entry[1] is view:
            self.pages[product_id] = (entry[0] if until is None else min(entry[0], until), page)

    def drop(self, product_id):
        self.entries.pop(product_id, None)
        self.pages.pop(product_id, None)
        self.refreshing.pop(product_id, None)  # a refresh under way brings nothing back

    def drop_page(self, product_id):
        """Forget the signed-out page only (a part it shows changed; the view itself did not)."""
        self.pages.pop(product_id, None)

    def drop_merchant(self, merchant_id):
        for product_id, (_, view) in list(self.entries.items()):
            if view.get("merchant_id") == merchant_id:
                self.drop(product_id)


class ProcessProductViews(SharedExtension):
    """The process's one ProductViews, shared by the routes (through ProductCache) and by the edge, which answers
    an anonymous product page from it without a worker."""

    def setup(self):
        self.views = ProductViews()

    def page(self, product_id):
        return self.views.page(product_id)


class ProductCache(DependencyProvider):
    shared = ProcessProductViews()

    def get_dependency(self, worker_ctx):
        return self.shared.views


class TtlMap:
    """A small time-bounded map for page parts that may lag a little (open groups, social proof)."""

    def __init__(self, ttl, max_entries=MAX_ENTRIES):
        self.ttl, self.max_entries, self.entries = ttl, max_entries, {}

    def get(self, key):
        entry = self.entries.get(key)
        return entry[1] if entry is not None and entry[0] >= time.monotonic() else None

    def expires(self, key):
        """When the value kept for `key` expires (time.monotonic()), or None."""
        entry = self.entries.get(key)
        return entry[0] if entry is not None else None

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
