"""RPC payloads of the social-feed service that the gateway takes as HTTP bodies and queries."""
import re

from marshmallow import ValidationError, fields, validate, validates_schema

from contracts.api.fields import https_url
from kit.validation import Id, StrictSchema

VISIBILITIES = ("friends", "public", "private")
SHARE_CODE_PATTERN = re.compile(r"^[0-9A-Za-z]{10}$")  # what social-feed issues: 10 base62 characters
MAX_TEXT = 2000
MAX_IMAGES = 9
CHANNELS = ["link", "wechat", "moments", "qrcode", "poster", "other"]


def share_code(**kwargs):
    return fields.String(validate=validate.Regexp(SHARE_CODE_PATTERN, error="Not a share code."), **kwargs)


class ProfileUpdate(StrictSchema):
    nickname = fields.String(validate=validate.Length(1, 30))
    avatar_url = https_url(allow_none=True)

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
    cursor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))


class MomentInput(StrictSchema):
    text = fields.String(load_default="", validate=validate.Length(max=MAX_TEXT))
    images = fields.List(https_url(), load_default=list, validate=validate.Length(max=MAX_IMAGES))
    product_id = Id(load_default=None, allow_none=True)
    share_code = share_code(load_default=None, allow_none=True,
                            metadata={"description": "the author's own share code for the product card; "
                                                     "made for them when only product_id is given"})
    visibility = fields.String(load_default="friends", validate=validate.OneOf(VISIBILITIES))

    @validates_schema
    def has_content(self, data, **kwargs):
        if not (data.get("text", "").strip() or data.get("images") or data.get("product_id")
                or data.get("share_code")):
            raise ValidationError("a moment needs text, images or a product", "text")


class CommentInput(StrictSchema):
    text = fields.String(required=True, validate=validate.Length(1, 500))


class ShareInput(StrictSchema):
    product_id = Id(required=True)
    channel = fields.String(load_default="link", validate=validate.OneOf(CHANNELS))


class ReportInput(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class TakedownInput(StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class ReportQuery(Page):
    status = fields.String(load_default="open", validate=validate.OneOf(["open", "actioned"]))


class PrivacyInput(StrictSchema):
    show_purchases_to_friends = fields.Boolean(required=True, truthy={True}, falsy={False},
                                               metadata={"description": "friends see your purchases in social "
                                                                        "proof (off until you turn it on)"})
