"""`make chaos-cluster`: failover under load on the local cluster (tools.cluster), then the invariants.

    python -m tools.chaos_cluster [--clients 6] [--warmup 30] [--gap 40] [--tail 30] [--single]

Client threads place and pay orders through a share code, as a real app does (same `Idempotency-Key` until an
answer, a failed pay retried and a 409 looked up; each client on one of the two gateways, the other one when
its gateway does not answer). Meanwhile, one after another:
  1. kill -9 of the MongoDB primary (a new one is elected; the old member is started again later),
  2. kill -9 of a RabbitMQ node (the first of most services' failover lists: the one they are connected to),
  3. that node started again (it rejoins the cluster; its quorum queue members catch up).
Then, once the outboxes and queues are drained, from the databases and an independent quorum queue bound to
`order.paid`: no acknowledged order or payment lost, none applied twice, stock exact, commission exact to the
fen, every paid order's `order.paid` delivered, one envelope per order. Prints a table: per fault the error
window (first to last failed answer) and the answers by status, the errors after the last fault, throughput.
`--single` also measures the same load without faults on a single-node stack (tools.stack) for comparison.
Exit status 1 when an invariant fails.
"""
import argparse
import collections
import json
import shutil
import sys
import threading
import time
import uuid

import kombu
import pymongo
import requests

from tools.cluster import Cluster, list_queues
from tools.stack import REPO, Stack

ENV = {
    "RATE_LIMIT_IP_PER_SEC": "1000000", "RATE_LIMIT_IP_BURST": "1000000",
    "RATE_LIMIT_USER_PER_SEC": "1000000", "RATE_LIMIT_USER_BURST": "1000000",
    "PASSWORD_HASH_LOG2N": "12", "LOG_LEVEL": "WARNING", "SWEEP_INTERVAL": "1",
}
PRICE_FEN, LEVEL1_BP, STOCK = 5000, 1000, 1_000_000
ADDRESS = {"recipient": "Chaos", "phone": "13900000000", "region": "杭州", "detail": "1 Road"}
GIVE_UP = 90  # seconds a client keeps retrying one step (same key) before it counts it as not acknowledged


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.answers = []  # (monotonic time, status or "conn")
        self.placed = {}  # order_id -> buyer
        self.paid = set()
        self.unacknowledged = 0

    def answer(self, status):
        with self.lock:
            self.answers.append((time.monotonic(), status))


class Client(threading.Thread):
    def __init__(self, n, gateways, buyers, share_code, sku_id, recorder, stop):
        super().__init__(daemon=True, name=f"chaos-client-{n}")
        self.gateways = gateways[n % len(gateways):] + gateways[:n % len(gateways)]
        self.buyer = buyers[n]
        self.share_code, self.sku_id, self.rec, self.stop = share_code, sku_id, recorder, stop
        self.http = requests.Session()
        self.http.trust_env = False

    def call(self, method, path, **kwargs):
        """One request; on a gateway that does not answer, the next gateway. Returns the response or None."""
        for _ in range(len(self.gateways)):
            try:
                response = self.http.request(method, self.gateways[0] + "/api/v1" + path, timeout=30,
                                             headers={"Authorization": f"Bearer {self.buyer['token']}",
                                                      **kwargs.pop("headers", {})}, **kwargs)
                self.rec.answer(response.status_code)
                return response
            except requests.RequestException:
                self.rec.answer("conn")
                self.gateways.append(self.gateways.pop(0))
        return None

    def step(self, fn):
        deadline = time.monotonic() + GIVE_UP
        while time.monotonic() < deadline:
            result = fn()
            if result is not None:
                return result
            time.sleep(0.5)
        self.rec.unacknowledged += 1
        return None

    def run(self):
        while not self.stop.is_set():
            key = uuid.uuid4().hex
            body = {"items": [{"sku_id": self.sku_id, "qty": 1}], "address": ADDRESS, "share_code": self.share_code}

            def place():
                r = self.call("POST", "/orders", json=body, headers={"Idempotency-Key": key})
                return r.json()["order_id"] if r is not None and r.status_code == 201 else None
            order_id = self.step(place)
            if order_id is None:
                continue
            with self.rec.lock:
                self.rec.placed[order_id] = self.buyer["user_id"]

            def pay():
                r = self.call("POST", f"/orders/{order_id}/pay")
                if r is not None and r.status_code == 200 and r.json()["status"] == "paid":
                    return True
                if r is not None and r.status_code in (200, 409):  # paid meanwhile by an earlier attempt?
                    look = self.call("GET", f"/orders/{order_id}")
                    if look is not None and look.status_code == 200 and look.json()["status"] == "paid":
                        return True
                return None
            if self.step(pay):
                with self.rec.lock:
                    self.rec.paid.add(order_id)


