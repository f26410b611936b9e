"""Response schemas of the system routes: health and the API documents (their own content is described by their
own specifications, so only the top level is checked here)."""
from marshmallow import INCLUDE, Schema, fields, validate


class ServiceHealth(Schema):
    service = fields.String()
    status = fields.String(required=True, validate=validate.OneOf(["ok", "down"]))
    checks = fields.Dict(keys=fields.String(), values=fields.String(),
                         metadata={"description": "mongo, broker: ok, or down with the error's name"})


class Health(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded"]),
                           metadata={"description": "degraded: some service cannot be reached"})
    gateway = fields.Nested(ServiceHealth, required=True)
    services = fields.Dict(keys=fields.String(), values=fields.Nested(ServiceHealth), required=True)


class OpenApiDocument(Schema):
    class Meta:
        unknown = INCLUDE  # the rest is OpenAPI's own business

    openapi = fields.String(required=True, metadata={"example": "3.1.0"})
    info = fields.Dict(required=True)
    paths = fields.Dict(required=True)
    components = fields.Dict()


class AsyncApiDocument(Schema):
    class Meta:
        unknown = INCLUDE

    asyncapi = fields.String(required=True, metadata={"example": "3.0.0"})
    info = fields.Dict(required=True)
    channels = fields.Dict()
    operations = fields.Dict()
    components = fields.Dict()


HTML_PAGE = {"type": "string", "description": "an HTML page"}
