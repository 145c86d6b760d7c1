"""Messages of the public contracts that leave the platform (CONTRACTS.md §1 and §2):
receipts and status changes for the publishing call center, notification requests for
the institution's notification gateway. Each is built here, checked against its schema,
and handed to the outbox.
"""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from services.common import amqp, ids, timeutil
from services.common.outbox import contract_message

RECEIPT_STATUSES = ("accepted", "duplicate", "rejected")
STATUS_CHANGES = ("assigned", "transferred", "escalated", "extended", "rescheduled", "decided", "referred", "closed",
                  "reopened")
MEDIA = ("sms", "email", "letter", "phone")
TEMPLATES = ("acknowledged", "extended", "rescheduled", "decided", "referred", "closed", "paused", "resumed")


class ReceiptSchema(Schema):
    message_id = fields.String(required=True, allow_none=True)
    external_id = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(RECEIPT_STATUSES))
    complaint_no = fields.String(required=True, allow_none=True)
    due_by = fields.String(required=True, allow_none=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)
    # Extensions of the contract: the open complaint a repeat was merged into; whether
    # due_by was counted on a calendar year the State Council has not published yet.
    merged_into = fields.String(allow_none=True)
    provisional = fields.Boolean()


class StatusSchema(Schema):
    class Meta:
        unknown = "include"  # each change adds its own details

    complaint_no = fields.String(required=True)
    external_id = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUS_CHANGES))
    at = fields.AwareDateTime(required=True)


class NotificationSchema(Schema):
    notification_id = fields.String(required=True)
    complaint_no = fields.String(required=True)
    medium = fields.String(required=True, validate=validate.OneOf(MEDIA))
    to = fields.String(required=True)
    template = fields.String(required=True, validate=validate.OneOf(TEMPLATES))
    language = fields.String(required=True)
    params = fields.Dict(required=True)
    requested_at = fields.AwareDateTime(required=True)


def _checked(schema: Schema, body: dict) -> dict:
    errors = schema.validate(body)
    if errors:
        raise ValidationError(errors)
    return body


def receipt(app_id: str | None, body: dict) -> dict:
    """``receipt.<app_id>``; ``receipt.unknown`` when the message had no app_id."""
    _checked(ReceiptSchema(), body)
    return contract_message(amqp.OUTBOUND_EXCHANGE, f"receipt.{app_id or 'unknown'}", body,
                            correlation_id=body["message_id"])


def status(app_id: str, complaint_no: str, external_id: str | None, change: str, at=None, **details) -> dict:
    body = {"complaint_no": complaint_no, "external_id": external_id, "status": change,
            "at": timeutil.iso(at or timeutil.now()), **details}
    _checked(StatusSchema(), body)
    return contract_message(amqp.OUTBOUND_EXCHANGE, f"status.{app_id}", body)


def notification(
    complaint_no: str, medium: str, to: str, template: str, params: dict, *, requested_at=None,
    language: str = "zh-CN",
) -> dict:
    """``notify.<medium>``: ask the notification gateway to tell the customer; the caller
    chooses the medium and keeps the proof of notice (intake's ``notices``)."""
    body = {
        "notification_id": ids.new_id(),
        "complaint_no": complaint_no,
        "medium": medium,
        "to": to,
        "template": template,
        "language": language,
        "params": params,
        "requested_at": timeutil.iso(requested_at or timeutil.now()),
    }
    _checked(NotificationSchema(), body)
    return contract_message(amqp.NOTIFICATIONS_EXCHANGE, f"notify.{medium}", body, message_id=body["notification_id"])
