"""Stock on loan: a hot SKU's orders placed without a call to the catalog each.

A SKU this process sees ordered often (domain.HotSkus) borrows a lot of its stock from the catalog
(`catalog.lend_stock`, which keeps the SKU's last units, catalog.domain.LOAN_FLOOR); its orders are then placed in
one transaction here (OrdersStore.place_from_loans: the loan's units, the orders, their `order.created`), one hop
and one durable write per batch instead of an intent, a catalog call and a confirmation. The loan keeps the SKU's
line as the catalog priced it with its last lot and is used while that price is fresh (domain.LOAN_PRICED_FOR),
so a price change or a product taken off sale reaches these orders within seconds.

Each step is idempotent by its loan id, and each is recorded before it is asked: a lot is `asked` (loan_ops) before
the catalog lends it, credited to the loan once with the catalog's answer; unsold units leave the loan in one
transaction with the record of their return, then go back to the catalog once. A crash between the steps leaves
an `asked` record that the sweep finishes (domain.LOAN_SETTLE_AFTER). A cancelled or refunded order sold from a
loan gives its units back to the loan (its consumer's transaction), and idle units go back to the catalog
(domain.LOAN_IDLE). So the catalog's stock, the loans and the orders always add up."""
import logging
import time
import weakref

import eventlet
import eventlet.semaphore
from prometheus_client import Counter

from kit.errors import QuanziError
from kit.rpc import call as rpc_call
from kit.validation import new_id, utcnow
from orders import domain, faults

log = logging.getLogger(__name__)

RPC_TIMEOUT = 10.0
LOAN_UNITS = Counter("quanzi_stock_loan_units_total", "Units of stock borrowed from the catalog and given back",
                     ["step"])
ORDERS_FROM_LOANS = Counter("quanzi_orders_from_stock_loans_total", "Orders placed from stock on loan")

_desks = weakref.WeakKeyDictionary()  # {store: _Desk}: one per process, as kit.batching's GroupCommits


class _Desk:
    """What one process knows of its loans between batches (nothing of it is needed for correctness: every write
    is conditional on the loan's document)."""

    def __init__(self):
        self.hot = domain.HotSkus()
        self.asking = set()  # SKUs whose lot this process is asking for now
        self.on_loan = set()  # SKUs whose loan had units when this process last looked: sold from it, hot or not
        # one batch's loans written at a time: two at once mostly share a SKU, and one of them would conflict and
        # start over
        self.writing = eventlet.semaphore.Semaphore()


def _desk_of(store):
    if store not in _desks:
        _desks[store] = _Desk()
    return _desks[store]


