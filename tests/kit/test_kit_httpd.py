"""kit.httpd, the HTTP/1.1 server of every service: real sockets, bytes as a client sends them, and a WSGI app that
records what it was given. The framing cases are the ones a browser, a proxy or an attacker produce: keep-alive and
pipelining, chunked bodies, 100-continue, oversized heads and bodies, HTTP/1.0, HEAD, an app that raises."""
import ast
import json
import socket

import eventlet
import pytest
from nameko.containers import ServiceContainer
from werkzeug.wrappers import Response

from kit import httpd
from kit.httpd import Connection, http
from tools.stack import REPO, free_port


class RecordingApp:
    """Answers every request with what it saw, as JSON; `/boom` raises; `/empty` answers 204."""

    def __init__(self):
        self.environs = []

    def __call__(self, environ, start_response):
        self.environs.append(environ)
        path = environ["PATH_INFO"]
        if path == "/boom":
            raise RuntimeError("the app failed")
        if path == "/empty":
            start_response("204 No Content", [])
            return [b""]
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        seen = {"method": environ["REQUEST_METHOD"], "path": path, "query": environ["QUERY_STRING"],
                "body": body.decode(), "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
                "content_type": environ.get("CONTENT_TYPE")}
        data = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


@pytest.fixture
def server():
    """A listening socket served by kit.httpd's Connection (as WebServer.run does): (address, app)."""
    app = RecordingApp()
    listener = eventlet.listen(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept():
        while True:
            sock, address = listener.accept()
            eventlet.spawn(Connection(sock, address, app, port).serve)

    acceptor = eventlet.spawn(accept)
    yield ("127.0.0.1", port), app
    acceptor.kill()
    listener.close()


def connect(address):
    sock = eventlet.connect(address)
    sock.settimeout(5)
    return sock


def read_response(sock, buffer=b"", head_only=False):
    """(status, headers {lower name: value}, body, what was read past it) of one response; head_only: the answer to
    a HEAD (a Content-Length, no body)."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed after {buffer!r}")
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    length = 0 if head_only else int(headers.get("content-length", 0))
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, headers, rest[:length], rest[length:]


def closed(sock):
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_two_pipelined_requests_on_one_kept_alive_connection_are_answered_in_order(server):
    # given a connection to the server
    address, app = server
    sock = connect(address)

    # when a client sends two requests in one write, then a third on the same connection
    sock.sendall(b"GET /first?a=1&b=%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
                 b'{"a":1}')
    first = read_response(sock)
    second = read_response(sock, first[3])
    sock.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
    third = read_response(sock, second[3])

    # then each is answered, in order, on the one connection, which stays open
    assert [json.loads(r[2])["path"] for r in (first, second, third)] == ["/first", "/second", "/third"]
    assert json.loads(first[2])["query"] == "a=1&b=%C3%A9"
    assert json.loads(second[2]) | {"headers": None} == {
        "method": "POST", "path": "/second", "query": "", "body": '{"a":1}', "headers": None,
        "content_type": "application/json"}
    for status, headers, _, _ in (first, second, third):
        assert status == 200 and "connection" not in headers and headers["date"].endswith("GMT")
    assert len(app.environs) == 3


def test_a_chunked_body_reaches_the_app_whole_with_its_length(server):
    address, app = server
    sock = connect(address)

    # when a body is sent chunked, in two writes
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    eventlet.sleep(0.05)
    sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
    status, _, body, _ = read_response(sock)

    # then the app reads it decoded, with a Content-Length, and no Transfer-Encoding header
    assert status == 200 and json.loads(body)["body"] == "hello world"
    assert app.environs[0]["CONTENT_LENGTH"] == "11"
    assert "HTTP_TRANSFER_ENCODING" not in app.environs[0]


def test_expect_100_continue_is_answered_before_the_body_is_sent(server):
    address, _ = server
    sock = connect(address)

    # when a client asks whether to send its body
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")

    # then the server says go on, and answers once the body came
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"body")
    status, _, body, _ = read_response(sock)
    assert status == 200 and json.loads(body)["body"] == "body"


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n", 413),  # declared too large: refused at once
    (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"40\r\n" + b"a" * 64 + b"\r\n") * 2, 413),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300 + b"\r\n\r\n", 431),
    (b"GET /x HTTP/1.1\r\nHost x\r\n\r\n", 400),
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400),  # none served
    # both lengths at once: request smuggling
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
])
def test_a_request_the_server_will_not_take_is_refused_and_the_connection_closed(server, monkeypatch, request_bytes,
                                                                                  status):
    # given limits small enough to reach in a test
    monkeypatch.setattr(httpd, "MAX_BODY", 100)
    monkeypatch.setattr(httpd, "MAX_HEAD", 200)
    address, app = server
    sock = connect(address)

    # when the client sends it
    sock.sendall(request_bytes)

    # then the answer is the status, the connection closes, and the app never saw it
    answer_status, headers, _, _ = read_response(sock)
    assert (answer_status, headers["connection"]) == (status, "close")
    assert closed(sock)
    assert app.environs == []


def test_http_1_0_closes_unless_asked_to_keep_alive(server):
    address, _ = server

    # when an HTTP/1.0 client asks for nothing, the connection closes after the answer
    sock = connect(address)
    sock.sendall(b"GET /a HTTP/1.0\r\n\r\n")
    status, headers, _, rest = read_response(sock)
    assert (status, headers["connection"], rest) == (200, "close", b"")
    assert closed(sock)

    # when it asks for keep-alive, it gets it and can send another request
    sock = connect(address)
    sock.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, _, rest = read_response(sock)
    assert (status, headers["connection"]) == (200, "keep-alive")
    sock.sendall(b"GET /b HTTP/1.0\r\n\r\n")
    assert json.loads(read_response(sock, rest)[2])["path"] == "/b"


def test_a_head_or_204_answer_has_no_body_and_the_connection_goes_on(server):
    address, _ = server
    sock = connect(address)
    sock.sendall(b"HEAD /page HTTP/1.1\r\nHost: x\r\n\r\nGET /empty HTTP/1.1\r\nHost: x\r\n\r\nGET /z HTTP/1.1\r\n\r\n")

    # HEAD: the GET's headers (its length), no body; 204: no body, no length
    status, headers, _, rest = read_response(sock, head_only=True)
    assert status == 200 and int(headers["content-length"]) > 0
    assert rest == b"" or rest.startswith(b"HTTP/1.1 204")  # what follows the head is the next answer
    status, headers, _, rest = read_response(sock, rest)
    assert status == 204 and "content-length" not in headers
    status, _, body, _ = read_response(sock, rest)
    assert json.loads(body)["path"] == "/z"


def test_an_app_that_raises_gets_a_500_and_the_connection_closes(server, caplog):
    address, _ = server
    sock = connect(address)
    sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _, _ = read_response(sock)
    assert (status, headers["connection"]) == (500, "close")
    assert closed(sock)
    assert "GET /boom failed" in caplog.text and "the app failed" in caplog.text


def test_headers_reach_the_app_as_wsgi_names_repeated_ones_joined_and_underscored_ones_dropped(server):
    address, app = server
    sock = connect(address)
    sock.sendall(b"GET /h HTTP/1.1\r\nHost: x\r\nAccept: a/b\r\nAccept: c/d\r\nX_Forwarded_For: 6.6.6.6\r\n"
                 b"X-Forwarded-For: 1.2.3.4\r\nauthorization: Bearer t\r\n\r\n")
    read_response(sock)
    environ = app.environs[0]
    assert environ["HTTP_ACCEPT"] == "a/b,c/d"
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert environ["HTTP_AUTHORIZATION"] == "Bearer t"
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_an_encoded_path_reaches_the_app_decoded(server):
    address, app = server
    sock = connect(address)
    sock.sendall(b"GET /media/a%20b%2Fc HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(sock)
    # PEP 3333: PATH_INFO is the decoded bytes, as latin-1
    assert app.environs[0]["PATH_INFO"] == "/media/a b/c"


def test_a_connection_idle_past_the_timeout_is_closed(server, monkeypatch):
    monkeypatch.setattr(httpd, "IDLE_TIMEOUT", 0.3)
    address, _ = server
    sock = connect(address)
    sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(sock)
    # when the client then sends nothing, the server closes the connection (a slow client cannot hold it forever)
    started = eventlet.hubs.get_hub().clock()
    assert closed(sock)
    assert 0.2 < eventlet.hubs.get_hub().clock() - started < 2


class SlowService:
    name = "httpd_probe"

    @http("GET", "/slow")
    def slow(self, request):
        eventlet.sleep(0.5)
        return Response("done")

    @http("GET", "/items/<name>")
    def item(self, request, name):
        return Response(f"item {name}")

    @http("GET", "/folder/")
    def folder(self, request):
        return Response("folder")


@pytest.fixture
def probe_service(kit_servers):
    address = ("127.0.0.1", free_port())
    container = ServiceContainer(SlowService, {"WEB_SERVER_ADDRESS": "%s:%d" % address,
                                               "AMQP_URI": kit_servers.amqp_uri})
    container.start()
    yield container, address
    container.stop()  # nothing to do when the test stopped it


def test_routes_match_on_path_and_method_and_a_redirect_names_the_host_asked(probe_service):
    sock = connect(probe_service[1])

    def get(path, method=b"GET"):
        sock.sendall(method + b" " + path + b" HTTP/1.1\r\nHost: shop.example.com:8443\r\n\r\n")
        status, headers, body, _ = read_response(sock)
        return status, headers.get("location"), body.decode()

    # a path parameter, percent-encoded UTF-8 included
    assert get(b"/items/%E4%B8%AD%E6%96%87") == (200, None, "item 中文")
    # a path werkzeug redirects (the trailing slash) names the host the client asked for, not the bound one
    assert get(b"/folder")[:2] == (308, "http://shop.example.com:8443/folder/")
    # no route: 404; a route without this method: 405
    assert get(b"/nothing")[0] == 404
    assert get(b"/items/x", b"DELETE")[0] == 405


def test_a_stopping_service_answers_the_request_it_took(probe_service):
    # given a nameko service with kit http entrypoints, and a request in flight
    container, address = probe_service
    sock = connect(address)
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    eventlet.sleep(0.1)

    # when the service stops
    stopping = eventlet.spawn(container.stop)

    # then the request is answered, and the port is released
    status, _, body, _ = read_response(sock)
    assert (status, body) == (200, b"done")
    stopping.wait()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=1)


def test_services_take_their_http_entrypoints_from_the_kit():
    """Entrypoints of nameko's own http class would start nameko's server beside kit.httpd's, on the same address."""
    offenders = []
    for path in sorted([*(REPO / "services").rglob("*.py"), *(REPO / "kit").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "nameko.web.handlers":
                offenders += [f"{path.relative_to(REPO)}: from {node.module} import {a.name}" for a in node.names
                              if path.name != "httpd.py"]
    assert offenders == []
