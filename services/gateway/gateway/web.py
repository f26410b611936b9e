"""The built web app (web/dist, from `make install`): the storefront and share pages, the merchant and admin
consoles, Swagger UI and the events reference. The HTML is never cached (it names the current hashed assets);
hashed assets are immutable for a year. Text assets are sent gzipped to clients that accept it (compressed once per
process). No CDN: every byte comes from here."""
import gzip
import mimetypes
from functools import lru_cache
from pathlib import Path

from werkzeug.wrappers import Response

from kit.errors import NotFound

REPO = Path(__file__).resolve().parents[3]
DIST = REPO / "web" / "dist"
# Vue renders with style attributes (Vant's inline styles), so styles allow 'unsafe-inline'; scripts come only
# from here. Product and avatar images are https URLs of any host, or the site's own /media files; blob: is the
# preview of a picture being uploaded (an object URL of the file the person picked).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: https:; "
            "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
IMMUTABLE = "public, max-age=31536000, immutable"
COMPRESSIBLE = (".js", ".css", ".html", ".svg", ".json", ".map")
NOT_BUILT = """<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>Quanzi</title></head>
<body><h1>页面尚未构建</h1><p>The web app is not built: run <code>make install</code> (needs Node 20).</p></body></html>"""


@lru_cache(maxsize=256)
def _read(path, compressed):
    data = path.read_bytes()
    return gzip.compress(data, 6, mtime=0) if compressed else data


def _send(request, path, cache):
    compressed = path.suffix in COMPRESSIBLE and "gzip" in request.headers.get("Accept-Encoding", "")
    body = _read(path, compressed) if cache == IMMUTABLE else _read.__wrapped__(path, compressed)
    response = Response(body, mimetype=mimetypes.guess_type(path.name)[0] or "application/octet-stream")
    if path.suffix in (".js", ".css", ".html", ".svg", ".json"):
        response.charset = "utf-8"
    response.headers["Cache-Control"] = cache
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Vary"] = "Accept-Encoding"
    if compressed:
        response.headers["Content-Encoding"] = "gzip"
    return response


def page(request, name="index.html"):
    """An HTML entry page of the build (index.html serves /, /s/..., /merchant/, /admin/)."""
    path = DIST / name
    if not path.is_file():
        response = Response(NOT_BUILT, status=503, mimetype="text/html")
        response.headers["Content-Security-Policy"] = PAGE_CSP
        return response
    return _send(request, path, "no-cache")


def _inside(folder, name):
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents or not path.is_file():
        raise NotFound("no such file")
    return path


def asset(request, name):
    """A content-hashed file of the build: cached for a year."""
    return _send(request, _inside(DIST / "assets", name), IMMUTABLE)


def media(request, name):
    """An image shipped with the app (the demo's product pictures): not hashed, cached a day."""
    return _send(request, _inside(DIST / "media", name), "public, max-age=86400")
