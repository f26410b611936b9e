"""Withdrawals and the commission endpoints over HTTP: atomic under concurrency, idempotent, failed payouts
return the money; the ledger pages; admins see anyone's ledger and the reconciliation."""
import concurrent.futures
import os
import subprocess
import sys

import requests

from tests.commission import bus as ev
from tests.commission.bus import Story, uid
from tests.flows import expect
from tools.stack import REPO


def give_withdrawable(send, books, user_id, fen):
    """`fen` settled commission for `user_id`: an order through their share, completed, window already over."""
    code = uid("sc")
    send(ev.share_created(code, user_id))
    story = Story(uid("usr"), share_code=code, lines=[ev.line(fen * 10, level1_bp=1000)])
    send(story.paid(), story.completed(after_sales_in=-10))
    return books.wait_summary(user_id, timeout=15, withdrawable_fen=fen)


def test_50_concurrent_withdrawals_of_100_against_1000_pay_exactly_10(api, send, books):
    user = api.register_user()
    give_withdrawable(send, books, user["user_id"], 1000)
    url = api.base_url + "/commissions/withdrawals"

    def withdraw(_):
        with requests.Session() as session:
            session.trust_env = False
            response = session.post(url, json={"amount_fen": 100}, timeout=30,
                                    headers={"Authorization": f"Bearer {user['token']}"})
            return response.status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(withdraw, range(50)))
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 10 and statuses.count(409) == 40, results
    assert all(body["status"] == "completed" for status, body in results if status == 201)
    assert books.summary(user["user_id"]) == {"pending_fen": 0, "frozen_fen": 0, "withdrawable_fen": 0,
                                              "withdrawing_fen": 0, "withdrawn_fen": 1000}


def test_the_same_idempotency_key_withdraws_once(api, send, books, rpc):
    user = api.register_user()
    give_withdrawable(send, books, user["user_id"], 500)
    headers = {"Idempotency-Key": uid("key")}
    first = expect(api.post("/commissions/withdrawals", json={"amount_fen": 200}, token=user["token"],
                            headers=headers), 201)
    again = expect(api.post("/commissions/withdrawals", json={"amount_fen": 200}, token=user["token"],
                            headers=headers), 201)
    assert again["withdrawal_id"] == first["withdrawal_id"]
    # the service itself holds the key too (a retry that reaches it past the gateway)
    key = uid("key")
    direct = [rpc.commission.request_withdrawal(user["user_id"], {"amount_fen": 100}, key) for _ in range(2)]
    assert direct[0]["withdrawal_id"] == direct[1]["withdrawal_id"]
    assert books.summary(user["user_id"])["withdrawable_fen"] == 200
    assert books.summary(user["user_id"])["withdrawn_fen"] == 300


def test_a_failed_or_rejected_payout_returns_the_money(api, send, books, kombu_listener):
    listener = kombu_listener("commission.events", ["withdrawal.*"])
    user = api.register_user()
    give_withdrawable(send, books, user["user_id"], 1000)
    failed = expect(api.post("/commissions/withdrawals", json={"amount_fen": 113}, token=user["token"]), 201)
    rejected = expect(api.post("/commissions/withdrawals", json={"amount_fen": 214}, token=user["token"]), 201)
    assert (failed["status"], rejected["status"]) == ("failed", "failed")
    assert "provider error" in failed["reason"] and "rejected" in rejected["reason"]
    assert books.summary(user["user_id"])["withdrawable_fen"] == 1000
    event = listener.wait_for(lambda b: b["type"] == "withdrawal.failed" and b["subject"] == failed["withdrawal_id"])
    assert event["data"] == {"withdrawal_id": failed["withdrawal_id"], "user_id": user["user_id"], "amount_fen": 113,
                             "reason": failed["reason"]}
    listed = expect(api.get("/commissions/withdrawals", token=user["token"]), 200)["items"]
    assert [w["withdrawal_id"] for w in listed] == [rejected["withdrawal_id"], failed["withdrawal_id"]]


