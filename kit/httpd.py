"""The HTTP/1.1 server of every service's nameko http entrypoints (the gateway's API and pages, each service's
/health and /metrics): nameko's WebServer, but each connection is parsed by httptools (llhttp, Node's C parser)
instead of eventlet.wsgi. Why: under load, eventlet.wsgi's request line and header parsing (the stdlib's email
parser) and its per-request bookkeeping were a quarter of the gateway's CPU; a pay is two requests through it (the
buyer's and the provider's notification). The WSGI app, its routing and every entrypoint are nameko's, unchanged.

What it does, per connection (a greenthread of the container, as nameko's own server runs them):
- keep-alive as HTTP/1.1 and 1.0 define it, pipelined requests answered in order;
- a request is answered once its whole body has arrived (chunked bodies are decoded), so the app reads a
  buffered body with a Content-Length; a body over MAX_BODY is refused with 413 and the connection closed;
- `Expect: 100-continue` is answered before the body is read;
- a head over MAX_HEAD bytes is refused with 431; a malformed request gets 400; both close the connection;
- a connection that sends nothing for IDLE_TIMEOUT is closed (eventlet.wsgi, as nameko ran it, waited forever);
- a response is sent whole, in one write, with its Content-Length (nothing here streams);
- an app that raises gets a 500 (logged with its traceback) and the connection closes."""
import io
import logging
import socket
import sys
from collections import deque
from email.utils import formatdate
from functools import partial
from time import time
from urllib.parse import unquote_to_bytes

import eventlet
import httptools
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer as NamekoWebServer
from nameko.web.server import WsgiApp as NamekoWsgiApp
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.wrappers import Request as WsgiRequest

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024  # the largest body any route takes (a picture: a MongoDB document holds 16 MiB)
IDLE_TIMEOUT = 75.0  # as nginx's keepalive_timeout; above the common proxies' (60 s), so they close first
READ_SIZE = 64 * 1024
HTTP_ERRORS = {400: b"Bad Request", 413: b"Payload Too Large", 431: b"Request Header Fields Too Large",
               500: b"Internal Server Error"}
NO_BODY_STATUSES = (204, 304)


class _Date:
    """The Date header's value, formatted once a second."""

    def __init__(self):
        self.second, self.value = None, None

    def __call__(self):
        now = int(time())
        if now != self.second:
            self.second, self.value = now, formatdate(now, usegmt=True)
        return self.value


http_date = _Date()


class Refused(Exception):
    """A request this server will not take, raised from a parser callback: the status to answer it with."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Request:
    """One request as it arrives: the parser's callbacks fill it in."""
    __slots__ = ("method", "url", "headers", "body", "body_size", "version", "keep_alive")

    def __init__(self):
        self.url, self.headers, self.body, self.body_size = b"", [], [], 0


