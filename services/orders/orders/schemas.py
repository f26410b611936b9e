"""RPC payload schemas the orders service uses internally (what the gateway passes: contracts.api.orders)."""
from marshmallow import fields

from kit.validation import Id, StrictSchema


class Viewer(StrictSchema):
    """Who asks: the gateway passes the signed-in user."""
    user_id = Id(required=True)
    is_admin = fields.Boolean(load_default=False)


class Ref(StrictSchema):
    id = Id(required=True)
