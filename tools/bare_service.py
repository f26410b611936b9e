"""The yardstick of `make bench`: a bare nameko HTTP endpoint returning a small fixed JSON body (no schema, no
database, no RPC). Every row is printed as a ratio to it, measured in the same run, so figures from different
machines and loads compare."""
import json

from nameko.web.handlers import http

BODY = json.dumps({"ok": True, "service": "bare"})


class Bare:
    name = "bench_bare"

    @http("GET", "/bare")
    def bare(self, request):
        return 200, {"Content-Type": "application/json"}, BODY
