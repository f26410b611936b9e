"""`make chaos-cluster`: failover under load on the local cluster (tools.cluster), then the invariants.

    python -m tools.chaos_cluster [--clients 6] [--warmup 45] [--gap 40] [--tail 30] [--single] [--single-only]

The shoppers, the audit queue and the invariants are `make chaos`'s (tools/chaos.py): client threads place and pay
orders through a share code as a real app does (same `Idempotency-Key` until an answer, a pay retried, a 409 looked
up), spread over the cluster's two gateways. Meanwhile, one after another:
  1. kill -9 of the MongoDB primary (a new one is elected; the old member is started again later),
  2. kill -9 of a RabbitMQ node (the first of most services' failover lists: the one they are connected to),
  3. that node started again (it rejoins the cluster; its quorum queue members catch up).
Then, from the databases and the audit queue (a quorum queue bound to `order.paid`): no acknowledged order or
payment lost, stock exact, commission exact to the fen, every paid order's `order.paid` delivered, one envelope per
order, no service exited. Prints per fault the error window (first to last failed answer after it) and the answers
by status, the errors from 15 s after the last fault, and the throughput of the load without faults;
`--single` also measures it on a single-node stack (tools.stack) with as many service processes.
Exit status 1 when an invariant does not hold.
"""
import argparse
import collections
import shutil
import sys
import time

from tools.chaos import CHAOS_ENV, Audit, Shoppers, check, prepare, render, violations, wait_all_healthy
from tools.client import Api
from tools.cluster import Cluster, list_queues
from tools.stack import REPO, Stack

SETTLE = 15.0  # seconds after the last fault from which no error is acceptable


def shoppers_for(stack, gateways, threads):
    shop = prepare(stack)
    api = Api(stack.gateway_url, stack.env["ADMIN_PHONE"], stack.env["ADMIN_PASSWORD"])
    buyers = [api.register_user(nickname=f"chaos{n}")["token"] for n in range(threads)]
    return shop, Shoppers(gateways, buyers, shop["sku_id"], shop["share_code"], threads)


def throughput(shoppers, start, end):
    """2xx answers per second in [start, end)."""
    ok = [t for t, status in list(shoppers.answers) if start <= t < end and isinstance(status, int) and status < 300]
    return len(ok) / (end - start)


def window(answers, start, end):
    """In [start, end): (seconds in which some answer failed, failed answers, seconds from `start` to the last
    failure, answers by status). A failure: a 5xx or no answer."""
    inside = [(t, s) for t, s in answers if start <= t < end]
    failed = [t for t, s in inside if not isinstance(s, int) or s >= 500]
    seconds = len({int(t - start) for t in failed})
    last = (max(failed) - start) if failed else 0.0
    return seconds, len(failed), last, collections.Counter(str(s) for _, s in inside)


def _clock():
    return time.strftime("%H:%M:%S")


