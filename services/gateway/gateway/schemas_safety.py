"""HTTP schemas of safety and privacy: sessions, the admin's tools and audit log, moderation, PIPL rights."""
from marshmallow import Schema, fields, validate

from contracts.api.fields import cursor_param
from contracts.api.social_feed import REPORT_STATUSES
from gateway.schemas import Merchant, page_of
from kit.validation import Id, StrictSchema


class PasswordChange(StrictSchema):
    old_password = fields.String(required=True, load_only=True, validate=validate.Length(1, 128))
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(8, 128))


class AccountDeletion(StrictSchema):
    password = fields.String(required=True, load_only=True, validate=validate.Length(1, 128),
                             metadata={"description": "your current password, to confirm"})


class AuditQuery(StrictSchema):
    actor_id = Id(load_default=None, allow_none=True)
    target_id = Id(load_default=None, allow_none=True)
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = cursor_param()


class AuditEntry(Schema):
    audit_id = Id(required=True)
    at = fields.String(required=True)
    actor_id = Id(required=True, metadata={"description": "the admin or merchant owner who decided"})
    action = fields.String(required=True, metadata={"example": "merchant.approve"})
    target_id = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    request_id = fields.String(required=True)


AuditPage = page_of(AuditEntry)
MerchantPage = page_of(Merchant)


class UserStatus(Schema):
    user_id = Id(required=True)
    suspended = fields.Boolean(required=True)
    reason = fields.String(allow_none=True)


class Privacy(Schema):
    show_purchases_to_friends = fields.Boolean(required=True)


class ServiceExport(Schema):
    service = fields.String(required=True)
    collections = fields.Dict(keys=fields.String(), values=fields.List(fields.Dict()), required=True)


class DataExport(Schema):
    user_id = Id(required=True)
    exported_at = fields.String(required=True)
    account = fields.Dict(required=True, metadata={"description": "phone, nickname, roles, dates (never the "
                                                                   "password hash)"})
    services = fields.List(fields.Nested(ServiceExport), required=True,
                           metadata={"description": "what each service holds about you, by collection"})


class ReportView(Schema):
    report_id = fields.String(required=True)
    target_type = fields.String(required=True, validate=validate.OneOf(["moment", "comment"]))
    target_id = Id(required=True)
    reporter_id = Id(required=True)
    reason = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(REPORT_STATUSES))
    created_at = fields.String(required=True)
    resolved_at = fields.String(allow_none=True)
    resolution_reason = fields.String(allow_none=True, metadata={"description": "why an admin dismissed it"})


ReportPage = page_of(ReportView)


class TakenDown(Schema):
    target_type = fields.String(required=True)
    target_id = Id(required=True)
    taken_down = fields.Boolean(required=True)
    reason = fields.String(allow_none=True)


class ReportsDismissed(Schema):
    target_type = fields.String(required=True, validate=validate.OneOf(["moment", "comment"]))
    target_id = Id(required=True)
    dismissed = fields.Integer(required=True, metadata={"description": "open reports closed without action"})
    reason = fields.String(required=True)
