"""The sandbox payment provider: a stand-in for Alipay / WeChat Pay, run inside the orders service.

It keeps its own books in a database of its own (`<prefix>sandbox_pay`, as a real provider would: the orders
service never reads them). A payment always succeeds. The shop asks how a trade went right after making it
(`trade`, the answer to a trade query, as shops query Alipay / WeChat Pay when the buyer returns from paying), and
the provider also tells the shop the way real providers do: a POST of a JSON body to the shop's public notify URL
(`PAYMENT_NOTIFY_URL`, default the local gateway's /api/v1/payments/notify), signed with HMAC-SHA256 over the raw
body (`PAYMENT_HMAC_SECRET`) in the `X-Quanzi-Signature` header. A notification not acknowledged with a 2xx is
sent again later with backoff (`redeliver_due`, driven by the orders service's sweep), so a crash or an outage
delays a payment, never loses it.
Refunds are synchronous and idempotent by the shop's refund id: asking twice returns the first refund."""
import json
import logging
import secrets
import socket
import ssl
from datetime import timedelta
from urllib.parse import urlsplit

import eventlet
import httptools
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.payment import SIGNATURE_HEADER, sign
from kit import claims
from kit.config import load_settings
from kit.durability import APPLIED, DURABLE
from kit.mongo import connect
from kit.validation import as_stored, utcnow

log = logging.getLogger(__name__)

NOTIFY_TIMEOUT = 5.0
READ_SIZE = 16 * 1024
NOTIFY_CONNECTIONS = 64  # kept alive: above the notifications a replica has in flight (one per pay of a batch)
MAX_ATTEMPTS = 12
CLAIM_LEASE = timedelta(seconds=30)
# a new payment is held by the call that creates it while that call sends its first notification (at most
# NOTIFY_TIMEOUT, then it is marked or rescheduled): the sweep must not send the same notification beside it
FIRST_NOTICE_LEASE = timedelta(seconds=2 * NOTIFY_TIMEOUT)


def in_background(fn, *args):
    """Run fn(*args) in a greenthread of its own, nobody waiting on it (a seam: a test runs it by hand, or never,
    as a crash would)."""
    eventlet.spawn_n(fn, *args)


def _acknowledged(status):
    return status is not None and 200 <= status < 300


class _Answer:
    """One answer, parsed by httptools: its status, and whether the connection stays open after it (which the
    parser knows only until the answer is complete)."""
    __slots__ = ("parser", "complete", "status", "keep_alive")

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.complete = False

    def on_message_complete(self):
        self.complete = True
        self.status, self.keep_alive = self.parser.get_status_code(), self.parser.should_keep_alive()
        self.parser = None  # the parser holds this answer: a cycle per notification left to the garbage collector