def _expect(response, status):
    if response.status_code != status:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}")
    return response.json()


def seed(gateway_url, env, clients):
    """An approved merchant, one product with a 10 % level-1 rate, a sharer's share code, `clients` buyers."""
    from tests.flows import approved_merchant, product_payload
    from tests.helpers import Api
    api = Api(gateway_url, env["ADMIN_PHONE"], env["ADMIN_PASSWORD"])
    owner, merchant = approved_merchant(api, name="Chaos Shop")
    product = _expect(api.post("/products", token=owner["token"], json=product_payload(
        merchant["merchant_id"], title="Chaos tea", price_fen=PRICE_FEN, stock=STOCK,
        commission={"level1_bp": LEVEL1_BP, "level2_bp": 0})), 201)
    sharer = api.register_user(nickname="sharer")
    share = _expect(api.post("/shares", json={"product_id": product["product_id"]}, token=sharer["token"]), 201)
    buyers = [api.register_user(nickname=f"buyer{i}") for i in range(clients)]
    return product, product["skus"][0]["sku_id"], sharer, share["share_code"], buyers


class PaidWitness:
    """Another team's durable subscriber to order.paid: a quorum queue of its own, read at the end."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.name = f"chaos-witness-{uuid.uuid4().hex[:8]}"
        exchange = kombu.Exchange("orders.events", type="topic", durable=True)
        with kombu.Connection(amqp_uri) as connection:
            channel = connection.channel()
            exchange(channel).declare()
            kombu.Queue(self.name, exchange=exchange, routing_key="order.paid", durable=True,
                        queue_arguments={"x-queue-type": "quorum"})(channel).declare()

    def drain(self):
        envelopes = collections.defaultdict(set)
        with kombu.Connection(self.amqp_uri) as connection:
            queue = kombu.Queue(self.name, no_declare=True)(connection.channel())
            while True:
                message = queue.get(no_ack=False)
                if message is None:
                    return envelopes
                envelope = json.loads(message.body)
                envelopes[envelope["data"]["order_id"]].add(envelope["id"])
                message.ack()


def quiesce(mongo_uri, amqp_nodename, timeout=180):
    """Until no outbox holds a pending event and no Quanzi queue holds a message (all work done)."""
    deadline = time.monotonic() + timeout
    with pymongo.MongoClient(mongo_uri) as client:
        while time.monotonic() < deadline:
            pending = sum(client[f"quanzi_{s}"]["outbox"].count_documents({"status": "pending"})
                          for s in ("catalog", "orders", "social_feed", "commission"))
            # an order left `creating` (its client gave up mid-way) gets its stock back from the sweep
            creating = client.quanzi_orders.orders.count_documents({"status": "creating"})
            busy = [q["name"] for q in list_queues(amqp_nodename)
                    if q["messages"] and not q["name"].startswith("chaos-") and ".dlq" not in q["name"]
                    and ".retry." not in q["name"]]
            if not pending and not busy and not creating:
                time.sleep(5)  # a last handler may still be committing
                return True
            time.sleep(2)
    return False


def check(mongo_uri, recorder, product, sku_id, sharer, witness):
    """The invariants, from the databases and the witness queue: [(name, ok, detail)]."""
    rows = []
    with pymongo.MongoClient(mongo_uri) as client:
        orders = {o["_id"]: o for o in client.quanzi_orders.orders.find({"lines.sku_id": sku_id})}
        sku = client.quanzi_catalog.skus.find_one({"_id": sku_id})
        ledger = list(client.quanzi_commission.ledger.find({"beneficiary_id": sharer["user_id"]}))
        commissions = list(client.quanzi_commission.commissions.find({"beneficiary_id": sharer["user_id"]}))
    lost = [o for o in recorder.placed if o not in orders]
    rows.append(("acknowledged orders lost", not lost, f"{len(lost)} of {len(recorder.placed)}"))
    paid_in_db = {o for o, doc in orders.items() if doc["status"] == "paid"}
    lost_pay = recorder.paid - paid_in_db
    rows.append(("acknowledged payments lost", not lost_pay, f"{len(lost_pay)} of {len(recorder.paid)}"))
    live = [o for o in orders.values() if o["status"] not in ("cancelled", "abandoned")]
    expected_stock = STOCK - sum(line["qty"] for o in live for line in o["lines"])
    rows.append(("stock exact", sku["stock"] == expected_stock,
                 f"stock {sku['stock']}, expected {expected_stock} ({len(live)} orders hold stock)"))
    extra = len(orders) - len(recorder.placed)
    rows.append(("orders not acknowledged to a client", True,
                 f"{extra} (a client gave up: {recorder.unacknowledged}; such an order stays unpaid)"))
    per_order = collections.Counter(c["order_id"] for c in commissions if c["level"] == 1)
    twice = [o for o, n in per_order.items() if n > 1]
    rows.append(("commission applied twice", not twice, f"{len(twice)} orders"))
    goods = {o: doc["goods_fen"] for o, doc in orders.items()}
    wrong = [c for c in commissions if c["accrued_fen"] != goods[c["order_id"]] * LEVEL1_BP // 10000]
    missing = paid_in_db - set(per_order)
    accrued = sum(e["amount_fen"] for e in ledger)
    expected = sum(goods[o] * LEVEL1_BP // 10000 for o in paid_in_db)
    rows.append(("commission exact", not wrong and not missing and accrued == expected,
                 f"ledger {accrued} fen, expected {expected}; {len(missing)} paid orders without, "
                 f"{len(wrong)} wrong"))
    envelopes = witness.drain()
    undelivered = paid_in_db - set(envelopes)
    rows.append(("every paid order's order.paid delivered", not undelivered,
                 f"{len(undelivered)} of {len(paid_in_db)} missing"))
    doubled = [o for o, ids in envelopes.items() if len(ids) > 1]
    rows.append(("one order.paid envelope per order", not doubled, f"{len(doubled)} with more"))
    return rows


def window(answers, start, end):
    """(error window in seconds, answers by status) of the answers in [start, end)."""
    inside = [(t, s) for t, s in answers if start <= t < end]
    errors = [t for t, s in inside if s == "conn" or int(s) >= 500]
    by_status = collections.Counter(str(s) for _, s in inside)
    span = (max(errors) - min(errors)) if errors else 0.0
    return span, len(errors), by_status


def throughput(recorder, start, end):
    with recorder.lock:
        answers = [a for a in recorder.answers if start <= a[0] < end and a[1] in (200, 201)]
    return len(answers) / (end - start)


def run_load(gateways, env, clients, seconds_fn):
    """Seed, start `clients` threads, call seconds_fn(recorder) (it injects faults / waits), stop them."""
    product, sku_id, sharer, share_code, buyers = seed(gateways[0], env, clients)
    recorder, stop = Recorder(), threading.Event()
    threads = [Client(n, gateways, buyers, share_code, sku_id, recorder, stop) for n in range(clients)]
    for t in threads:
        t.start()
    try:
        seconds_fn(recorder)
    finally:
        stop.set()
        for t in threads:
            t.join(GIVE_UP + 35)
    return recorder, product, sku_id, sharer


def cluster_run(args):
    home = REPO / ".stack" / "chaos-cluster"
    shutil.rmtree(home, ignore_errors=True)
    cluster = Cluster(home, env=ENV)
    print(f"starting the cluster under {home} ...", flush=True)
    started = time.monotonic()
    cluster.start()
    print(f"cluster up in {time.monotonic() - started:.0f} s: {cluster.amqp_uri}\n  {cluster.mongo_uri}", flush=True)
    faults, result = [], {}
    try:
        witness = PaidWitness(cluster.amqp_uri)

        def scenario(rec):
            t0 = time.monotonic()
            time.sleep(args.warmup)
            result["throughput"] = throughput(rec, t0 + 5, time.monotonic())
            primary = cluster.mongo.primary()
            at = time.monotonic()
            cluster.mongo.kill(primary)
            print(f"{_clock()} fault 1: kill -9 of the MongoDB primary (port {primary.port})", flush=True)
            new = cluster.mongo.wait_primary(60, not_member=primary)
            print(f"{_clock()}   new primary on port {new.port} after {time.monotonic() - at:.1f} s", flush=True)
            faults.append(("kill -9 MongoDB primary", at))
            time.sleep(args.gap / 2)
            cluster.mongo.restart(primary)
            print(f"{_clock()}   old primary (port {primary.port}) started again: a secondary", flush=True)
            time.sleep(args.gap / 2)
            node = cluster.rabbit.nodes[0]
            at = time.monotonic()
            node.kill()
            print(f"{_clock()} fault 2: kill -9 of RabbitMQ node {node.nodename}", flush=True)
            faults.append((f"kill -9 RabbitMQ node 1 of 3", at))
            time.sleep(args.gap)
            at = time.monotonic()
            node.start()
            print(f"{_clock()} fault 3: {node.nodename} started again, up after {time.monotonic() - at:.1f} s",
                  flush=True)
            faults.append(("RabbitMQ node back", at))
            time.sleep(args.tail)
            faults.append(("end", time.monotonic()))

        recorder, product, sku_id, sharer = run_load(cluster.gateway_urls, cluster.stack.env, args.clients,
                                                     scenario)
        print(f"{_clock()} load stopped; waiting for outboxes and queues to drain ...", flush=True)
        drained = quiesce(cluster.mongo_uri, cluster.rabbit.nodes[1].nodename)
        rows = check(cluster.mongo_uri, recorder, product, sku_id, sharer, witness)
        died = [f"{p.name}@{p.web_port} ({p.returncode})" for p in cluster.processes if not p.is_running()]
        types = collections.Counter(q["type"] for q in list_queues(cluster.rabbit.nodes[1].nodename)
                                    if q["durable"] and not q["exclusive"] and not q["auto_delete"])
    finally:
        cluster.stop()
    return recorder, faults, rows, died, drained, result["throughput"], types


def single_run(args):
    home = REPO / ".stack" / "chaos-single"
    shutil.rmtree(home, ignore_errors=True)
    stack = Stack(home, env=ENV)
    stack.start()
    result = {}
    try:
        for name in list(stack.services):  # as many processes as the cluster runs: two of each
            stack.add_replica(name)
        gateways = [p.url for p in stack._all_processes() if p.name == "gateway"]

        def scenario(rec):
            t0 = time.monotonic()
            time.sleep(args.warmup)
            result["throughput"] = throughput(rec, t0 + 5, time.monotonic())
        run_load(gateways, stack.env, args.clients, scenario)
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
    return result["throughput"]


def _clock():
    return time.strftime("%H:%M:%S")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.chaos_cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--warmup", type=float, default=30, help="seconds of load before the first fault")
    parser.add_argument("--gap", type=float, default=40, help="seconds between faults")
    parser.add_argument("--tail", type=float, default=30, help="seconds of load after the last fault")
    parser.add_argument("--single", action="store_true", help="also measure a single-node stack, no faults")
    parser.add_argument("--single-only", action="store_true", help="only the single-node measurement")
    args = parser.parse_args(argv)
    if args.single_only:
        print(f"throughput without faults, {args.clients} clients (2xx answers/s, place + pay):\n"
              f"  single node (1 RabbitMQ, 1 mongod, 2 of each service): {single_run(args):.1f}")
        return 0

    recorder, faults, rows, died, drained, cluster_rps, types = cluster_run(args)
    single_rps = single_run(args) if args.single else None

    print(f"\n{'fault':32} {'error window':>12} {'errors':>7}  answers by status")
    for (name, at), (_, until) in zip(faults, faults[1:]):
        span, errors, by_status = window(recorder.answers, at, until)
        print(f"{name:32} {span:>10.1f} s {errors:>7}  {dict(sorted(by_status.items()))}")
    last = faults[-2][1]
    settle = 15
    span, errors, by_status = window(recorder.answers, last + settle, faults[-1][1])
    print(f"{f'after the last fault (+{settle} s)':32} {span:>10.1f} s {errors:>7}  {dict(sorted(by_status.items()))}")
    print(f"\norders placed {len(recorder.placed)}, paid {len(recorder.paid)}; outboxes and queues drained: {drained}")
    print(f"durable queues on the broker by type: {dict(types)}")
    print(f"service processes that exited: {', '.join(died) or 'none'}")
    print(f"\n{'invariant':42} {'ok':>4}  detail")
    for name, ok, detail in rows:
        print(f"{name:42} {'yes' if ok else 'NO':>4}  {detail}")
    print(f"\nthroughput without faults, {args.clients} clients (2xx answers/s, place + pay):")
    print(f"  cluster (3 RabbitMQ nodes, 3 mongod, 2 of each service): {cluster_rps:.1f}")
    if single_rps is not None:
        print(f"  single node (1 RabbitMQ, 1 mongod, 2 of each service):   {single_rps:.1f}")
    return 0 if all(ok for _, ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
