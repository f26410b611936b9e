"""The sandbox payout provider: stands in for a real one (WeChat Pay transfers, Alipay) in development and tests.

It keeps its own records (database `<prefix>payout_sandbox`, as a provider would on its side) and is
idempotent by withdrawal id, like a real provider's merchant order number: asking twice returns the first
outcome, so retrying a payout after a crash never pays twice.

Outcomes are decided by the amount, so tests can drive every path through the public API:
amounts ending in 13 fen fail (provider error), amounts ending in 14 fen are rejected (e.g. the payee's
account is not verified); everything else is paid.
"""
from nameko.extensions import DependencyProvider
from pymongo.errors import DuplicateKeyError

from kit.config import load_settings
from kit.mongo import connect
from kit.validation import utcnow

FAIL_SUFFIX, REJECT_SUFFIX = 13, 14


def sandbox_outcome(amount_fen):
    """(paid, reason)."""
    if amount_fen % 100 == FAIL_SUFFIX:
        return False, "payout failed: provider error (sandbox)"
    if amount_fen % 100 == REJECT_SUFFIX:
        return False, "payout rejected: payee account not verified (sandbox)"
    return True, None


class SandboxPayouts:
    def __init__(self, collection):
        self.payouts = collection

    def pay(self, withdrawal_id, user_id, amount_fen):
        """Pay out once per withdrawal id; returns (paid, reason)."""
        paid, reason = sandbox_outcome(amount_fen)
        try:
            self.payouts.insert_one({"_id": withdrawal_id, "user_id": user_id, "amount_fen": amount_fen,
                                     "paid": paid, "reason": reason, "at": utcnow()})
        except DuplicateKeyError:
            first = self.payouts.find_one({"_id": withdrawal_id})
            paid, reason = first["paid"], first["reason"]
        return paid, reason


class PayoutProvider(DependencyProvider):
    """Injects the payout provider (the sandbox: the only one this project ships)."""

    def setup(self):
        settings = load_settings()
        self.client = connect(settings.mongo_uri)
        self.provider = SandboxPayouts(self.client[f"{settings.mongo_db_prefix}payout_sandbox"]["payouts"])

    def stop(self):
        self.client.close()

    def get_dependency(self, worker_ctx):
        return self.provider
