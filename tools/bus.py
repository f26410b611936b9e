"""Publishing events exactly as their producers do (used by the commission tests and bench): exchange
`<service>.events` (topic, durable), routing key = type, body = the CloudEvents envelope as JSON, persistent.

Used where a test must control delivery (the same envelope 3 times, a shuffled order, a burst while the
service is down) or build a situation the producers reach only slowly. `Story` builds one order's events."""
import re
import uuid
from datetime import datetime, timedelta, timezone

import kombu

from contracts import make_envelope, spec_for


def uid(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def iso(at):
    return at.isoformat()


def now():
    return datetime.now(timezone.utc)


class Bus:
    def __init__(self, amqp_uri):
        self.connection = kombu.Connection(amqp_uri, transport_options={"confirm_publish": True})
        self.producer = self.connection.Producer()
        self.exchanges = {}

    def envelope(self, event_type, data, subject=None):
        return make_envelope(event_type, data, subject=subject)

    def publish(self, event_type, data, subject=None):
        """Build and publish one event; returns its envelope (to deliver it again, or wait for it)."""
        envelope = self.envelope(event_type, data, subject)
        self.deliver(envelope)
        return envelope

    def deliver(self, envelope, times=1):
        exchange_name = spec_for(envelope["type"]).exchange
        exchange = self.exchanges.setdefault(exchange_name, kombu.Exchange(exchange_name, type="topic",
                                                                           durable=True, delivery_mode=2))
        for _ in range(times):
            self.producer.publish(envelope, exchange=exchange, routing_key=envelope["type"], serializer="json",
                                  delivery_mode=2, declare=[exchange], retry=True)

    def close(self):
        self.connection.release()


def consumed(mongo, envelope):
    """True once the commission service has applied this event (its dedupe marker is written in the same
    transaction as the effects)."""
    pattern = f":{re.escape(envelope['id'])}$"
    return mongo["quanzi_commission"]["processed_events"].count_documents({"_id": {"$regex": pattern}}) > 0


def line(goods_fen, level1_bp=1000, level2_bp=500, qty=1):
    return {"sku_id": uid("sku"), "product_id": uid("prd"), "qty": qty, "unit_price_fen": goods_fen // qty,
            "goods_fen": goods_fen, "level1_bp": level1_bp, "level2_bp": level2_bp}


class Story:
    """One order's events with consistent facts: `story.paid()`, `story.completed(...)`, ... return (type, data)."""

    def __init__(self, buyer_id, share_code=None, lines=None, created_at=None, group_id=None, order_id=None):
        self.order_id = order_id or uid("ord")
        self.lines = lines or [line(10_000)]
        goods = sum(item["goods_fen"] for item in self.lines)
        self.facts = {"order_id": self.order_id, "buyer_id": buyer_id, "merchant_id": uid("mch"), "status": "paid",
                      "lines": self.lines, "goods_fen": goods, "shipping_fen": 0, "discount_fen": 0,
                      "total_fen": goods, "share_code": share_code, "group_id": group_id,
                      "created_at": iso(created_at or now())}

    def _event(self, event_type, status, **extra):
        return event_type, {**self.facts, "status": status, **extra}

    def paid(self):
        return self._event("order.paid", "paid", trade_no=uid("trade"), paid_at=iso(now()))

    def completed(self, after_sales_in=8.0):
        """Completed now; the after-sales window closes `after_sales_in` seconds from now (may be negative)."""
        return self._event("order.completed", "completed", completed_at=iso(now()),
                           after_sales_until=iso(now() + timedelta(seconds=after_sales_in)))

    def cancelled(self, reason="buyer", refunded_fen=0):
        return self._event("order.cancelled", "cancelled", reason=reason, refunded_fen=refunded_fen)

    def refund_requested(self, refund_id, amount_fen):
        return self._event("order.refund_requested", "refund_requested", refund_id=refund_id, amount_fen=amount_fen,
                           reason="not as described")

    def refund_rejected(self, refund_id, amount_fen):
        return self._event("order.refund_rejected", "completed", refund_id=refund_id, amount_fen=amount_fen,
                           reason="used")

    def refunded(self, refund_id, amount_fen, refunded_total_fen, full=False):
        return self._event("order.refunded", "refunded" if full else "completed", refund_id=refund_id,
                           amount_fen=amount_fen, full=full, refunded_total_fen=refunded_total_fen, reason=None)


def share_created(share_code, sharer_id, product_id=None):
    return "share.created", {"share_code": share_code, "sharer_id": sharer_id, "product_id": product_id or uid("prd"),
                             "channel": "wechat", "created_at": iso(now())}


def share_clicked(share_code, sharer_id, viewer_id, clicked_at=None, product_id=None):
    return "share.clicked", {"share_code": share_code, "sharer_id": sharer_id, "product_id": product_id or uid("prd"),
                             "viewer_id": viewer_id, "clicked_at": iso(clicked_at or now())}


def user_joined(user_id, inviter_id=None):
    return "user.joined", {"user_id": user_id, "inviter_id": inviter_id, "joined_at": iso(now())}


def groupbuy_failed(group_id, order_ids, member_ids):
    return "groupbuy.failed", {"group_id": group_id, "product_id": uid("prd"), "sku_id": uid("sku"),
                               "leader_id": member_ids[0], "size": len(order_ids) + 1, "order_ids": order_ids,
                               "member_ids": member_ids, "failed_at": iso(now())}
