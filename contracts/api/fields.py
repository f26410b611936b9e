"""Field builders shared by the RPC contracts."""
import re

from marshmallow import fields, validate

LOCAL_IMAGE = re.compile(r"/media/[A-Za-z0-9_-]{1,80}\.(?:svg|png|jpg|webp)")
_HTTPS = validate.URL(schemes={"https"})


def text(lo, hi, **kwargs):
    """A string of lo..hi characters."""
    return fields.String(validate=validate.Length(lo, hi), **kwargs)


def https_url(**kwargs):
    """Only https URLs: no javascript:, data: or plain http images in anyone's page or feed."""
    return fields.Url(schemes={"https"}, validate=validate.Length(max=500), **kwargs)


def _https_or_local(value):
    if not LOCAL_IMAGE.fullmatch(value):
        _HTTPS(value)


def image_url(**kwargs):
    """An https URL, or a picture Quanzi serves itself (/media/<file>, e.g. the demo's): no javascript:, data: or
    plain http, and no other path of the site."""
    return fields.String(validate=[validate.Length(max=500), _https_or_local], metadata={
        "pattern": "^(https://|/media/)", "description": "an https URL, or /media/<file> served by Quanzi itself"},
        **kwargs)