class NotifyClient:
    """POSTs to the shop's notify URL over kept-alive connections, one per request in flight. A notification is a
    small POST to one URL, so the request is written whole here and the answer parsed by httptools (llhttp):
    `requests` cost as much CPU per notification as applying the payment, and http.client's answer parsing (the
    stdlib's email parser) was most of what remained. A kept-alive connection the shop closed meanwhile (a restart,
    its idle timeout) is replaced once; a notification is idempotent by its trade_no, so sending it twice does no
    harm. A timeout is not retried here: the provider's backoff sends it again later."""

    def __init__(self, url, timeout=NOTIFY_TIMEOUT, keep=NOTIFY_CONNECTIONS):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._address = (parts.hostname, parts.port or (443 if self._tls else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._request_line = f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode("latin-1")
        self.timeout, self.keep = timeout, keep
        self._idle = []

    def post(self, body, headers):
        """The shop's HTTP status; OSError or httptools.HttpParserError when it could not be delivered."""
        if self._idle:
            try:
                return self._exchange(self._idle.pop(), body, headers)
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                pass  # the shop closed this kept-alive connection meanwhile: once more, on a new one
        return self._exchange(self._connect(), body, headers)

    def _connect(self):
        sock = socket.create_connection(self._address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._tls.wrap_socket(sock, server_hostname=self._address[0]) if self._tls else sock

    def _exchange(self, sock, body, headers):
        head = [self._request_line, b"Content-Length: %d\r\n" % len(body)]
        head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()]
        answer = _Answer()
        try:
            sock.sendall(b"".join(head) + b"\r\n" + body)
            while not answer.complete:
                data = sock.recv(READ_SIZE)
                if not data:
                    raise ConnectionResetError("the shop closed the connection without answering")
                answer.parser.feed_data(data)
        except BaseException:
            sock.close()
            raise
        if not answer.keep_alive or len(self._idle) >= self.keep:
            sock.close()
        else:
            self._idle.append(sock)
        return answer.status

    def close(self):
        while self._idle:
            self._idle.pop().close()


class SandboxProvider:
    def __init__(self, db, secret, notify_url):
        # A payment is DURABLE before the shop hears of it (kit.durability). A notification the shop acknowledged
        # is recorded APPLIED: one whose record was lost is sent again, and answered as a repeat.
        self.payments = db["payments"].with_options(write_concern=DURABLE)
        self.notified_marks = self.payments.with_options(write_concern=APPLIED)
        self.refunds = db["refunds"]
        self.secret = secret
        self.notify_url = notify_url
        self.http = NotifyClient(notify_url)

    def ensure_indexes(self):
        claims.migrate(self.payments)
        self.payments.create_indexes([IndexModel([("order_id", ASCENDING)], unique=True),
                                      IndexModel([("status", ASCENDING), ("notify_due_at", ASCENDING)])])
        self.refunds.create_index([("trade_no", ASCENDING)])

    # -- payments ------------------------------------------------------------------------------------------
    @staticmethod
    def _new_payment(amount_fen, now):
        """The fields of a payment made now (written only if the order has none yet). Its creator
        holds it while it sends the first notification; if that creator dies first, the sweep sends it once the
        hold ends."""
        return {"_id": f"sbx{now:%Y%m%d}{secrets.token_hex(10)}", "amount_fen": amount_fen, "status": "created",
                "attempts": 0, "created_at": now, "notify_due_at": now, **claims.held(now, FIRST_NOTICE_LEASE)}

    def create_payments(self, orders):
        """The one payment of each order [(order_id, amount_fen)] (asking again returns it: a buyer who taps
        "pay" twice pays once): one insert of the new ones; only the orders that had one already (a tap again, a
        concurrent "pay") cost a read. {order_id: payment}."""
        now = as_stored(utcnow())  # a notification sent from these documents says what one sent later says
        made = [{**self._new_payment(amount_fen, now), "order_id": order_id} for order_id, amount_fen in orders]
        existing = []
        try:
            self.payments.insert_many(made, ordered=False)
        except BulkWriteError as exc:  # the order's one payment exists (order_id is unique): it is read below
            if any(error["code"] != 11000 for error in exc.details["writeErrors"]):
                raise
            existing = [made[error["index"]]["order_id"] for error in exc.details["writeErrors"]]
        payments = {payment["order_id"]: payment for payment in made}
        if existing:
            payments.update((payment["order_id"], payment)
                            for payment in self.payments.find({"order_id": {"$in": existing}}))
        return payments

    @staticmethod
    def trade(payment):
        """What the provider says of `payment`, asked (a shop's query of its trade, answered at once) or in its
        notification: the sandbox's payments always succeed."""
        return {"trade_no": payment["_id"], "order_id": payment["order_id"], "amount_fen": payment["amount_fen"],
                "status": "success", "paid_at": payment["created_at"].isoformat()}

    def notification(self, payment):
        """(raw body, signature) of the notification for `payment`."""
        body = json.dumps(self.trade(payment), separators=(",", ":")).encode()
        return body, sign(body, self.secret)

    def notify(self, payment):
        """POST the signed notification; True once the shop acknowledged it (2xx)."""
        return self.notify_all([payment]) == 1

    def notify_all(self, payments):
        """POST the signed notification of each payment, at once (each its own request, as a provider sends
        them), then record what the shop answered: the acknowledged ones marked in one write, the others sent
        again later, with backoff. Returns how many the shop acknowledged (2xx)."""
        statuses = list(eventlet.GreenPool(len(payments)).imap(self._post, payments)) if payments else []
        acknowledged = [payment["_id"] for payment, status in zip(payments, statuses) if _acknowledged(status)]
        if acknowledged:
            self.notified_marks.update_many({"_id": {"$in": acknowledged}},
                                            {"$set": {"status": "notified", "notified_at": utcnow()}})
        for payment, status in zip(payments, statuses):
            if not _acknowledged(status):
                self._not_acknowledged(payment, status)
        return len(acknowledged)

    def notify_later(self, payments):
        """notify_all in a greenthread of its own, nobody waiting on it: the notifications of payments whose
        shop asked for them already (`trade`). Until each is recorded, its hold (FIRST_NOTICE_LEASE) keeps the
        sweep from sending it beside this; one lost to a crash or a failed write is sent by the sweep once its
        hold ends, and the shop answers it as a repeat (idempotent by trade_no)."""
        in_background(self._notify_all_or_log, payments)

    def _notify_all_or_log(self, payments):
        try:
            self.notify_all(payments)
        except Exception as exc:  # noqa: BLE001 - nobody waits on it: the hold's end sends them again
            log.warning("%d notifications not sent or not recorded (%s): each is sent again once its hold ends",
                        len(payments), type(exc).__name__)

    def _post(self, payment):
        """The shop's HTTP status for the notification of `payment`, None when it could not be delivered."""
        body, signature = self.notification(payment)
        try:
            return self.http.post(body, {"Content-Type": "application/json", SIGNATURE_HEADER: signature})
        except (OSError, httptools.HttpParserError) as exc:
            log.warning("payment %s: notification not delivered (%s)", payment["_id"], type(exc).__name__)
            return None

    def _not_acknowledged(self, payment, status):
        """Schedule the next attempt with backoff, or stop for good; the hold of whoever sent this one ends, so
        the backoff alone decides when the sweep sends it again."""
        attempts = payment.get("attempts", 0) + 1
        # 4xx: the shop refused this notification for good (amount mismatch, unknown order): stop sending it.
        final = (status is not None and 400 <= status < 500 and status != 429) or attempts >= MAX_ATTEMPTS
        self.payments.update_one({"_id": payment["_id"]}, {"$set": {
            "status": "refused" if final else "created", "attempts": attempts, "last_status": status,
            "notify_due_at": utcnow() + timedelta(seconds=min(2 ** attempts, 60)), **claims.free()}})
        if final:
            log.warning("payment %s: the shop refused its notification (HTTP %s)", payment["_id"], status)

    def redeliver_due(self, limit=100):
        """Send again the notifications that were not acknowledged, one claimed payment at a time."""
        sent = 0
        for _ in range(limit):
            now = utcnow()
            payment = claims.next_due(self.payments, {"status": "created", "notify_due_at": {"$lte": now}},
                                      now, CLAIM_LEASE)
            if payment is None:
                break
            sent += self.notify(payment)
        return sent

    # -- refunds -------------------------------------------------------------------------------------------
    def refund(self, refund_id, trade_no, amount_fen):
        """Return `amount_fen` of payment `trade_no` to the payer, once per `refund_id`."""
        record = {"_id": refund_id, "trade_no": trade_no, "amount_fen": amount_fen, "created_at": utcnow()}
        try:
            self.refunds.insert_one(record)
        except DuplicateKeyError:
            return self.refunds.find_one({"_id": refund_id})
        return record


class SandboxPay(DependencyProvider):
    """Injects the SandboxProvider (its own MongoClient and database)."""

    def setup(self):
        settings = load_settings()
        self.client = connect(settings.mongo_uri)
        self.provider = SandboxProvider(self.client[f"{settings.mongo_db_prefix}sandbox_pay"],
                                        settings.payment_hmac_secret, settings.payment_notify_url)
        self.provider.ensure_indexes()

    def stop(self):
        self.provider.http.close()
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.provider
