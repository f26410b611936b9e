"""Clients of a running stack, shared by the tests and the tools (bench, chaos): `eventually`, the gateway client
`Api`, and `Listener`. Tools never import tests; tests import these."""
import secrets
import socket
import threading
import time
import uuid
from collections import namedtuple

import kombu
import requests


def eventually(fn, timeout=10, interval=0.1):
    """Call `fn` until it stops raising (an assertion or any error) and return its result.

    After `timeout` seconds the last error is raised as it is, so the test shows the real failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(interval)


class Api:
    """The gateway's /api/v1 over one requests.Session (not shared between threads: make one per thread)."""

    def __init__(self, gateway_url, admin_phone, admin_password):
        self.base_url = gateway_url.rstrip("/") + "/api/v1"
        self.admin_phone, self.admin_password = admin_phone, admin_password
        self.session = requests.Session()
        self.session.trust_env = False  # never send 127.0.0.1 through an HTTP proxy from the environment
        self._phones = {admin_phone}

    def request(self, method, path, json=None, token=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base_url + path, json=json, headers=headers, **kwargs)

    def post(self, path, json=None, token=None, headers=None, **kwargs):
        return self.request("POST", path, json, token, headers, **kwargs)

    def put(self, path, json=None, token=None, headers=None, **kwargs):
        return self.request("PUT", path, json, token, headers, **kwargs)

    def patch(self, path, json=None, token=None, headers=None, **kwargs):
        return self.request("PATCH", path, json, token, headers, **kwargs)

    def get(self, path, token=None, headers=None, **kwargs):
        return self.request("GET", path, token=token, headers=headers, **kwargs)

    def delete(self, path, token=None, headers=None, **kwargs):
        return self.request("DELETE", path, token=token, headers=headers, **kwargs)

    def new_phone(self):
        """A mainland-style mobile number (1 + 10 digits) not handed out before in this session."""
        while True:
            phone = f"1{3 + secrets.randbelow(7)}{secrets.randbelow(10**9):09d}"
            if phone not in self._phones:
                self._phones.add(phone)
                return phone

    def login(self, phone, password):
        response = self.post("/auth/login", json={"phone": phone, "password": password})
        assert response.status_code == 200, f"login {phone}: {response.status_code} {response.text}"
        return response.json()["access_token"]

    def register_user(self, nickname=None, share_code=None):
        """Register a fresh user and log in: {user_id, phone, password, nickname, token}."""
        phone = self.new_phone()
        password = "Pw1-" + secrets.token_hex(6)
        body = {"phone": phone, "password": password, "nickname": nickname or f"user{phone[-6:]}"}
        if share_code is not None:
            body["share_code"] = share_code
        response = self.post("/auth/register", json=body)
        assert response.status_code == 201, f"register {phone}: {response.status_code} {response.text}"
        return {"user_id": response.json()["user_id"], "phone": phone, "password": password,
                "nickname": body["nickname"], "token": self.login(phone, password)}

    def admin_token(self):
        return self.login(self.admin_phone, self.admin_password)


Received = namedtuple("Received", "routing_key body headers")


class Listener:
    """Another team's subscriber: its own exclusive queue bound to a topic exchange, drained in a thread.

    The exchange is declared exactly as nameko declares `<service>.events` (topic, durable, persistent),
    so declaring it first is harmless. Bindings exist when the constructor returns: nothing published
    after that is missed.
    """

    def __init__(self, amqp_uri, exchange_name, routing_keys):
        if isinstance(routing_keys, str):
            routing_keys = [routing_keys]
        self.exchange = kombu.Exchange(exchange_name, type="topic", durable=True, delivery_mode=2)
        self.queue = kombu.Queue(
            f"test-listener-{uuid.uuid4().hex[:12]}",
            bindings=[kombu.binding(self.exchange, routing_key=key) for key in routing_keys],
            exclusive=True, auto_delete=True)
        self.received = []
        self.error = None
        self._connection = kombu.Connection(amqp_uri)
        self._connection.connect()
        channel = self._connection.channel()
        self.exchange(channel).declare()
        self._consumer = kombu.Consumer(channel, [self.queue], callbacks=[self._on_message],
                                        on_decode_error=self._on_undecodable, accept=["json"])
        self._consumer.consume()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._drain, name=f"listener-{exchange_name}", daemon=True)
        self._thread.start()

    @property
    def messages(self):
        """The decoded JSON bodies received so far, in order."""
        return [r.body for r in list(self.received)]

    def _on_message(self, body, message):
        self.received.append(Received(message.delivery_info.get("routing_key"), body, message.headers))
        message.ack()

    def _on_undecodable(self, message, error):
        # Not JSON: keep the raw bytes, so a test can see what arrived instead of the thread dying.
        self.received.append(Received(message.delivery_info.get("routing_key"), message.body, message.headers))
        message.ack()

    def _drain(self):
        while not self._stopping.is_set():
            try:
                self._connection.drain_events(timeout=0.2)
            except socket.timeout:
                pass
            except Exception as error:  # connection lost: wait_for reports it
                self.error = error
                return

    def wait_for(self, predicate=lambda body: True, timeout=10):
        """The first body for which `predicate(body)` is true; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for body in self.messages:
                if predicate(body):
                    return body
            if time.monotonic() >= deadline or self.error:
                raise AssertionError(f"no matching message on {self.exchange.name} within {timeout}s "
                                     f"(error: {self.error}); received: {self.messages}")
            time.sleep(0.05)

    def close(self):
        self._stopping.set()
        self._thread.join(5)
        try:
            self._connection.release()  # the exclusive queue goes with the connection
        except Exception:
            pass
