"""The OpenAPI 3 document, generated from the routes' own schemas (nothing written by hand)."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from kit.validation import ID_PATTERN, SafeDict

from gateway.http import API_PREFIX

STATUS_TEXT = {200: "OK", 201: "Created", 400: "Invalid input (see error.fields)", 401: "Not signed in",
               403: "Not allowed", 404: "Not found", 409: "Conflict with the current state", 413: "Body too large",
               422: "Refused by a business rule", 429: "Too many requests", 503: "A backing service, the database or the broker is unavailable; retry after Retry-After seconds"}


def _schema_name(schema):
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__


def build_spec(routes, version="1.0.0"):
    plugin = MarshmallowPlugin()
    spec = APISpec(title="Quanzi API", version=version, openapi_version="3.1.0", plugins=[plugin],
                   info={"description": "Social commerce: shop through friends, group buys, compliant commissions."})
    plugin.converter.add_attribute_function(dict_constraints)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Error", schema=_error_schema())
    seen = set()
    paths = {}
    for route in routes:
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", route.get("prefix", API_PREFIX) + route["path"])
        operation = {"summary": route.get("summary", ""), "tags": list(route.get("tags", [])),
                     "operationId": f"{route['method'].lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
                     "responses": {}}
        if route.get("audit"):  # a decision: its success is appended to the audit log (GET /admin/audit)
            operation["x-quanzi-audit"] = route["audit"]
        # Path segments are ids: the pipeline answers 404 for anything else (see http.ApiRoute.prepare).
        id_schema = {"type": "string", "pattern": ID_PATTERN.pattern}
        params = [{"name": n, "in": "path", "required": True, "schema": dict(id_schema)}
                  for n in re.findall(r"{([a-z_]+)}", path)]
        for name, schema in (("body", route.get("body")), ("query", route.get("query")),
                             ("response", route.get("response")), *route.get("error_bodies", {}).items()):
            if schema is not None and not isinstance(schema, dict) and _schema_name(schema) not in seen \
                    and _schema_name(schema) not in spec.components.schemas:  # already added as a nested one
                # OPENAPI: what a schema-level rule (@validates_schema) requires, as JSON Schema (minProperties,
                # anyOf...): the document must not call valid what the code refuses.
                spec.components.schema(_schema_name(schema), component=getattr(schema, "OPENAPI", None),
                                       schema=schema)
                seen.add(_schema_name(schema))
        if route.get("query") is not None:
            params.append({"in": "query", "schema": _schema_name(route["query"])})
        auth = route.get("auth", "user")
        errors = set(route.get("errors", ())) | {429, 503}
        if route["method"] == "POST" and auth in ("user", "admin", "optional"):
            # Every POST of a signed-in user honours Idempotency-Key (gateway/idempotency.py): a bad key is 400, a
            # key still in use by the first request 409, a key reused with another body 422.
            replays = ("a retry with the same key and body replays the first answer"
                       if route.get("idempotency", "edge") == "edge" else
                       "a retry with the same key and body answers what the first made, as it is now")
            params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "minLength": 1, "maxLength": 100}, "description": replays})
            errors |= {400, 409, 422}
        if params:
            operation["parameters"] = params
        if route.get("body") is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": _schema_name(route["body"])}}}
        if route.get("upload") is not None:  # the body is the file itself
            upload = route["upload"]
            operation["requestBody"] = {"required": True, "description": f"the file's bytes, at most "
                                        f"{upload['limit'].upper()} (a setting); its type is read from the bytes",
                                        "content": {
                media_type: {"schema": {"type": "string", "contentMediaType": media_type, "minLength": 1}}
                for media_type in upload["media_types"]}}
            errors |= {400, 413, 422}
        status = route.get("status", 200)
        ok = {"description": STATUS_TEXT.get(status, "OK")}
        if route.get("response") is not None:
            ok["content"] = {route.get("media_type", "application/json"): {"schema": _schema_ref(route["response"])}}
        operation["responses"][str(status)] = ok
        if route.get("body") is not None or route.get("query") is not None:
            errors |= {400}
        if route.get("body") is not None:
            errors |= {413}
        if auth in ("user", "admin"):
            errors |= {401}
            operation["security"] = [{"bearer": []}]
        elif auth == "optional":
            errors |= {401}  # no token is fine; a bad, expired or ended one is refused, not ignored
            operation["security"] = [{"bearer": []}, {}]
        if auth == "admin":
            errors |= {403}
        error_bodies = route.get("error_bodies", {})  # statuses some of whose answers are not the Error shape
        for code in sorted(errors | set(error_bodies)):
            schema = {"$ref": "#/components/schemas/Error"}
            if code in error_bodies:
                schema = {"anyOf": [_schema_ref(error_bodies[code]), schema]}
            operation["responses"][str(code)] = {"description": STATUS_TEXT.get(code, "Error"), "content": {
                "application/json": {"schema": schema}}}
            if code in (429, 503) or (code == 409 and route["method"] == "POST" and auth in ("user", "admin", "optional")):
                # an outage, a limit, or the same Idempotency-Key still in progress: when to try again
                operation["responses"][str(code)]["headers"] = {"Retry-After": {
                    "description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}}
        paths.setdefault(path, {})[route["method"].lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _schema_ref(schema):
    """A marshmallow schema (by its component name), or a plain JSON schema given as a dict."""
    return schema if isinstance(schema, dict) else {"$ref": f"#/components/schemas/{_schema_name(schema)}"}


def dict_constraints(self, field, ret, **kwargs):
    """Maps are objects: their size is maxProperties, and SafeDict's key rule is propertyNames (JSON Schema)."""
    if not isinstance(field, fields.Dict):
        return {}
    extra = {}
    for bound in ("minLength", "maxLength"):
        if bound in ret:
            extra[bound.replace("Length", "Properties")] = ret.pop(bound)
    if isinstance(field, SafeDict):
        extra["propertyNames"] = {"minLength": 1, "maxLength": 40, "pattern": "^[^$.\\x00]+$"}
    return extra


def _error_schema():
    from gateway.schemas import ErrorResponse
    return ErrorResponse
