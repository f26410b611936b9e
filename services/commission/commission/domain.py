"""Commission rules: attribution, the two-level cap, amounts, and each commission's state machine.

Pure functions over plain dicts: no nameko, no pymongo, no I/O. The store reads what these need, calls them
inside one transaction and writes what they return (ledger entries, balance moves, events).

How out-of-order events converge: every order event only adds *facts* to the order's record (`absorb`:
paid, completed, refunds requested/closed, the largest refunded total, cancelled). Facts are monotonic and
order-independent (a set union, a max, a flag), so any arrival order of the same events gives the same facts.
After each event the commissions are brought in line with the facts (`plan`): accrue once paid and
attributed, reverse whatever the refunds and cancellations say is owed back, freeze once completed. The moves
are idempotent by their ledger key, so the final amounts depend on the facts only, never on arrival order.
(The history may differ: a refund seen before the freeze reverses from pending, after it from frozen.)

Attribution is decided once, when the payment is first known, from the shares, clicks and inviters recorded by
then. Those happen before the order by human action (share, open the link, buy), so their events are long
consumed in practice; a share code still unknown at that point counts as invalid and the binding applies.

Where the rates come from: each order line carries `level1_bp` / `level2_bp` captured by the orders service
when the order was made (from the catalog's product at that moment), and `goods_fen`, the goods actually
paid for that line after discounts, shipping excluded. A product whose rates change later does not change
the commission of orders already made.
"""
from datetime import datetime, timedelta

from kit import claims

ALLOWED_LEVELS = (1, 2)  # C1: depth 1 by default, 2 at most; never configurable beyond
BP = 10_000

# Balance buckets. A ledger entry moves `amount_fen` from one bucket to another (None: in from / out of
# the system), so summing entries per bucket gives every balance.
PENDING, FROZEN, WITHDRAWABLE, WITHDRAWING, WITHDRAWN = "pending", "frozen", "withdrawable", "withdrawing", "withdrawn"
BUCKETS = (PENDING, FROZEN, WITHDRAWABLE, WITHDRAWING, WITHDRAWN)

# Commission statuses (a commission = one beneficiary's share of one order at one level).
SETTLED, REVERSED = "settled", "reversed"
OPEN_STATUSES = (PENDING, FROZEN)


