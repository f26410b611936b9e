"""`make chaos`: shoppers keep buying through a share link while the stack is broken one part at a time.

Starts a stack of its own (free ports, supervised as `make run` is), then:
- client threads place and pay orders through a share code, retrying as a real app does: the same
  Idempotency-Key for a retried order, a pay retried, a 409 looked up (GET /orders/{id});
- faults one after another: kill -9 of orders, commission, catalog and the gateway (the supervisor restarts
  them), a RabbitMQ restart, kill -9 of mongod and its restart;
- then checks, from the databases and from an independent durable queue bound to orders.events: no
  acknowledged order or payment lost, every payment the sandbox provider took either on its paid order or paid
  back, stock exact, commission exact, every paid order's order.paid delivered, no two envelopes for one order's
  payment, no errors 10 s after the last fault, no service exited by itself.
Prints a table; exits 1 when an invariant does not hold. CHAOS_SECONDS (default 100) is the length of the
run, CHAOS_THREADS (default 6) the shoppers. tests/stack/test_resilience.py runs one fault at a time in `make test`.
"""
import collections
import os
import shutil
import sys
import threading
import time
import uuid

import kombu
import pymongo
import requests

from tools.client import Api
from tools.flows import ADDRESS, approved_merchant, expect, product_payload
from tools.stack import REPO, Stack

CHAOS_ENV = {
    "RATE_LIMIT_IP_PER_SEC": "1000000", "RATE_LIMIT_IP_BURST": "1000000",
    "RATE_LIMIT_USER_PER_SEC": "1000000", "RATE_LIMIT_USER_BURST": "1000000",
    "PASSWORD_HASH_LOG2N": "12", "SWEEP_INTERVAL": "1", "EVENT_RETRY_DELAYS": "0.5,1,2",
    "PAYMENT_TIMEOUT": "3600",  # an order waiting out an outage is not cancelled under the shopper
}
PRICE_FEN, STOCK, LEVEL1_BP = 5000, 1_000_000, 1000
QUIET_AFTER = 10.0  # seconds after the last fault from which no error is acceptable
PAID_STATUSES = {"paid", "shipped", "completed"}


def _sleep_retry_after(response, cap=1.0):
    try:
        wait = float(response.headers.get("Retry-After", 0.3)) if response is not None else 0.3
    except ValueError:
        wait = 0.3
    time.sleep(min(max(wait, 0.1), cap))


def _message(response):
    if response is None:
        return ""
    try:
        return str(response.json().get("error", {}).get("message", ""))[:160]
    except ValueError:
        return response.text[:160]