def test_too_small_or_too_large_a_withdrawal_is_refused(api, send, books):
    user = api.register_user()
    give_withdrawable(send, books, user["user_id"], 300)
    small = expect(api.post("/commissions/withdrawals", json={"amount_fen": 99}, token=user["token"]), 400)
    assert "amount_fen" in small["error"]["fields"]
    expect(api.post("/commissions/withdrawals", json={"amount_fen": 301}, token=user["token"]), 409)
    expect(api.post("/commissions/withdrawals", json={"amount_fen": "300"}, token=user["token"]), 400)
    assert books.summary(user["user_id"])["withdrawable_fen"] == 300


def test_the_ledger_pages_newest_first_and_shows_only_ones_own(api, send, books):
    user, other = api.register_user(), api.register_user()
    give_withdrawable(send, books, user["user_id"], 400)
    expect(api.post("/commissions/withdrawals", json={"amount_fen": 100}, token=user["token"]), 201)
    first = expect(api.get("/commissions/ledger?limit=3", token=user["token"]), 200)
    rest = expect(api.get(f"/commissions/ledger?limit=3&cursor={first['next_cursor']}", token=user["token"]), 200)
    entries = first["items"] + rest["items"]
    assert rest["next_cursor"] is None
    assert sorted(e["kind"] for e in entries) == ["accrual", "freeze", "settle", "withdrawal", "withdrawal_paid"]
    assert len({e["entry_id"] for e in entries}) == 5
    assert entries[0]["kind"] in ("withdrawal", "withdrawal_paid")  # newest first
    assert expect(api.get("/commissions/ledger", token=other["token"]), 200)["items"] == []
    expect(api.get("/commissions/ledger?cursor=garbage", token=user["token"]), 400)


def test_admins_see_a_users_ledger_and_a_clean_reconciliation(api, send, books):
    user = api.register_user()
    give_withdrawable(send, books, user["user_id"], 200)
    expect(api.get("/admin/commissions/reconciliation", token=user["token"]), 403)
    admin = api.admin_token()
    ledger = expect(api.get(f"/admin/commissions/users/{user['user_id']}/ledger", token=admin), 200)
    assert {e["kind"] for e in ledger["items"]} == {"accrual", "freeze", "settle"}
    summary = expect(api.get(f"/admin/commissions/users/{user['user_id']}/summary", token=admin), 200)
    assert summary["withdrawable_fen"] == 200
    report = expect(api.get("/admin/commissions/reconciliation", token=admin), 200)
    assert report["ok"] is True and report["differences"] == [] and report["ledger_entries"] >= 3


def make_reconcile(stack):
    """`make reconcile` as an operator runs it against this stack: (exit code, output)."""
    done = subprocess.run([sys.executable, "-m", "tools.reconcile"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "AMQP_URI": stack.amqp_uri})
    return done.returncode, done.stdout + done.stderr


def test_reconciliation_reports_a_balance_that_drifted_from_the_ledger(rpc, mongo, send, books, stack):
    user = uid("usr")
    give_withdrawable(send, books, user, 100)
    assert make_reconcile(stack)[0] == 0
    balances = mongo["quanzi_commission"]["balances"]
    balances.update_one({"_id": user}, {"$inc": {"withdrawable_fen": 7}})  # a bug or a hand edit
    try:
        report = rpc.commission.reconcile()
        assert not report["ok"]
        assert {"user_id": user, "bucket": "withdrawable", "ledger_fen": 100, "balance_fen": 107} in \
            report["differences"]
        assert reconciliation_gauge(stack) >= 7  # what the alert watches
        code, output = make_reconcile(stack)
        assert code == 1 and user in output and "DIFFERENCES" in output
    finally:
        balances.update_one({"_id": user}, {"$inc": {"withdrawable_fen": -7}})
    assert rpc.commission.reconcile()["ok"]
    assert reconciliation_gauge(stack) == 0


def reconciliation_gauge(stack):
    import requests
    text = requests.get(stack.services["commission"].url + "/metrics", timeout=5).text
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("quanzi_reconciliation_difference_fen ")))
