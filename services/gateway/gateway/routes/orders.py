"""Orders, payments, after-sales, group buys (拼团) and reviews. Who may see or act on an order is decided by the
orders service (buyer, the order's merchant, admin); the routes pass the signed-in user along."""

from contracts.api.catalog import ReplyInput, ReviewInput, ReviewPage
from contracts.api.orders import (DisputeDecision, DisputeQuery, EscalateInput, GroupJoinInput, GroupOpenInput,
                                  OrderInput, OrderQuery, PaymentNotification, RefundInput, RejectInput, ShipInput)
from contracts.payment import SIGNATURE_HEADER, signature_ok
from gateway import schemas_orders as views
from gateway.cache import PageParts, ProductCache
from gateway.errors import Unauthorized
from gateway.http import api, json_response
from gateway.rpc import call
from kit.amqp import RpcProxy
from kit.batching import GroupCommit
from kit.errors import outcome_or_error


def in_one_call(method):
    """A GroupCommit's write_batch: the requests that arrived together, sent with one call of the orders
    service's batch `method` (through the proxy of the batch's first request): one message each way per batch
    instead of per request. One outcome each: its answer, or the error its request answers."""
    def write_batch(batch):
        answers = call(getattr(batch[0][0], method), [payload for _, payload in batch])
        return [outcome_or_error(answer) for answer in answers]
    return write_batch


# this process's requests arriving while others of their kind are in flight. Orders and pays: a batch mostly waits
# on other services, so a second batch starts beside it once as many wait (overlap; measured: +25% orders/s, +17%
# pays/s at the same CPU per request; notifications' batches only shrank with it)
ORDER_BATCHES = GroupCommit(in_one_call("create_orders"), name="gateway.orders", overlap=4)  # POST /orders
PAY_BATCHES = GroupCommit(in_one_call("pay_many"), name="gateway.pays", overlap=4)  # POST /orders/{id}/pay
# POST /payments/notify: a provider's notifications come in bursts (the sandbox's for a batch of pays at once), so
# the first from idle waits a few milliseconds for the rest: one call for the burst, not one for the first and a
# few for the others
NOTIFY_BATCHES = GroupCommit(in_one_call("payments_notified"), name="gateway.notifications", linger=0.005)


def viewer(c):
    return {"user_id": c.user_id, "is_admin": c.is_admin}


