"""Field builders shared by the RPC contracts."""
from marshmallow import fields, validate

from kit.paging import CURSOR_PATTERN
from kit.validation import Pattern


def text(lo, hi, **kwargs):
    """A string of lo..hi characters."""
    return fields.String(validate=validate.Length(lo, hi), **kwargs)


# An https URL with a dotted host name, an optional port and path/query/fragment made of URL characters (RFC 3986;
# non-ASCII percent-encoded). The API document publishes this very pattern, so a client's validator and ours agree.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HTTPS_URL_PATTERN = (rf"^https://{_LABEL}(?:\.{_LABEL})+(?::[0-9]{{1,5}})?"
                     r"(?:[/?#][A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*)?$")
HTTPS_URL_MAX = 500


def https_url(**kwargs):
    """Only https URLs: no javascript:, data: or plain http images in anyone's page or feed (HTTPS_URL_PATTERN)."""
    return fields.String(validate=[validate.Length(max=HTTPS_URL_MAX),
                                   Pattern(HTTPS_URL_PATTERN, error="Not an https URL.")], **kwargs)


# A picture Quanzi serves itself (/media/<file>: the demo's, generated locally, or one a user uploaded with
# POST /media, named u-<hex>.<ext>; no other path of the site).
LOCAL_IMAGE_PATTERN = r"^/media/[A-Za-z0-9_-]{1,80}\.(?:svg|png|jpg|webp)$"
IMAGE_URL_PATTERN = f"(?:{HTTPS_URL_PATTERN})|(?:{LOCAL_IMAGE_PATTERN})"


def image_url(**kwargs):
    """A picture (a product's, a moment's, an avatar): an https URL (HTTPS_URL_PATTERN), or /media/<file> served
    by Quanzi itself (uploaded with POST /media, or the demo's)."""
    return fields.String(validate=[validate.Length(max=HTTPS_URL_MAX),
                                   Pattern(IMAGE_URL_PATTERN, error="Not an https URL or /media/<file>.")],
                         metadata={"description": "an https URL, or /media/<file> served by Quanzi itself"},
                         **kwargs)


def cursor_param():
    """A list's `cursor` query parameter: absent for the first page, else a `next_cursor` the list returned
    (kit.paging.CURSOR_PATTERN, published as the parameter's pattern)."""
    return fields.String(load_default=None, allow_none=True,
                         validate=Pattern(CURSOR_PATTERN, error="Not a cursor this list returned."),
                         metadata={"description": "the next_cursor of the previous page"})
