"""The OpenAPI 3 document, generated from the routes' own schemas (nothing written by hand)."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from kit.validation import SafeDict

from gateway.http import API_PREFIX

STATUS_TEXT = {200: "OK", 201: "Created", 400: "Invalid input (see error.fields)", 401: "Not signed in",
               403: "Not allowed", 404: "Not found", 409: "Conflict with the current state", 413: "Body too large",
               422: "Refused by a business rule", 429: "Too many requests", 503: "A backing service is unavailable"}


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
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"{([a-z_]+)}", path)]
        for name, schema in (("body", route.get("body")), ("query", route.get("query")),
                             ("response", route.get("response"))):
            if schema is not None and _schema_name(schema) not in seen \
                    and _schema_name(schema) not in spec.components.schemas:  # already added as a nested one
                spec.components.schema(_schema_name(schema), schema=schema)
                seen.add(_schema_name(schema))
        if route.get("query") is not None:
            params.append({"in": "query", "schema": _schema_name(route["query"])})
        if params:
            operation["parameters"] = params
        if route.get("body") is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": _schema_name(route["body"])}}}
        status = route.get("status", 200)
        ok = {"description": STATUS_TEXT.get(status, "OK")}
        if route.get("response") is not None:
            ok["content"] = {"application/json": {"schema": _schema_name(route["response"])}}
        operation["responses"][str(status)] = ok
        auth = route.get("auth", "user")
        errors = set(route.get("errors", ())) | {429, 503}
        if route.get("body") is not None or route.get("query") is not None:
            errors |= {400}
        if route.get("body") is not None:
            errors |= {413}
        if auth in ("user", "admin"):
            errors |= {401}
            operation["security"] = [{"bearer": []}]
        elif auth == "optional":
            operation["security"] = [{"bearer": []}, {}]
        if auth == "admin":
            errors |= {403}
        for code in sorted(errors):
            operation["responses"][str(code)] = {"description": STATUS_TEXT.get(code, "Error"), "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        paths.setdefault(path, {})[route["method"].lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


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
