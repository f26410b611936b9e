"""Schemas of the upload route: its query and its answer."""
from marshmallow import fields, validate

from kit.validation import StrictSchema

PURPOSES = ["moment", "product", "avatar"]


class UploadQuery(StrictSchema):
    purpose = fields.String(load_default="moment", validate=validate.OneOf(PURPOSES), metadata={
        "description": "what the picture is for: a moment's and an avatar go when the account is erased, a "
                       "product's stays with the shop"})


class Upload(StrictSchema):
    url = fields.String(required=True, metadata={"description": "/media/u-<32 hex>.<jpg|png|webp>: put it in images",
                                                 "example": "/media/u-3f2a9c0d1e8b7a6f5e4d3c2b1a09f8e7.jpg"})
    content_type = fields.String(required=True, validate=validate.OneOf(["image/jpeg", "image/png", "image/webp"]))
    bytes = fields.Integer(required=True, metadata={"description": "size as stored, without the metadata"})
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
