"""`make reconcile`: ask the running stack's commission service to recompute every balance and commission from
the ledger, print the report, and exit 1 when anything differs (2 when the service cannot be reached).

Uses AMQP_URI (as printed by `make run`), else the `make run` broker's default address."""
import json
import re
import sys

from kombu import Connection

from kit.config import load_settings


def masked(uri):
    return re.sub(r"//[^@/]*@", "//***@", uri)


def fetch_report(amqp_uri, timeout=120):
    from nameko.standalone.rpc import ClusterRpcProxy  # imports eventlet: only when used
    with Connection(amqp_uri, connect_timeout=3) as connection:
        connection.ensure_connection(max_retries=1)  # fail fast when no broker runs there
    with ClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout) as rpc:
        return rpc.commission.reconcile()


def render(report):
    lines = [f"ledger entries: {report['ledger_entries']}, users: {report['users_checked']}, "
             f"commissions: {report['commissions_checked']}"]
    if report["ok"]:
        lines.append("OK: every balance and commission matches the ledger")
        return "\n".join(lines)
    lines.append(f"DIFFERENCES: {len(report['differences'])} balance(s), "
                 f"{len(report['commission_differences'])} commission(s) (first 100 of each)")
    lines += [json.dumps(d, ensure_ascii=False) for d in report["differences"]]
    lines += [json.dumps(d, ensure_ascii=False) for d in report["commission_differences"]]
    return "\n".join(lines)


def main():
    amqp_uri = load_settings().amqp_uri
    try:
        report = fetch_report(amqp_uri)
    except Exception as exc:
        print(f"reconcile: could not ask the commission service over {masked(amqp_uri)}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
