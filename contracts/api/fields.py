"""Field builders shared by the RPC contracts."""
from marshmallow import fields, validate


def text(lo, hi, **kwargs):
    """A string of lo..hi characters."""
    return fields.String(validate=validate.Length(lo, hi), **kwargs)


def https_url(**kwargs):
    """Only https URLs: no javascript:, data: or plain http images in anyone's page or feed."""
    return fields.Url(schemes={"https"}, validate=validate.Length(max=500), **kwargs)
