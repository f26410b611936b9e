"""RPC payload schemas the social-feed service uses internally (what the gateway passes: contracts.api.social_feed)."""
from marshmallow import fields, validate

from kit.validation import Id, StrictSchema


class NewProfile(StrictSchema):
    user_id = Id(required=True)
    nickname = fields.String(required=True, validate=validate.Length(1, 30))
    share_code = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64),
                               metadata={"description": "the share link the user registered through; an unknown "
                                                        "code is ignored (registration is never blocked by it)"})
    deadline = fields.Float(load_default=None, allow_none=True,
                            metadata={"description": "epoch seconds after which the caller no longer waits"})