class OrderRoutes:
    orders = RpcProxy("orders")
    catalog = RpcProxy("catalog")
    social_feed = RpcProxy("social_feed")
    products = ProductCache()  # the product pages this replica keeps (CatalogRoutes), which show open groups
    page_parts = PageParts()

    # -- orders ---------------------------------------------------------------------------------------------
    @api("POST", "/orders", body=OrderInput, response=views.OrderView, status=201, tags=["orders"],
         errors=[404, 409, 422], idempotency="service", worker=False,
         summary="Place an order (stock reserved now, price captured). Header Idempotency-Key: the same key "
                 "from the same user returns the same order (Idempotent-Replayed: true), as it is now; with "
                 "another body, 422. The orders service keeps the key, unique with the order it made")
    def create_order(self, c):
        order = {"buyer_id": c.user_id, "payload": c.body, "idempotency_key": c.idempotency_key,
                 "request_id": c.request_id}
        placed = ORDER_BATCHES.submit((self.orders, order),
                                      alone=lambda: call(self.orders.create_order, c.user_id, c.body,
                                                         c.idempotency_key))
        if placed.pop("replayed", False):
            return json_response(201, placed, {"Idempotent-Replayed": "true"})
        return placed

    @api("GET", "/orders", query=OrderQuery, response=views.OrderPage, tags=["orders"], errors=[403, 404],
         summary="Your purchases, newest first; with merchant_id, that merchant's orders (its owner or an admin)")
    def list_orders(self, c):
        return call(self.orders.list_orders, viewer(c), c.query)

    @api("GET", "/orders/<order_id>", response=views.OrderView, tags=["orders"], errors=[404],
         summary="One order, to its buyer, its merchant or an admin (the address to the first two only)")
    def get_order(self, c):
        return call(self.orders.get_order, viewer(c), c.path["order_id"])

    @api("POST", "/orders/<order_id>/pay", response=views.OrderView, tags=["orders"], errors=[403, 404, 409],
         worker=False,
         summary="Pay through the sandbox provider; answers with the order paid (the provider's notification "
                 "follows and is answered as a repeat)")
    def pay(self, c):
        pay = {"viewer": viewer(c), "order_id": c.path["order_id"]}
        return PAY_BATCHES.submit((self.orders, pay),
                                  alone=lambda: call(self.orders.pay, pay["viewer"], pay["order_id"]))

    @api("POST", "/orders/<order_id>/cancel", response=views.OrderView, tags=["orders"], errors=[403, 404, 409],
         summary="Cancel an unpaid order (the buyer); its stock goes back")
    def cancel(self, c):
        return call(self.orders.cancel, viewer(c), c.path["order_id"])

    @api("POST", "/orders/<order_id>/ship", body=ShipInput, response=views.OrderView, tags=["orders"],
         errors=[403, 404, 409], summary="Ship a paid order (its merchant); a group order only once the group formed")
    def ship(self, c):
        return call(self.orders.ship, viewer(c), c.path["order_id"], c.body)

    @api("POST", "/orders/<order_id>/confirm-receipt", response=views.OrderView, tags=["orders"],
         errors=[403, 404, 409], summary="Confirm receipt (the buyer): the order is completed")
    def confirm_receipt(self, c):
        return call(self.orders.confirm_receipt, viewer(c), c.path["order_id"])

    # -- payments -----------------------------------------------------------------------------------------
    @api("POST", "/payments/notify", auth=None, body=PaymentNotification, response=views.PaymentAck,
         tags=["payments"], errors=[401, 404, 422], worker=False,
         summary="The payment provider's callback, signed: X-Quanzi-Signature = hex HMAC-SHA256 of the raw body. "
                 "Idempotent per trade_no; a payment for a cancelled order is refunded; a wrong amount is refused")
    def payment_notify(self, c):
        if not signature_ok(c.request.get_data(cache=True), c.request.headers.get(SIGNATURE_HEADER),
                            self.config.payment_hmac_secret):
            raise Unauthorized("bad or missing payment signature")
        return NOTIFY_BATCHES.submit((self.orders, c.body), alone=lambda: call(self.orders.payment_notified, c.body))

    # -- after-sales -----------------------------------------------------------------------------------------
    @api("POST", "/orders/<order_id>/refunds", body=RefundInput, response=views.RefundView, status=201,
         tags=["after-sales"], errors=[403, 404, 409, 422],
         summary="Ask for a refund (the buyer): the whole order at once before shipping; after that up to the goods "
                 "paid, for the merchant to decide (with return_goods: the goods go back first), until the "
                 "after-sales window closes (422). Unanswered for REFUND_RESPONSE_WINDOW, it is approved")
    def request_refund(self, c):
        return call(self.orders.request_refund, viewer(c), c.path["order_id"], c.body)

    @api("POST", "/refunds/<refund_id>/approve", audit="refund.approve", response=views.RefundView, tags=["after-sales"],
         errors=[403, 404, 409], summary="Approve a refund (the order's merchant): the money goes back, or, for a "
                                         "return with goods, the buyer sends them back first")
    def approve_refund(self, c):
        return call(self.orders.approve_refund, viewer(c), c.path["refund_id"])

    @api("POST", "/refunds/<refund_id>/reject", audit="refund.reject", body=RejectInput, response=views.RefundView, tags=["after-sales"],
         errors=[403, 404, 409], summary="Reject a refund with a reason (the order's merchant)")
    def reject_refund(self, c):
        return call(self.orders.reject_refund, viewer(c), c.path["refund_id"], c.body)

    @api("POST", "/refunds/<refund_id>/return-shipment", body=ShipInput, response=views.RefundView,
         tags=["after-sales"], errors=[403, 404, 409],
         summary="The goods of an approved return are on their way back (the buyer), with the tracking number")
    def return_shipment(self, c):
        return call(self.orders.return_shipment, viewer(c), c.path["refund_id"], c.body)

    @api("POST", "/refunds/<refund_id>/confirm-return", audit="refund.confirm_return", response=views.RefundView, tags=["after-sales"],
         errors=[403, 404, 409], summary="The returned goods arrived (the order's merchant): the money goes back")
    def confirm_return(self, c):
        return call(self.orders.confirm_return, viewer(c), c.path["refund_id"])

    @api("POST", "/refunds/<refund_id>/escalate", body=EscalateInput, response=views.DisputeView, status=201,
         tags=["after-sales"], errors=[403, 404, 409, 422],
         summary="Escalate a rejected refund to the platform (the buyer, once, within the after-sales window of a "
                 "completed order: else 422): opens a dispute for an admin")
    def escalate_refund(self, c):
        return call(self.orders.escalate_refund, viewer(c), c.path["refund_id"], c.body)

    @api("GET", "/admin/disputes", auth="admin", query=DisputeQuery, response=views.DisputePage, tags=["admin"],
         summary="The dispute queue, newest first (status=open by default; decided; all)")
    def list_disputes(self, c):
        return call(self.orders.list_disputes, viewer(c), c.query)

    @api("POST", "/admin/disputes/<dispute_id>/decide", auth="admin", audit="dispute.decide", body=DisputeDecision,
         response=views.DisputeView, tags=["admin"], errors=[404, 409],
         summary="Decide a dispute, finally: refund (all, or amount_fen of it) or reject, with a reason; who, why "
                 "and when are recorded")
    def decide_dispute(self, c):
        return call(self.orders.decide_dispute, viewer(c), c.path["dispute_id"], c.body)

    # -- group buys ------------------------------------------------------------------------------------------
    @api("POST", "/group-buys", body=GroupOpenInput, response=views.GroupOpened, status=201, tags=["group-buys"],
         errors=[404, 409], summary="Open a group buy: your order at the group price holds the first seat")
    def open_group(self, c):
        return self.groups_changed(call(self.orders.open_group, c.user_id, c.body, c.idempotency_key))

    @api("POST", "/group-buys/<group_id>/join", body=GroupJoinInput, response=views.OrderView, status=201,
         tags=["group-buys"], errors=[404, 409],
         summary="Join a group buy: 409 when it is full, closed, or you already hold a seat (or lead it)")
    def join_group(self, c):
        return self.groups_changed(call(self.orders.join_group, c.user_id, c.path["group_id"], c.body,
                                        c.idempotency_key))

    def groups_changed(self, order):
        """A group opened or a seat taken through this replica: its product pages show it from the next request
        on (the leader shares the group at once, and a friend's share page must offer to join it, not to open
        another). Other replicas show it once their open groups expire (PageParts, 2 s)."""
        for product_id in {line["product_id"] for line in order["lines"]}:
            self.page_parts["groups"].drop(product_id)
            self.products.drop_page(product_id)
        return order

    @api("GET", "/group-buys/<group_id>", auth="optional", response=views.GroupBuyView, tags=["group-buys"],
         errors=[404], summary="A group buy: open, formed or failed, its seats and when it closes")
    def get_group(self, c):
        return call(self.orders.get_group, c.path["group_id"])

    # -- reviews -----------------------------------------------------------------------------------------------
    @api("POST", "/products/<product_id>/reviews", body=ReviewInput, response=views.ReviewView, status=201,
         tags=["products"], errors=[403, 404, 409],
         summary="Review a product of your completed order, once per product (rating 1-5)")
    def post_review(self, c):
        review = call(self.catalog.post_review, c.user_id, c.path["product_id"], c.body, self._nickname(c.user_id))
        self.products.drop(c.path["product_id"])  # the rating changed
        return review

    def _nickname(self, user_id):
        """The reviewer's nickname, kept with the review (social-feed owns profiles): reading reviews then costs
        the catalog one query, never a call per reviewer. Without social-feed the review is posted unnamed."""
        try:
            return call(self.social_feed.get_profile, user_id, user_id, timeout=2.0).get("nickname")
        except Exception:
            return None

    @api("GET", "/products/<product_id>/reviews", auth="optional", query=ReviewPage,
         response=views.PublicReviewPage, tags=["products"], errors=[404],
         summary="A product's reviews, newest first, with the reviewer's nickname and the merchant's reply")
    def list_reviews(self, c):
        return call(self.catalog.list_reviews, c.path["product_id"], c.query)

    @api("POST", "/reviews/<review_id>/reply", audit="review.reply", body=ReplyInput, response=views.ReviewView, tags=["products"],
         errors=[403, 404, 409], summary="Reply to a review of your product (its merchant), once: 409 after that")
    def reply_to_review(self, c):
        return call(self.catalog.reply_to_review, c.user_id, c.path["review_id"], c.body)