def parse_time(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def check_levels(max_levels):
    if max_levels not in ALLOWED_LEVELS:  # kit.config refuses this at start; never reached in a running service
        raise ValueError(f"commission depth {max_levels} is not allowed (C1)")


# --- attribution ----------------------------------------------------------------------------------------

def level1_earner(buyer_id, share_sharer_id, binding_sharer_id):
    """Who an order is attributed to: the sharer of its share code when valid and not the buyer's own, else
    the buyer's active binding, else nobody. Returns (user_id or None, "share_code" / "binding" / "none")."""
    if share_sharer_id and share_sharer_id != buyer_id:
        return share_sharer_id, "share_code"
    if binding_sharer_id and binding_sharer_id != buyer_id:
        return binding_sharer_id, "binding"
    return None, "none"


def binding_window(created_at, attribution_window_seconds):
    """Clicks in (created_at - window, created_at] are active bindings when the order is created."""
    return created_at - timedelta(seconds=attribution_window_seconds), created_at


class BatchReads:
    """What the order events of one batch read at once (CommissionStore._batch_reads): each order's record (None:
    not known yet) and the clicks of the batch's buyers in (since, until], the union of their attribution windows,
    newest first (clicks None: too many to read at once)."""

    def __init__(self, orders, clicks, buyers, since, until):
        self.orders, self.clicks, self.buyers = orders, clicks, set(buyers)
        self.since, self.until = since, until

    def covers(self, buyer_id, since, until):
        """Whether the clicks read answer for `buyer_id`'s window (since, until]."""
        return self.clicks is not None and buyer_id in self.buyers and self.since <= since and until <= self.until

    def active_binding(self, buyer_id, since, until):
        """The buyer's active binding, as the store's query finds it: the newest click in (since, until] on a
        share of someone else. (Stored click times are whole milliseconds, so these comparisons agree with
        MongoDB's, which drops the window's microseconds.)"""
        return next((click for click in self.clicks if click["viewer_id"] == buyer_id
                     and click["sharer_id"] != buyer_id and since < click["clicked_at"] <= until), None)


def capped_rates(level1_bp, level2_bp, max_total_bp):
    """C6 defence in depth: the catalog refuses rates above the cap where they are set; should an order still
    carry more, level 1 keeps what fits and level 2 gets the rest up to the cap."""
    level1 = min(level1_bp, max_total_bp)
    return level1, min(level2_bp, max_total_bp - level1)


def amounts_by_level(lines, max_total_bp):
    """C4 + C5: one order's lines only. Per line, goods actually paid × rate, floored to the fen."""
    totals = {1: 0, 2: 0}
    for line in lines:
        level1_bp, level2_bp = capped_rates(line["level1_bp"], line["level2_bp"], max_total_bp)
        totals[1] += line["goods_fen"] * level1_bp // BP
        totals[2] += line["goods_fen"] * level2_bp // BP
    return totals


def preview(prices, level1_bp, level2_bp, max_total_bp):
    """What a sharer would earn at level 1 per unit if a friend bought through their share: the same rule as a
    real order (capped rate, floored to the fen), for each price shown on a product page."""
    rate, _ = capped_rates(level1_bp, level2_bp, max_total_bp)
    return {"level1_bp": rate, "per_unit_fen": {key: price * rate // BP for key, price in prices.items()}}


def beneficiaries(order, level1_id, inviter_id, max_levels, max_total_bp):
    """[(level, user_id, amount_fen)] for a paid order: level 1 = the attributed sharer; level 2 = that
    sharer's inviter, only when max_levels is 2 and the inviter is not the buyer. Never a third level: the
    inviter's own inviter is not even looked up (C1). Zero amounts are left out."""
    check_levels(max_levels)
    if level1_id is None:
        return []
    amounts = amounts_by_level(order["lines"], max_total_bp)
    rows = [(1, level1_id, amounts[1])]
    if max_levels == 2 and inviter_id and inviter_id not in (order["buyer_id"], level1_id):
        rows.append((2, inviter_id, amounts[2]))
    return [row for row in rows if row[2] > 0]


def new_commission(order, level, user_id, amount_fen, now):
    return {"_id": f"{order['_id']}:{level}", "order_id": order["_id"], "beneficiary_id": user_id, "level": level,
            "accrued_fen": amount_fen, "reversed_fen": 0, "status": PENDING, "blocked": False,
            "settle_after": None, **claims.free(), "created_at": now}


def accrual_step(commission):
    return step("accrual", "", commission["accrued_fen"], None, PENDING, "commission.accrued")


# --- order facts ------------------------------------------------------------------------------------------

def absorb(order, event_type, data):
    """The order's record with what `event_type` tells about it. Order-independent: applying the same events
    in any order, any number of times, gives the same record."""
    order = dict(order)
    if "order_id" in data:  # every order.* event carries the order's facts
        lines = [{"product_id": line["product_id"], "sku_id": line["sku_id"], "goods_fen": line["goods_fen"],
                  "level1_bp": line["level1_bp"], "level2_bp": line["level2_bp"]} for line in data["lines"]]
        order.update(buyer_id=data["buyer_id"], created_at=parse_time(data["created_at"]),
                     share_code=data["share_code"], group_id=data["group_id"], lines=lines,
                     goods_fen=sum(line["goods_fen"] for line in lines))
    if event_type == "order.paid":
        order["paid"] = True
    elif event_type == "order.completed":
        order["completed"] = True
        order["after_sales_until"] = parse_time(data["after_sales_until"])
    elif event_type == "order.cancelled":
        order["cancelled"] = data["reason"]
    elif event_type == "groupbuy.failed":
        order["group_failed"] = True
    elif event_type == "order.refund_requested":
        order["refunds_requested"] = sorted(set(order.get("refunds_requested", [])) | {data["refund_id"]})
    elif event_type in ("order.refund_rejected", "order.refunded"):
        order["refunds_closed"] = sorted(set(order.get("refunds_closed", [])) | {data["refund_id"]})
        if event_type == "order.refunded":
            # every cause (buyer_request, group_failed, late_payment, dispute) reverses in proportion to what the
            # order's payment gave back; a late payment's refund leaves refunded_total_fen as it was, unless it
            # refunds a cancelled order, which never accrued anything
            order["refunded_total_fen"] = max(order.get("refunded_total_fen", 0), data["refunded_total_fen"])
            order["full_refund"] = order.get("full_refund", False) or data["full"]
            if data.get("cause") == "group_failed":
                order["group_failed"] = True
    return order


def open_refunds(order):
    """Refunds requested and not yet rejected or paid (a close seen before its request counts as closed)."""
    return sorted(set(order.get("refunds_requested", [])) - set(order.get("refunds_closed", [])))


def ready_to_attribute(order):
    return bool(order.get("paid")) and "lines" in order and "attribution" not in order


# --- the state machine ---------------------------------------------------------------------------------------

def step(kind, ref, amount_fen, source, target, event, **extra):
    """One ledger move: `amount_fen` from bucket `source` to bucket `target`, announced as `event`."""
    return {"kind": kind, "ref": ref, "amount_fen": amount_fen, "from": source, "to": target, "event": event,
            "extra": extra}


def reversal_target(accrued_fen, order):
    """(fen taken back in total, reason, ref) for a commission of `accrued_fen` given the order's facts.

    Cancellation, a failed group or a full refund take everything; partial refunds take the refunded share:
    the sharer keeps floor(accrued × goods kept / goods paid). `ref` names the cause so each distinct cause is
    one ledger entry (refunded totals only grow, so "refund:<total>" never repeats for a new amount)."""
    if order.get("group_failed") or order.get("cancelled") == "group_failed":
        return accrued_fen, "group_failed", "group_failed"
    if order.get("cancelled"):
        return accrued_fen, "cancelled", "cancelled"
    if order.get("full_refund"):
        return accrued_fen, "refund", "refund:full"
    goods = order.get("goods_fen", 0)
    refunded = min(order.get("refunded_total_fen", 0), goods)
    if refunded <= 0 or goods <= 0:
        return 0, None, None
    kept = accrued_fen * (goods - refunded) // goods
    return accrued_fen - kept, "refund", f"refund:{refunded}"


def plan(commission, order):
    """(steps, new commission fields) bringing one open commission in line with its order's facts.

    Reversal first (from wherever the money is now), then the freeze when the order completed. A settled or
    fully reversed commission is final: refunds after settlement cannot reach it (the after-sales window is
    over by then, see settle_margin)."""
    status, accrued, reversed_ = commission["status"], commission["accrued_fen"], commission["reversed_fen"]
    steps = []
    if status in OPEN_STATUSES:
        target, reason, ref = reversal_target(accrued, order)
        if target > reversed_:
            steps.append(step("reversal", ref, target - reversed_, status, None, "commission.reversed",
                              reason=reason))
            reversed_ = target
            if reversed_ >= accrued:
                status = REVERSED
        if status == PENDING and order.get("completed"):
            settle_after = order["after_sales_until"]
            steps.append(step("freeze", "", accrued - reversed_, PENDING, FROZEN, "commission.frozen",
                              settle_after=settle_after.isoformat()))
            status = FROZEN
    fields = {"status": status, "reversed_fen": reversed_, "blocked": bool(open_refunds(order)),
              "settle_after": order.get("after_sales_until") if status == FROZEN else commission.get("settle_after")}
    return steps, fields


def advance(order, commissions, event_type, data, attribute, now):
    """Everything one order event changes, decided without I/O.

    `attribute(order)` -> (attribution record, [(level, user_id, fen)]) is called once, when the order is
    first known to be paid. Returns (order, new commissions, {commission_id: changed fields} for existing
    ones, moves [(commission, step)] in the order they are to be written)."""
    order = absorb(order, event_type, data)
    new, moves = [], []
    if ready_to_attribute(order):
        order["attribution"], rows = attribute(order)
        for level, user_id, fen in rows:
            commission = new_commission(order, level, user_id, fen, now)
            new.append(commission)
            moves.append((commission, accrual_step(commission)))
    changed = {}
    for commission in [*commissions, *new]:
        steps, fields = plan(commission, order)
        moves += [(commission, move) for move in steps]
        if any(commission.get(key) != value for key, value in fields.items()):
            changed[commission["_id"]] = fields
    for commission in new:  # inserted once, in their final state
        commission.update(changed.pop(commission["_id"], {}))
    return order, new, changed, moves


def settle_margin(sweep_interval):
    """Settlement waits this long after the after-sales window closes, so a refund requested in its last
    second (still travelling as an event) is seen before the money becomes withdrawable."""
    return timedelta(seconds=2 * sweep_interval)


def settle_step(commission, order, now, margin):
    """The settle move when the commission may become withdrawable now, else None."""
    if commission["status"] != FROZEN or open_refunds(order):
        return None
    until = order.get("after_sales_until")
    if until is None or now < until + margin:
        return None
    return step("settle", "", commission["accrued_fen"] - commission["reversed_fen"], FROZEN, WITHDRAWABLE,
                "commission.settled")


# --- withdrawals ------------------------------------------------------------------------------------------

def withdrawal_step(kind, withdrawal):
    """requested: withdrawable → withdrawing; paid: withdrawing → withdrawn; returned: back to withdrawable."""
    source, target, event = {
        "withdrawal": (WITHDRAWABLE, WITHDRAWING, "withdrawal.requested"),
        "withdrawal_paid": (WITHDRAWING, WITHDRAWN, "withdrawal.completed"),
        "withdrawal_returned": (WITHDRAWING, WITHDRAWABLE, "withdrawal.failed"),
    }[kind]
    return step(kind, withdrawal["_id"], withdrawal["amount_fen"], source, target, event)


# --- read models ----------------------------------------------------------------------------------------------

def balance_view(balance):
    balance = balance or {}
    return {f"{bucket}_fen": balance.get(f"{bucket}_fen", 0) for bucket in BUCKETS}


def ledger_view(entry, status):
    return {"entry_id": entry["_id"], "order_id": entry["order_id"], "withdrawal_id": entry.get("withdrawal_id"),
            "level": entry["level"], "kind": entry["kind"], "amount_fen": entry["amount_fen"],
            "from": entry["from"], "to": entry["to"], "status": status, "at": entry["at"].isoformat()}


def withdrawal_view(withdrawal):
    return {"withdrawal_id": withdrawal["_id"], "amount_fen": withdrawal["amount_fen"],
            "status": withdrawal["status"], "reason": withdrawal.get("reason"),
            "created_at": withdrawal["created_at"].isoformat()}


def ledger_balances(sums):
    """Balances implied by the ledger: sums = [(user_id, bucket moved into or out of, signed fen)]."""
    balances = {}
    for user_id, bucket, fen in sums:
        if bucket is not None:
            per_user = balances.setdefault(user_id, {b: 0 for b in BUCKETS})
            per_user[bucket] += fen
    return balances


def difference_fen(balance_differences_, commission_differences_):
    """One number for monitoring: how many fen, in absolute value, the stored state is off from the ledger."""
    total = sum(abs(d["ledger_fen"] - d["balance_fen"]) for d in balance_differences_)
    return total + sum(abs(d["stored"] - d["ledger"]) for d in commission_differences_)


def balance_differences(from_ledger, stored):
    """[{user_id, bucket, ledger_fen, balance_fen}] wherever the stored balance disagrees with the ledger, or a
    balance is negative."""
    differences = []
    for user_id in sorted(set(from_ledger) | set(stored)):
        expected = from_ledger.get(user_id, {b: 0 for b in BUCKETS})
        actual = balance_view(stored.get(user_id))
        for bucket in BUCKETS:
            ledger_fen, balance_fen = expected[bucket], actual[f"{bucket}_fen"]
            if ledger_fen != balance_fen or balance_fen < 0:
                differences.append({"user_id": user_id, "bucket": bucket, "ledger_fen": ledger_fen,
                                    "balance_fen": balance_fen})
    return differences


def commission_differences(commissions, ledger_sums):
    """[{commission_id, field, stored, ledger}] where a commission disagrees with its ledger entries
    (ledger_sums: {commission_id: {kind: fen}}), including entries of a commission that does not exist."""
    differences = []
    for commission in commissions:
        sums = ledger_sums.get(commission["_id"], {})
        kept = commission["accrued_fen"] - commission["reversed_fen"]
        checks = [("accrued_fen", commission["accrued_fen"], sums.get("accrual", 0)),
                  ("reversed_fen", commission["reversed_fen"], sums.get("reversal", 0)),
                  ("settled_fen", kept if commission["status"] == SETTLED else 0, sums.get("settle", 0))]
        differences += [{"commission_id": commission["_id"], "field": field, "stored": stored, "ledger": ledger}
                        for field, stored, ledger in checks if stored != ledger]
    known = {c["_id"] for c in commissions}
    differences += [{"commission_id": key, "field": "exists", "stored": 0, "ledger": sum(sums.values())}
                    for key, sums in ledger_sums.items() if key not in known]
    return differences