class Shoppers:
    """`threads` shoppers, each placing and paying one order after another until stop(); every HTTP answer is
    recorded as (time, status) with status an int or the name of the client-side failure (a timeout...)."""

    def __init__(self, gateway_url, buyers, sku_id, share_code, threads):
        # one gateway URL, or several (shopper n uses the n-th, as a load balancer would spread them)
        self.gateway_urls = [gateway_url] if isinstance(gateway_url, str) else list(gateway_url)
        self.buyers, self.sku_id, self.share_code = buyers, sku_id, share_code
        self.threads = threads
        self.answers = []  # (monotonic time sent, status, route)
        self.failures = []  # (monotonic time sent, route, status, the answer's message): what an error was
        self.placed = {}  # order id -> total_fen: orders the API acknowledged (201)
        self.paid = set()  # orders the shopper saw paid
        self.refused = collections.Counter()  # unexpected 4xx that ended an attempt
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = []

    def start(self):
        for n in range(self.threads):
            worker = threading.Thread(target=self._shop, args=(self.buyers[n % len(self.buyers)],
                                                               self.gateway_urls[n % len(self.gateway_urls)]),
                                      name=f"shopper-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self, timeout=90):
        """No new orders; the ones under way finish (paid) within `timeout`."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.1, deadline - time.monotonic()))

    def _call(self, api, method, path, token, **kwargs):
        sent = time.monotonic()  # an answer counts for when it was asked: one asked mid-outage may fail late
        try:
            response = api.request(method, path, token=token, timeout=20, **kwargs)
            status = response.status_code
        except requests.RequestException as exc:
            response, status = None, type(exc).__name__
        route = f"{method} {path.replace(path.split('/')[2], '{id}') if path.count('/') > 1 else path}"
        with self._lock:
            self.answers.append((sent, status))
            if response is None or status >= 400:
                self.failures.append((sent, route, status, _message(response)))
        return response

    def _shop(self, token, gateway_url):
        api = Api(gateway_url, "", "")
        while not self._stop.is_set():
            order = self._place(api, token)
            if order is not None:
                self._pay(api, token, order)

    def _place(self, api, token):
        key = uuid.uuid4().hex  # one order, however many times it is sent
        body = {"items": [{"sku_id": self.sku_id, "qty": 1}], "address": ADDRESS, "share_code": self.share_code}
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            response = self._call(api, "POST", "/orders", token, json=body, headers={"Idempotency-Key": key})
            if response is not None and response.status_code == 201:
                order = response.json()
                with self._lock:
                    self.placed[order["order_id"]] = order["total_fen"]
                return order
            if response is not None and response.status_code < 500 and response.status_code not in (409, 429):
                with self._lock:
                    self.refused[f"POST /orders {response.status_code}"] += 1
                return None
            _sleep_retry_after(response)
        return None

    def _pay(self, api, token, order):
        path = f"/orders/{order['order_id']}"
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            response = self._call(api, "POST", path + "/pay", token)
            if response is not None and response.status_code in (200, 409):
                # paid, or the provider's notification is still on its way, or a first attempt got through
                looked = self._call(api, "GET", path, token)
                status = looked.json()["status"] if looked is not None and looked.status_code == 200 else None
                if status in PAID_STATUSES:
                    with self._lock:
                        self.paid.add(order["order_id"])
                    return
                if status == "cancelled":
                    with self._lock:
                        self.refused["paid too late (cancelled)"] += 1
                    return
            elif response is not None and response.status_code < 500 and response.status_code != 429:
                with self._lock:
                    self.refused[f"POST /orders/{{id}}/pay {response.status_code}"] += 1
                return
            _sleep_retry_after(response)


class Audit:
    """Another team's subscriber that must not miss anything: a quorum queue bound to orders.events (declared
    before the load starts, so it survives the broker restart, or the loss of a cluster node, with its messages),
    read at the end."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.exchange = kombu.Exchange("orders.events", type="topic", durable=True, delivery_mode=2)
        self.queue = kombu.Queue(f"chaos-audit-{uuid.uuid4().hex[:8]}", self.exchange, routing_key="order.paid",
                                 durable=True, auto_delete=False, queue_arguments={"x-queue-type": "quorum"})
        with kombu.Connection(amqp_uri) as connection:
            self.queue(connection.default_channel).declare()
        self.envelopes = []

    def drain(self):
        with kombu.Connection(self.amqp_uri) as connection:
            queue = self.queue(connection.default_channel)
            while (message := queue.get(no_ack=False, accept=["json"])) is not None:
                self.envelopes.append(message.decode())
                message.ack()

    def delete(self):
        with kombu.Connection(self.amqp_uri) as connection:
            self.queue(connection.default_channel).delete()

    def paid_envelopes(self):
        """order id -> set of distinct envelope ids of its order.paid"""
        seen = collections.defaultdict(set)
        for envelope in self.envelopes:
            if envelope.get("type") == "order.paid":
                seen[envelope["data"]["order_id"]].add(envelope["id"])
        return seen


def faults(stack):
    """(name, inject) in the order they are injected."""
    def kill(name):
        return lambda: stack.services[name].kill()

    def mongod():
        stack.kill_mongo()
        time.sleep(2)
        stack.start_mongo()
    return [("kill -9 orders", kill("orders")), ("kill -9 commission", kill("commission")),
            ("kill -9 catalog", kill("catalog")), ("kill -9 gateway", kill("gateway")),
            ("restart RabbitMQ", lambda: stack.restart_broker(down_seconds=2)),
            ("kill -9 mongod, restart", mongod)]


def wait_all_healthy(stack, timeout=60):
    """Seconds until every service answers /health 200 (each one restarted by the supervisor if it died)."""
    started = time.monotonic()
    session = requests.Session()
    session.trust_env = False
    pending = set(stack.services)
    while pending and time.monotonic() - started < timeout:
        for name in list(pending):
            try:
                if session.get(stack.services[name].url + "/health", timeout=2).status_code == 200:
                    pending.discard(name)
            except requests.RequestException:
                pass
        if pending:
            time.sleep(0.25)
    if pending:
        raise TimeoutError(f"not healthy {timeout} s after the fault: {sorted(pending)}")
    return time.monotonic() - started


