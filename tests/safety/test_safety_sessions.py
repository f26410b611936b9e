"""Account protection: password guessing throttled per phone (whatever the IP or the replica), and tokens that
end at once on every gateway replica (logout, password change, suspension)."""
import concurrent.futures
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.flows import expect
from tests.helpers import eventually


class SourceAddressAdapter(HTTPAdapter):
    """Connects from another loopback address (127.0.0.x): the gateway sees another client IP."""

    def __init__(self, source_ip, **kwargs):
        self.source_ip = source_ip
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


def client_from(ip):
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", SourceAddressAdapter(ip))
    return session


@pytest.fixture(scope="module")
def second_gateway(stack):
    replica = stack.add_replica("gateway")
    yield f"http://127.0.0.1:{replica.web_port}/api/v1"
    replica.stop()


def login(session, base, phone, password):
    return session.post(f"{base}/auth/login", json={"phone": phone, "password": password}, timeout=30)


def test_guessing_one_phone_from_many_ips_and_replicas_ends_in_429_with_a_growing_retry_after(
        api, stack, second_gateway):
    victim = api.register_user()
    bases = [api.base_url, second_gateway]
    clients = [client_from(f"127.0.0.{n}") for n in (1, 2, 3, 4)]

    # when 60 wrong passwords arrive 8 at a time, from 4 client IPs, through 2 gateway replicas
    def guess(n):
        response = login(clients[n % 4], bases[n % 2], victim["phone"], f"wrong-{n}")
        return response.status_code, response.headers.get("Retry-After")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(guess, range(60)))
    statuses = [status for status, _ in answers]
    # then at most LOGIN_MAX_FAILURES (5) passwords were ever checked: the rest were refused with 429
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 55, statuses
    assert all(int(after) >= 1 for status, after in answers if status == 429)
    # and the right password is refused too while the phone is locked, with a Retry-After that keeps growing
    waits = []
    for client in clients[:3]:
        response = login(client, api.base_url, victim["phone"], victim["password"])
        assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limited"
        waits.append(int(response.headers["Retry-After"]))
    assert waits == sorted(waits) and waits[-1] <= 900, waits
    # another phone is not affected
    expect(login(clients[0], api.base_url, api.admin_phone, api.admin_password), 200)


def test_a_successful_login_resets_the_failures(api):
    user = api.register_user()
    for _ in range(2):
        for n in range(4):  # one short of the limit, twice, with a success in between: never locked
            assert login(api.session, api.base_url, user["phone"], f"nope-{n}").status_code == 401
        expect(login(api.session, api.base_url, user["phone"], user["password"]), 200)


def me(base, token):
    return requests.get(f"{base}/me", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def ended_everywhere(bases, token, timeout=5):
    """Waits until `token` is refused by every replica; returns the seconds it took."""
    started = time.monotonic()
    for base in bases:
        eventually(lambda: _equal(me(base, token), 401), timeout=timeout, interval=0.02)
    return time.monotonic() - started


def _equal(actual, expected):
    assert actual == expected, actual


def test_logout_ends_one_token_on_every_replica_at_once(api, second_gateway):
    user = api.register_user()
    other_session = api.login(user["phone"], user["password"])
    bases = [api.base_url, second_gateway]
    assert [me(b, user["token"]) for b in bases] == [200, 200]
    # when the user logs out through the second replica
    expect(api.session.post(f"{second_gateway}/auth/logout", headers={"Authorization": f"Bearer {user['token']}"}),
           204)
    # then that replica refuses the token at once, and the other one within moments
    assert me(second_gateway, user["token"]) == 401
    took = ended_everywhere(bases, user["token"])
    print(f"logout through one replica refused by both within {took * 1000:.0f} ms")
    assert took < 2
    # and the user's other session goes on
    assert [me(b, other_session) for b in bases] == [200, 200]


def test_a_password_change_ends_every_other_session_on_every_replica(api, second_gateway):
    user = api.register_user()
    phone_session = api.login(user["phone"], user["password"])
    bases = [api.base_url, second_gateway]
    # a wrong old password changes nothing
    wrong = api.post("/auth/password", json={"old_password": "not-it", "new_password": "new-secret-1"},
                     token=user["token"])
    assert wrong.status_code == 401 and "old_password" in wrong.json()["error"]["fields"]
    assert me(second_gateway, phone_session) == 200
    # when the user changes the password
    changed = expect(api.post("/auth/password", json={"old_password": user["password"],
                                                      "new_password": "new-secret-1"}, token=user["token"]), 200)
    # then every older token ends on both replicas; the answer's token goes on
    ended_everywhere(bases, phone_session)
    ended_everywhere(bases, user["token"])
    assert [me(b, changed["access_token"]) for b in bases] == [200, 200]
    assert api.post("/auth/login", json={"phone": user["phone"], "password": user["password"]}).status_code == 401
    api.login(user["phone"], "new-secret-1")


def test_a_suspended_user_is_cut_off_everywhere_and_can_come_back(api, second_gateway):
    admin = api.admin_token()
    user = api.register_user()
    bases = [api.base_url, second_gateway]
    # when an admin suspends the user (through the second replica)
    suspended = expect(api.session.post(f"{second_gateway}/admin/users/{user['user_id']}/suspend",
                                        json={"reason": "selling fakes"},
                                        headers={"Authorization": f"Bearer {admin}", "X-Request-Id": "susp-1"}), 200)
    assert suspended == {"user_id": user["user_id"], "suspended": True, "reason": "selling fakes"}
    # then their token stops working on both replicas and they cannot sign in
    ended_everywhere(bases, user["token"])
    refused = api.post("/auth/login", json={"phone": user["phone"], "password": user["password"]})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    # until an admin restores them
    expect(api.post(f"/admin/users/{user['user_id']}/restore", token=admin), 200)
    assert me(api.base_url, api.login(user["phone"], user["password"])) == 200
    assert me(api.base_url, user["token"]) == 401  # the old token stays dead
    # and both decisions are in the audit log
    entries = expect(api.get("/admin/audit", params={"target_id": user["user_id"]}, token=admin), 200)["items"]
    assert [(e["action"], e["reason"]) for e in entries] == [("user.restore", None), ("user.suspend", "selling fakes")]
    assert entries[1]["request_id"] == "susp-1"


def test_an_unknown_user_cannot_be_suspended(api):
    response = api.post("/admin/users/usr_nobody/suspend", json={"reason": "x"}, token=api.admin_token())
    assert response.status_code == 404