class Connection:
    """One client connection: httptools calls the on_* methods while `serve` feeds it what the socket gives."""

    def __init__(self, sock, address, app, server_port):
        self.sock, self.address, self.app = sock, address, app
        self.server_port = str(server_port)
        self.parser = httptools.HttpRequestParser(self)
        self.ready = deque()  # requests whose bodies are complete, in arrival order
        self.current = None
        self.head_size = 0

    # -- httptools callbacks ------------------------------------------------------------------------------------
    def on_message_begin(self):
        self.current = Request()
        self.head_size = 0

    def on_url(self, url):
        self.current.url += url
        self._count_head(len(url))

    def on_header(self, name, value):
        self.current.headers.append((name, value))
        self._count_head(len(name) + len(value) + 4)

    def on_headers_complete(self):
        request, parser = self.current, self.parser
        request.method = parser.get_method()
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        for name, value in request.headers:
            lowered = name.lower()
            if lowered == b"content-length" and int(value) > MAX_BODY:
                raise Refused(413)
            if lowered == b"expect" and value.lower() == b"100-continue" and request.version == "1.1":
                self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk):
        request = self.current
        request.body_size += len(chunk)
        if request.body_size > MAX_BODY:
            raise Refused(413)
        request.body.append(chunk)

    def on_message_complete(self):
        self.ready.append(self.current)
        self.current = None

    def _count_head(self, size):
        self.head_size += size
        if self.head_size > MAX_HEAD:
            raise Refused(431)

    # -- the connection -----------------------------------------------------------------------------------------
    def serve(self):
        self.sock.settimeout(IDLE_TIMEOUT)
        try:
            while True:
                try:
                    data = self.sock.recv(READ_SIZE)
                except socket.timeout:
                    return
                if not data:
                    return
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserCallbackError as exc:
                    cause = exc.__context__
                    self._refuse(cause.status if isinstance(cause, Refused) else 400)
                    return
                except (httptools.HttpParserError, httptools.HttpParserUpgrade, ValueError):
                    self._refuse(400)  # ValueError: a Content-Length that is not a number
                    return
                while self.ready:
                    if not self.respond(self.ready.popleft()):
                        return
        except (ConnectionError, socket.timeout):
            pass  # the client went away, or stopped reading our answer
        finally:
            self.sock.close()

    def _refuse(self, status):
        body = HTTP_ERRORS[status]
        try:
            self.sock.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                              b"Connection: close\r\n\r\n%s" % (status, body, len(body), body))
        except OSError:
            pass

    def environ(self, request):
        url = httptools.parse_url(request.url)
        body = b"".join(request.body)
        environ = {
            "REQUEST_METHOD": request.method.decode("latin-1"),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(url.path).decode("latin-1"),
            "QUERY_STRING": (url.query or b"").decode("latin-1"),
            "SERVER_NAME": "localhost",
            "SERVER_PORT": self.server_port,
            "SERVER_PROTOCOL": "HTTP/" + request.version,
            "REMOTE_ADDR": self.address[0],
            "REMOTE_PORT": str(self.address[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
            key = name.decode("latin-1").upper()
            if "_" in key:
                continue  # X_User would read as X-User to the app: dropped, as nginx and eventlet.wsgi do
            key = key.replace("-", "_")
            if key == "CONTENT_LENGTH" or key == "TRANSFER_ENCODING":
                continue  # the body is decoded and buffered: CONTENT_LENGTH above is its length
            if key != "CONTENT_TYPE":
                key = "HTTP_" + key
            value = value.decode("latin-1")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def respond(self, request):
        """Answers one request; False when the connection must close after it."""
        environ = self.environ(request)
        started = []

        def start_response(status, headers, exc_info=None):
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]

        try:
            result = self.app(environ, start_response)
            try:
                chunks = result if isinstance(result, (list, tuple)) else list(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:
            log.exception("%s %s failed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            self._refuse(500)
            return False
        status, headers = started
        keep_alive = request.keep_alive
        code = int(status[:3])
        head = [b"HTTP/1.1 ", status.encode("latin-1"), b"\r\n"]
        has_length = False
        for name, value in headers:
            if name.lower() == "content-length":
                has_length = True
            head += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        body = b"".join(chunks)
        if request.method == b"HEAD" or code in NO_BODY_STATUSES or 100 <= code < 200:
            body = b""
        elif not has_length:
            head += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
        head += (b"Date: ", http_date().encode(), b"\r\n")
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head += (b"\r\n", body)
        self.sock.sendall(b"".join(head))
        return keep_alive


class WsgiApp(NamekoWsgiApp):
    """nameko's WSGI app, with its URL map bound once rather than to every request's environ (half of the
    routing's cost): no route depends on the host. A request werkzeug would redirect (a missing trailing slash, a
    doubled one) is matched again bound to its own environ, so the redirect names the host it was sent to."""

    def __init__(self, server):
        super().__init__(server)
        self.adapter = self.url_map.bind("localhost")

    def __call__(self, environ, start_response):
        request = WsgiRequest(environ, shallow=True)
        try:
            try:
                # PATH_INFO holds the path's bytes as latin-1 (PEP 3333); werkzeug matches its UTF-8 text
                path = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
                provider, values = self.adapter.match(path, environ["REQUEST_METHOD"])
            except RequestRedirect:
                provider, values = self.url_map.bind_to_environ(environ).match()
            request.path_values = values
            answer = provider.handle_request(request)
        except HTTPException as exc:
            answer = exc
        return answer(environ, start_response)


class WebServer(NamekoWebServer):
    """nameko's WebServer (its start and stop, its WSGI app bound once), with connections served by `Connection`."""

    def get_wsgi_app(self):
        return WsgiApp(self)

    def start(self):
        if not self._starting:
            self._starting = True
            self._sock = eventlet.listen(self.bind_addr)
            self._sock.settimeout(None)  # as nameko's: kombu's socket timeout must not reach the listener
            self._app = self.get_wsgi_app()
            self._gt = self.container.spawn_managed_thread(self.run)

    def run(self):
        port = self._sock.getsockname()[1]
        while self._is_accepting:
            sock, address = self._sock.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.container.spawn_managed_thread(partial(self.serve, sock, address, port))

    def serve(self, sock, address, port):
        Connection(sock, address, self._app, port).serve()


class HttpEntrypoint(HttpRequestHandler):
    """nameko's http entrypoint, served by the WebServer above (every entrypoint of a service must be: they share
    one listening socket, and nameko would start a second server on the same address for its own class)."""
    server = WebServer()


http = HttpEntrypoint.decorator