def prepare(stack):
    """A shop with one product, a sharer and their share code, and the shoppers' accounts."""
    api = Api(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"])
    owner, merchant = approved_merchant(api)
    product = expect(api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], title=f"Chaos tea {uuid.uuid4().hex[:6]}", price_fen=PRICE_FEN, stock=STOCK,
        commission={"level1_bp": LEVEL1_BP, "level2_bp": 0})), 201)
    sharer = api.register_user(nickname="chaos sharer")
    share = expect(api.post("/shares", json={"product_id": product["product_id"]}, token=sharer["token"]), 201)
    return {"product": product, "sku_id": product["skus"][0]["sku_id"], "sharer": sharer,
            "share_code": share["share_code"]}


class Load:
    """A shop, its shoppers buying through the share link, and the audit queue: start(), then finish() for the
    report of the invariants. Used by run() and by the resilience tests (one fault at a time)."""

    def __init__(self, stack, threads=6):
        self.stack, self.threads = stack, threads
        self.shop = prepare(stack)
        api = Api(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"])
        buyers = [api.register_user(nickname=f"chaos{n}")["token"] for n in range(threads)]
        self.audit = Audit(stack.amqp_uri)
        self.shoppers = Shoppers(stack.gateway_url, buyers, self.shop["sku_id"], self.shop["share_code"], threads)
        self.started = None

    def start(self):
        self.started = time.monotonic()
        self.shoppers.start()
        return self

    def finish(self, last_fault):
        """Stop the shoppers (orders under way finish), then check; `last_fault`: monotonic time it ended."""
        self.shoppers.stop()
        report = {"seconds": round(time.monotonic() - self.started, 1), "threads": self.threads, "faults": []}
        report.update(check(self.stack, self.shop, self.shoppers, self.audit, last_fault))
        self.audit.delete()
        return report


def run(stack, seconds=100, threads=6, say=print):
    """Load + the six faults + invariants against a started, supervised `stack`; returns the report (render())."""
    load = Load(stack, threads).start()
    injected = faults(stack)
    gap = max(2.0, (seconds - QUIET_AFTER) / (len(injected) + 1))
    done = []
    last_fault = time.monotonic()
    try:
        for name, inject in injected:
            time.sleep(gap)
            at = time.monotonic()
            inject()
            recovered = wait_all_healthy(stack)
            last_fault = time.monotonic()
            done.append({"fault": name, "at_s": round(at - load.started, 1),
                         "healthy_after_s": round(last_fault - at, 1)})
            say(f"[{at - load.started:5.1f} s] {name}: all healthy again after {last_fault - at:.1f} s "
                f"(waited {recovered:.1f} s for /health)")
        time.sleep(max(QUIET_AFTER + 2, seconds - (last_fault - load.started)))
    finally:
        report = load.finish(last_fault)
    report["faults"] = done
    return report


def check(stack, shop, shoppers, audit, last_fault, settle=60):
    """The invariants, from the databases and the audit queue (waiting up to `settle` s for consumers)."""
    client = pymongo.MongoClient(stack.mongo_uri, serverSelectionTimeoutMS=10000)
    try:
        orders_db, catalog_db, commission_db, provider_db = (client[f"quanzi_{n}"] for n in (
            "orders", "catalog", "commission", "sandbox_pay"))
        placed, client_paid = dict(shoppers.placed), set(shoppers.paid)
        deadline = time.monotonic() + settle
        while True:
            stored = {o["_id"]: o for o in orders_db.orders.find({"lines.sku_id": shop["sku_id"]},
                                                                 {"status": 1, "total_fen": 1, "goods_fen": 1,
                                                                  "stock": 1})}
            paid_db = {i for i, o in stored.items() if o["status"] in PAID_STATUSES}
            commissions = {c["order_id"]: c for c in commission_db.commissions.find(
                {"order_id": {"$in": sorted(paid_db)}, "level": 1})}
            audit.drain()
            delivered = audit.paid_envelopes()
            sku = catalog_db.skus.find_one({"_id": shop["sku_id"]})
            live = [o for o in stored.values() if o["status"] != "cancelled"]
            # An order whose placing was cut short (its service killed) is an intent the sweep undoes after
            # orders.domain.INTENT_TTL, giving its stock back: until then that stock is held, not lost.
            intents = [o["_id"] for o in orders_db.orders.find({"status": {"$in": ["creating", "abandoned"]}},
                                                               {"_id": 1})]
            # held: the lines of their reservations, or (a reservation still `reserving`: cut short between its
            # steps, see catalog.store) the holds it placed on the SKU
            reservations = {r["_id"]: r for r in catalog_db.reservations.find({"_id": {"$in": intents}})}
            held = sum(line["qty"] for r in reservations.values() if r["status"] == "reserved"
                       for line in r["lines"] if line["sku_id"] == shop["sku_id"])
            held += sum(h["q"] for h in sku.get("holds", [])
                        if reservations.get(h["o"], {}).get("status") == "reserving")
            # stock on loan (orders.loans): what the catalog lent net of what came back is on the orders' loan or
            # sold from it; a lot whose answer was not recorded yet (its caller killed) is settled by the sweep
            lent = sum(lot["qty"] if lot["kind"] == "lend" else -lot["qty"]
                       for lot in catalog_db.loans.find({"sku_id": shop["sku_id"]}))
            on_loan = (orders_db.loans.find_one({"_id": shop["sku_id"]}) or {"units": 0})["units"]
            from_loans = sum(1 for o in live if o.get("stock") == "loan")
            # stock given back by a consumer (order.cancelled, an undo retried after the outage) arrives late
            # too: the check waits for it like for commissions and events, and reports what is still off then.
            # Both sides must add up: the catalog's (its stock, its reservations, its lots) and the loan's.
            drift = abs((STOCK - sku["stock"]) - (len(live) - from_loans) - held - lent) + \
                abs(lent - on_loan - from_loans)
            # money the provider took: on its order, paid, or back with the buyer. A payment made by a pay cut short
            # before the shop applied it is applied by its notification, which the sweep sends once the payment's
            # hold ends (10 s): the check waits for that too
            taken = {p["_id"]: p["order_id"] for p in provider_db.payments.find(
                {"order_id": {"$in": sorted(stored)}}, {"order_id": 1})}
            paid_back = {r["trade_no"] for r in provider_db.refunds.find({"trade_no": {"$in": sorted(taken)}},
                                                                         {"trade_no": 1})}
            unaccounted = sorted(t for t, order_id in taken.items() if order_id not in paid_db and t not in paid_back)
            settled = (set(commissions) >= paid_db and set(delivered) >= paid_db and drift == 0
                       and not unaccounted)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(1)
        expected_commission = sum(o["goods_fen"] * LEVEL1_BP // 10_000 for i, o in stored.items() if i in paid_db)
        quiet_from = last_fault + QUIET_AFTER
        during, after = collections.Counter(), collections.Counter()
        for at, status in shoppers.answers:
            if isinstance(status, int) and status < 400:
                continue
            (after if at >= quiet_from else during)[status] += 1
        # what each error after the quiet point was, for whoever reads a violation
        detail = {True: [], False: []}
        for at, route, status, message in shoppers.failures:
            detail[at >= quiet_from].append(f"{at - last_fault:+.1f} s {route} {status} {message}".rstrip())
        exits = collections.Counter(name for name, _ in stack.supervisor.restarts) if stack.supervisor else {}
        killed = {"orders": 1, "commission": 1, "catalog": 1, "gateway": 1}
        return {
            "orders": len(placed), "paid": len(client_paid), "paid_in_db": len(paid_db),
            "lost_orders": len(set(placed) - set(stored)),
            "lost_payments": len(client_paid - paid_db),
            "money_taken": len(taken), "money_unaccounted": len(unaccounted),
            "stock_drift": drift, "stock_held_by_intents": held, "stock_on_loan": on_loan,
            "orders_from_loans": from_loans,
            "commission_drift": sum(c["accrued_fen"] for c in commissions.values()) - expected_commission,
            "commission_missing": len(paid_db - set(commissions)),
            "paid_event_missing": len(paid_db - set(delivered)),
            "paid_event_twice": sum(1 for ids in delivered.values() if len(ids) > 1),
            "errors_during": dict(during), "errors_after": dict(after), "errors_after_detail": detail[True][:20],
            "errors_during_detail": detail[False][:10],
            "unexpected_exits": {n: c - killed.get(n, 0) for n, c in exits.items() if c > killed.get(n, 0)},
            "gave_up": sorted(p.name for p in stack.supervisor.given_up) if stack.supervisor else [],
            "refused": dict(shoppers.refused),
        }
    finally:
        client.close()


def violations(report):
    """What does not hold, as sentences (empty: every invariant holds)."""
    found = []
    for key, what in (("lost_orders", "acknowledged orders lost"), ("lost_payments", "acknowledged payments lost"),
                      ("money_unaccounted", "payments taken by the provider, neither on a paid order nor paid back"),
                      ("stock_drift", "stock drift (units)"), ("commission_drift", "commission drift (fen)"),
                      ("commission_missing", "paid orders without commission"),
                      ("paid_event_missing", "paid orders whose order.paid never arrived"),
                      ("paid_event_twice", "orders with two order.paid envelopes")):
        if report[key]:
            found.append(f"{what}: {report[key]}")
    if report["errors_after"]:
        found.append(f"errors {QUIET_AFTER:g} s after the last fault: {report['errors_after']}")
    if any(isinstance(status, int) and status == 500 for status in report["errors_during"]):
        found.append(f"500 answers during the faults: {report['errors_during'][500]}")
    if report["unexpected_exits"] or report["gave_up"]:
        found.append(f"services that exited by themselves: {report['unexpected_exits']}, given up: {report['gave_up']}")
    if not report["paid"]:
        found.append("no order was paid: the load did not run")
    return found


def render(report):
    def statuses(counter):
        return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=str)) or "none"
    rows = [("run", f"{report['seconds']} s, {report['threads']} shoppers"),
            ("orders (acknowledged)", report["orders"]), ("paid (seen by shoppers / in the database)",
                                                          f"{report['paid']} / {report['paid_in_db']}"),
            ("faults", len(report["faults"])),
            ("lost orders / payments", f"{report['lost_orders']} / {report['lost_payments']}"),
            ("payments taken by the provider / not on a paid order nor paid back",
             f"{report['money_taken']} / {report['money_unaccounted']}"),
            ("stock drift (units) / held by intents being undone", f"{report['stock_drift']} / "
                                                                   f"{report['stock_held_by_intents']}"),
            ("live orders sold from stock on loan / units still on loan", f"{report['orders_from_loans']} / "
                                                                          f"{report['stock_on_loan']}"),
            ("commission drift (fen) / missing", f"{report['commission_drift']} / {report['commission_missing']}"),
            ("order.paid missing / twice", f"{report['paid_event_missing']} / {report['paid_event_twice']}"),
            ("errors during the faults", statuses(report["errors_during"])),
            (f"errors from {QUIET_AFTER:g} s after the last fault", statuses(report["errors_after"])),
            ("services that exited by themselves", statuses(report["unexpected_exits"])),
            ("shopper attempts refused (4xx)", statuses(report["refused"]))]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'fault':28} {'at':>7} {'healthy after':>14}"]
    lines += [f"{f['fault']:28} {f['at_s']:>6}s {f['healthy_after_s']:>13}s" for f in report["faults"]]
    lines.append("")
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    found = violations(report)
    lines.append("")
    lines += [f"VIOLATED: {v}" for v in found] or ["OK: every invariant holds"]
    for when in ("during", "after"):
        lines += [f"  error {when} (time from the last fault's repair): {line}"
                  for line in report.get(f"errors_{when}_detail", [])]
    return "\n".join(lines)


def main():
    seconds = float(os.environ.get("CHAOS_SECONDS", "100"))
    threads = int(os.environ.get("CHAOS_THREADS", "6"))
    home = REPO / ".stack" / f"chaos-{os.getpid()}"
    stack = Stack(home, env={**CHAOS_ENV, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
    print(f"starting a chaos stack under {home} ...", flush=True)
    stack.start()
    stack.supervise(say=lambda line: print(f"  supervisor: {line}", flush=True), backoff=(1, 2, 4, 8))
    try:
        report = run(stack, seconds, threads, say=lambda line: print(line, flush=True))
    finally:
        stack.stop()
    print()
    print(render(report))
    if violations(report):
        print(f"logs kept in {home}")
        return 1
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