class StockLoans:
    """The loan steps over the orders store and the catalog's RPC proxy."""

    def __init__(self, store, catalog, settings):
        self.store, self.catalog, self.settings = store, catalog, settings
        self.desk = _desk_of(store)

    def plan(self, requests, new_intent):
        """What loans can cover of a batch of plain orders [(buyer_id, key, data, items)]: ({request index: its
        order, placed}, {sku id: units the loans give}), for `commit`. The lots the batch's hot SKUs need are asked
        for meanwhile, off the buyers' path (a greenthread per SKU: nobody waits for it; one that dies half-way
        leaves its lot to the sweep)."""
        counts = {}
        for _, _, _, items in requests:
            if len(items) == 1:
                counts[items[0]["sku_id"]] = counts.get(items[0]["sku_id"], 0) + items[0]["qty"]
        clock = time.monotonic()
        hot = [sku_id for sku_id, count in counts.items() if self.desk.hot.saw(sku_id, count, clock)]
        orders, takes = {}, {}
        if not hot and self.desk.on_loan.isdisjoint(counts):
            return orders, takes
        now = utcnow()
        loans = self.store.loans_of(set(hot) | (self.desk.on_loan & set(counts)))
        for sku_id, loan in loans.items():
            (self.desk.on_loan.add if loan["units"] > 0 else self.desk.on_loan.discard)(sku_id)
        self._ask_lots([sku_id for sku_id in hot if sku_id not in self.desk.asking
                        and domain.lot_to_ask(loans.get(sku_id), now) is not None], loans, now)
        for i, (buyer_id, key, data, items) in enumerate(requests):
            if len(items) != 1 or items[0]["sku_id"] not in loans:
                continue
            sku_id, qty = items[0]["sku_id"], items[0]["qty"]
            if not domain.loan_covers(loans[sku_id], takes.get(sku_id, 0) + qty, now):
                continue
            intent = new_intent(buyer_id, key, None, now, key and domain.request_fingerprint(data))
            merchant_id, lines = domain.price_lines([domain.loan_line(loans[sku_id], qty)])
            orders[i] = dict(domain.placed_order(intent, merchant_id, lines, data, False, self.settings),
                             stock="loan")
            takes[sku_id] = takes.get(sku_id, 0) + qty
        return orders, takes

    def commit(self, orders, takes):
        """Write a plan's orders (OrdersStore.place_from_loans): False, with nothing written, when a loan ran short
        meanwhile or a key names an order already (they are then placed the usual way)."""
        if not orders:
            return False
        with self.desk.writing:
            placed = self.store.place_from_loans(list(orders.values()), takes, utcnow())
        if placed:
            ORDERS_FROM_LOANS.inc(len(orders))
        return placed

    def _ask_lots(self, sku_ids, loans, now):
        """Ask for the lots these SKUs need, one greenthread each."""
        self.desk.asking.update(sku_ids)

        def ask(sku_id):
            try:
                self.borrow(sku_id, domain.lot_to_ask(loans.get(sku_id), now))
            except Exception:
                log.warning("SKU %s: its lot is left to the sweep", sku_id, exc_info=True)
            finally:
                self.desk.asking.discard(sku_id)
        for sku_id in sku_ids:
            eventlet.spawn_n(ask, sku_id)

    def borrow(self, sku_id, qty):
        """Ask the catalog for a lot of the SKU (qty 0: its price only, nothing to record) and credit the loan
        with the answer."""
        loan_id = new_id("lot")
        if qty == 0:
            try:
                line = rpc_call(self.catalog.lend_stock, {"loan_id": loan_id, "sku_id": sku_id, "qty": 0},
                                timeout=RPC_TIMEOUT)["line"]
            except QuanziError:
                line = None
            self.store.reprice(sku_id, line, utcnow())
            return
        self.store.ask_lot(loan_id, sku_id, qty, utcnow())
        self._lend(loan_id, sku_id, qty)

    def _lend(self, loan_id, sku_id, qty):
        try:
            answer = rpc_call(self.catalog.lend_stock, {"loan_id": loan_id, "sku_id": sku_id, "qty": qty},
                              timeout=RPC_TIMEOUT)
        except QuanziError:  # refused (no such SKU: orders of it are refused too): nothing lent, asked again later
            answer = {"lent": 0, "line": None}
        faults.reached(f"loan_lent:{sku_id}")
        if self.store.credit_lot(loan_id, sku_id, answer["lent"], answer["line"], utcnow()):
            LOAN_UNITS.labels("borrowed").inc(answer["lent"])

    def give_back_idle(self):
        """Units unsold for LOAN_IDLE, of a SKU no longer on sale, or priced too long ago (a product that changed
        and is not in demand since) go back to the catalog."""
        now = utcnow()
        idle_since, stale_before = now - domain.LOAN_IDLE, now - domain.LOAN_PRICED_FOR
        for sku_id in self.store.idle_loans(idle_since, stale_before):
            loan_id = new_id("lot")
            units = self.store.take_back_lot(sku_id, loan_id, idle_since, stale_before, now)
            if units:
                faults.reached(f"loan_taken_back:{sku_id}")
                self._return(loan_id, sku_id, units)

    def _return(self, loan_id, sku_id, units):
        rpc_call(self.catalog.take_back_stock, {"loan_id": loan_id, "sku_id": sku_id, "qty": units},
                 timeout=RPC_TIMEOUT)
        self.store.lot_returned(loan_id)
        LOAN_UNITS.labels("returned").inc(units)

    def settle(self):
        """The sweep's part: lots whose caller died before recording the answer are asked again (each step is
        idempotent by loan id), then idle units go back."""
        for op in self.store.unsettled_lots(utcnow() - domain.LOAN_SETTLE_AFTER):
            try:
                if op["kind"] == "borrow":
                    self._lend(op["_id"], op["sku_id"], op["qty"])
                else:
                    self._return(op["_id"], op["sku_id"], op["qty"])
            except Exception:
                log.exception("lot %s: left for the next sweep", op["_id"])
        self.give_back_idle()
