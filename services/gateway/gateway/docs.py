"""Swagger UI served from the swagger-ui-bundle wheel: no CDN, works offline."""
import mimetypes
from pathlib import Path

from swagger_ui_bundle import swagger_ui_path
from werkzeug.wrappers import Response

from kit.errors import NotFound

ASSETS = Path(swagger_ui_path)
SERVED = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png",
          "favicon-16x16.png"}
DOCS_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Quanzi API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"><link rel="icon" href="/docs/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script><script src="/docs/swagger-ui-standalone-preset.js"></script>
<script src="/docs/init.js"></script></body></html>"""
INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
};"""


def _response(body, mimetype, cache=True):
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Security-Policy"] = DOCS_CSP
    if cache:
        response.headers["Cache-Control"] = "public, max-age=86400"
    return response


def swagger_page():
    return _response(PAGE, "text/html", cache=False)


def swagger_asset(name):
    if name == "init.js":
        return _response(INIT, "application/javascript")
    if name not in SERVED:
        raise NotFound("no such asset")
    return _response((ASSETS / name).read_bytes(), mimetypes.guess_type(name)[0] or "application/octet-stream")
