"""RPC payloads of the social-feed service that the gateway takes as HTTP bodies and queries."""
import re

from marshmallow import ValidationError, fields, validate, validates_schema

from contracts.api.fields import cursor_param, image_url
from kit.validation import Id, Pattern, StrictSchema

VISIBILITIES = ("friends", "public", "private")
SHARE_CODE_PATTERN = re.compile(r"^[0-9A-Za-z]{10}$")  # what social-feed issues: 10 base62 characters
MAX_TEXT = 2000
MAX_IMAGES = 9
CHANNELS = ["link", "wechat", "moments", "qrcode", "poster", "other"]


def share_code(**kwargs):
    return fields.String(validate=Pattern(SHARE_CODE_PATTERN, error="Not a share code."), **kwargs)


class ProfileUpdate(StrictSchema):
    OPENAPI = {"minProperties": 1}  # not_empty
    nickname = fields.String(validate=validate.Length(1, 30))
    avatar_url = image_url(allow_none=True)

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("nothing to update")


class InviterBinding(StrictSchema):
    share_code = share_code(required=True)


class FriendRequestInput(StrictSchema):
    user_id = Id(required=True)


class Page(StrictSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 50))
    cursor = cursor_param()


# A character that is not whitespace (exactly what str.strip() removes: str.isspace()), spelt out so that Python
# and the API document's (ECMA) regular expressions agree: a moment's text must hold one.
CONTENT_CHARACTER = "[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_HAS_CONTENT = re.compile(CONTENT_CHARACTER)


class MomentInput(StrictSchema):
    # has_content: text with a visible character, an image, or a product card
    OPENAPI = {"anyOf": [
        {"required": ["text"], "properties": {"text": {"pattern": CONTENT_CHARACTER}}},
        {"required": ["images"], "properties": {"images": {"minItems": 1}}},
        {"required": ["product_id"], "properties": {"product_id": {"type": "string"}}},
        {"required": ["share_code"], "properties": {"share_code": {"type": "string"}}},
    ]}
    text = fields.String(load_default="", validate=validate.Length(max=MAX_TEXT))
    images = fields.List(image_url(), load_default=list, validate=validate.Length(max=MAX_IMAGES))
    product_id = Id(load_default=None, allow_none=True)
    share_code = share_code(load_default=None, allow_none=True,
                            metadata={"description": "the author's own share code for the product card; "
                                                     "made for them when only product_id is given"})
    visibility = fields.String(load_default="friends", validate=validate.OneOf(VISIBILITIES))

    @validates_schema
    def has_content(self, data, **kwargs):
        if not (_HAS_CONTENT.search(data.get("text", "")) or data.get("images") or data.get("product_id")
                or data.get("share_code")):
            raise ValidationError("a moment needs text, images or a product", "text")


class CommentInput(StrictSchema):
    text = fields.String(required=True, validate=validate.Length(1, 500))


class ShareInput(StrictSchema):
    product_id = Id(required=True)
    channel = fields.String(load_default="link", validate=validate.OneOf(CHANNELS))


# open: waiting for an admin; actioned: the content was taken down; dismissed: an admin kept it up (with a reason)
REPORT_STATUSES = ["open", "actioned", "dismissed"]


class ReportInput(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class TakedownInput(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class ReportQuery(Page):
    status = fields.String(load_default="open", validate=validate.OneOf(REPORT_STATUSES))


class PrivacyInput(StrictSchema):
    show_purchases_to_friends = fields.Boolean(required=True, truthy={True}, falsy={False},
                                               metadata={"description": "friends see your purchases in social "
                                                                        "proof (off until you turn it on)"})