def cluster_run(args):
    home = REPO / ".stack" / "chaos-cluster"
    shutil.rmtree(home, ignore_errors=True)
    cluster = Cluster(home, env={**CHAOS_ENV, "LOG_LEVEL": "WARNING"})
    print(f"starting the cluster under {home} ...", flush=True)
    started = time.monotonic()
    cluster.start()
    cluster.stack.supervise(say=lambda line: print(f"  supervisor: {line}", flush=True), backoff=(1, 2, 4, 8))
    print(f"cluster up in {time.monotonic() - started:.0f} s", flush=True)
    faults = []
    try:
        shop, shoppers = shoppers_for(cluster.stack, cluster.gateway_urls, args.clients)
        audit = Audit(cluster.amqp_uri)
        t0 = time.monotonic()
        shoppers.start()
        try:
            time.sleep(args.warmup)
            rate = throughput(shoppers, t0 + 5, time.monotonic())
            primary = cluster.mongo.primary()
            at = time.monotonic()
            cluster.mongo.kill(primary)
            print(f"{_clock()} fault 1: kill -9 of the MongoDB primary (port {primary.port})", flush=True)
            new = cluster.mongo.wait_primary(60, not_member=primary)
            print(f"{_clock()}   new primary on port {new.port} after {time.monotonic() - at:.1f} s", flush=True)
            faults.append(("kill -9 MongoDB primary", at, wait_all_healthy(cluster.stack)))
            time.sleep(args.gap / 2)
            cluster.mongo.restart(primary)
            print(f"{_clock()}   the old primary (port {primary.port}) started again: a secondary", flush=True)
            time.sleep(args.gap / 2)
            node = cluster.rabbit.nodes[0]
            at = time.monotonic()
            node.kill()
            print(f"{_clock()} fault 2: kill -9 of RabbitMQ node {node.nodename}", flush=True)
            faults.append(("kill -9 RabbitMQ node 1 of 3", at, wait_all_healthy(cluster.stack)))
            time.sleep(args.gap)
            at = time.monotonic()
            node.start()
            print(f"{_clock()} fault 3: {node.nodename} started again, up after {time.monotonic() - at:.1f} s",
                  flush=True)
            faults.append(("RabbitMQ node back", at, wait_all_healthy(cluster.stack)))
            time.sleep(args.tail)
        finally:
            faults.append(("end", time.monotonic(), 0.0))
            shoppers.stop()
        print(f"{_clock()} load stopped; checking ...", flush=True)
        report = check(cluster.stack, shop, shoppers, audit, faults[-2][1], settle=120)
        report.update(seconds=round(time.monotonic() - t0, 1), threads=args.clients,
                      faults=[{"fault": name, "at_s": round(at - t0, 1), "healthy_after_s": round(healthy, 1)}
                              for name, at, healthy in faults[:-1]])
        audit.delete()
        types = collections.Counter(q["type"] for q in list_queues(cluster.rabbit.nodes[1].nodename)
                                    if q["durable"] and not q["exclusive"] and not q["auto_delete"])
    finally:
        cluster.stop()
    return shoppers, faults, report, rate, types


def single_run(args):
    home = REPO / ".stack" / "chaos-single"
    shutil.rmtree(home, ignore_errors=True)
    stack = Stack(home, env={**CHAOS_ENV, "LOG_LEVEL": "WARNING"})
    stack.start()
    try:
        for name in list(stack.services):  # as many processes as the cluster runs: two of each
            stack.add_replica(name)
        gateways = [p.url for p in stack._all_processes() if p.name == "gateway"]
        _, shoppers = shoppers_for(stack, gateways, args.clients)
        t0 = time.monotonic()
        shoppers.start()
        try:
            time.sleep(args.warmup)
            return throughput(shoppers, t0 + 5, time.monotonic())
        finally:
            shoppers.stop()
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.chaos_cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--warmup", type=float, default=45, help="seconds of load before the first fault")
    parser.add_argument("--gap", type=float, default=40, help="seconds between faults")
    parser.add_argument("--tail", type=float, default=30, help="seconds of load after the last fault")
    parser.add_argument("--single", action="store_true", help="also measure a single-node stack, no faults")
    parser.add_argument("--single-only", action="store_true", help="only the single-node measurement")
    args = parser.parse_args(argv)
    header = f"throughput without faults, {args.clients} clients (2xx answers/s, place + pay):"
    if args.single_only:
        print(f"{header}\n  single node (1 RabbitMQ, 1 mongod, 2 of each service): {single_run(args):.1f}")
        return 0

    shoppers, faults, report, cluster_rate, types = cluster_run(args)
    single_rate = single_run(args) if args.single else None
    print(f"\n{'fault':32} {'s with errors':>13} {'failed':>6} {'last at':>8}  answers by status")
    for (name, at, _), (_, until, _) in zip(faults, faults[1:]):
        seconds, failed, last, by_status = window(shoppers.answers, at, until)
        print(f"{name:32} {seconds:>11} s {failed:>6} {last:>6.1f} s  {dict(sorted(by_status.items()))}")
    seconds, failed, last, by_status = window(shoppers.answers, faults[-2][1] + SETTLE, faults[-1][1])
    print(f"{f'from {SETTLE:g} s after the last fault':32} {seconds:>11} s {failed:>6} {last:>6.1f} s  "
          f"{dict(sorted(by_status.items()))}")
    print(f"\ndurable queues on the broker by type: {dict(types)}\n")
    print(render(report))
    print(f"\n{header}\n  cluster (3 RabbitMQ nodes, 3 mongod, 2 of each service): {cluster_rate:.1f}")
    if single_rate is not None:
        print(f"  single node (1 RabbitMQ, 1 mongod, 2 of each service):   {single_rate:.1f}")
    return 1 if violations(report) else 0


if __name__ == "__main__":
    sys.exit(main())
