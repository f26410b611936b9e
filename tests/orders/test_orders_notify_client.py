"""The sandbox provider's HTTP client for notifications (orders.provider.NotifyClient), against a real local HTTP
server: kept-alive connections, a connection the shop closed meanwhile, a shop that is down."""
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httptools
import pytest

from orders.provider import NotifyClient


class Shop(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    received = []  # (connection number, path, body, signature)
    connections = 0  # accepted so far (a closed connection's port may be used again at once: count them)
    hang_up = False  # close each connection after its answer, without saying so (as a restarting shop)

    def setup(self):
        super().setup()
        Shop.connections += 1
        self.connection_number = Shop.connections

    def do_POST(self):
        hang_up = self.hang_up  # read before answering: the test may change it as soon as the answer arrives
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.connection_number, self.path, body, self.headers["X-Quanzi-Signature"]))
        status = 404 if b"unknown" in body else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        self.close_connection = hang_up

    def log_message(self, *args):
        pass


@pytest.fixture
def shop():
    Shop.received, Shop.hang_up, Shop.connections = [], False, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server, path="/api/v1/payments/notify"):
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_notifications_reuse_one_kept_alive_connection_and_carry_body_and_headers(shop):
    # given a client of the shop's notify URL
    client = NotifyClient(url_of(shop, "/api/v1/payments/notify?v=1"))
    # when three notifications are sent one after the other, the last one of an order the shop does not know
    statuses = [client.post(body, {"Content-Type": "application/json", "X-Quanzi-Signature": f"sig{i}"})
                for i, body in enumerate([b'{"n":1}', b'{"n":2}', b'{"unknown":3}'])]
    # then each got the shop's own answer, with its body and signature delivered to the URL's path and query
    assert statuses == [200, 200, 404]
    assert [(path, body, signature) for _, path, body, signature in Shop.received] == [
        ("/api/v1/payments/notify?v=1", b'{"n":1}', "sig0"), ("/api/v1/payments/notify?v=1", b'{"n":2}', "sig1"),
        ("/api/v1/payments/notify?v=1", b'{"unknown":3}', "sig2")]
    # and all three went over one connection
    assert Shop.connections == 1 and {number for number, *_ in Shop.received} == {1}
    client.close()


def test_a_kept_alive_connection_the_shop_closed_is_replaced_and_the_notification_delivered(shop):
    # given a client with a kept-alive connection that the shop has since closed (a restart, an idle timeout)
    client = NotifyClient(url_of(shop))
    Shop.hang_up = True
    assert client.post(b'{"n":1}', {"X-Quanzi-Signature": "a"}) == 200
    assert len(client._idle) == 1
    Shop.hang_up = False
    # when the next notification is sent
    status = client.post(b'{"n":2}', {"X-Quanzi-Signature": "b"})
    # then it is delivered on a new connection
    assert status == 200
    assert [body for _, _, body, _ in Shop.received] == [b'{"n":1}', b'{"n":2}']
    assert Shop.connections == 2 and [number for number, *_ in Shop.received] == [1, 2]
    client.close()


def test_a_shop_that_is_down_is_an_oserror_for_the_provider_to_retry_later():
    # given a URL nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = NotifyClient(f"http://127.0.0.1:{port}/notify", timeout=1)
    # then a notification is not delivered: an OSError (the provider schedules it again, with backoff)
    with pytest.raises(OSError):
        client.post(b"{}", {})


def test_only_http_urls_are_accepted():
    with pytest.raises(ValueError):
        NotifyClient("ftp://shop.example.com/notify")


def test_an_answer_that_is_not_http_is_an_error_for_the_provider_to_retry_later():
    # given a "shop" that answers with something that is not HTTP
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_garbage():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"SMTP ready\r\n\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    client = NotifyClient(f"http://127.0.0.1:{listener.getsockname()[1]}/notify", timeout=2)
    # then the notification is not delivered, as an error the provider catches (it schedules it again)
    with pytest.raises(httptools.HttpParserError):
        client.post(b"{}", {})
    assert client._idle == []
    listener.close()
