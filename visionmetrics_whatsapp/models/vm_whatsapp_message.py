import json
import logging

from psycopg2.errors import UniqueViolation

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import mute_logger

from ..providers import WhatsAppProviderError, WhatsAppProviderRetryableError
from ..tools.text import REASON_MAX_LENGTH, clean_text
from ..tools.token import extract_token
from . import access

_logger = logging.getLogger(__name__)
MEDIA_MAX_ATTEMPTS = 5

MESSAGE_TYPES = [
    ("text", "Text"),
    ("image", "Image"),
    ("audio", "Audio"),
    ("video", "Video"),
    ("document", "Document"),
    ("sticker", "Sticker"),
    ("location", "Location"),
    ("contact", "Contact"),
    ("reaction", "Reaction"),
    ("other", "Other"),
]

_FROM_CONVERSATION = {
    "compute": "_compute_integration_and_company",
    "store": True,
    "precompute": True,
    "readonly": False,
    "required": True,
    "index": True,
}


class VmWhatsappMessage(models.Model):
    _name = "vm.whatsapp.message"
    _description = "WhatsApp Message"
    _order = "sent_at desc, id desc"
    _rec_name = "external_id"
    # The company is the conversation's (computed from it): it cannot disagree, so the
    # per-create company check (extra queries on the webhook's hot path) is not needed.
    _check_company_auto = False

    conversation_id = fields.Many2one(
        "vm.whatsapp.conversation", required=True, index=True, ondelete="cascade", check_company=True
    )
    # The conversation's, and they follow it. Computed rather than related, and not readonly, so
    # that create() keeps the values the inbox gives (_prepare_vals_from_event): Odoo discards the
    # given values of readonly precomputed fields, and computing them costs as much as the rest
    # of the inbox's batch insert. The views do not let users edit messages.
    integration_id = fields.Many2one(
        "vm.whatsapp.integration",
        ondelete="cascade",  # with its conversation, when the integration is deleted
        **_FROM_CONVERSATION,
    )
    company_id = fields.Many2one("res.company", **_FROM_CONVERSATION)
    lead_id = fields.Many2one(related="conversation_id.lead_id")
    external_id = fields.Char("Provider Message ID", required=True, readonly=True)
    direction = fields.Selection(
        [("inbound", "Inbound"), ("outbound", "Outbound")], required=True, default="inbound", readonly=True
    )
    message_type = fields.Selection(MESSAGE_TYPES, string="Type", required=True, default="text", readonly=True)
    body = fields.Text(readonly=True)
    vm_token = fields.Char("Token", readonly=True)
    attachment_id = fields.Many2one("ir.attachment", readonly=True, ondelete="set null")
    sent_at = fields.Datetime(readonly=True, help="Provider timestamp (UTC).")
    status = fields.Selection(
        [
            ("received", "Received"),
            ("pending", "Pending"),
            ("sent", "Sent"),
            ("delivered", "Delivered"),
            ("read", "Read"),
            ("failed", "Failed"),
        ],
        required=True,
        default="received",
        readonly=True,
    )
    webhook_log_id = fields.Many2one(
        "vm.whatsapp.webhook.log",
        readonly=True,
        index="btree_not_null",
        ondelete="set null",
        groups="visionmetrics_whatsapp.group_whatsapp_manager",  # as the logs themselves
    )
    status_error = fields.Char(readonly=True, help="Why the provider could not deliver the message.")
    media_ref = fields.Text("Media Reference", readonly=True, help="Provider media reference (JSON).")
    media_state = fields.Selection(
        [("pending", "To download"), ("done", "Downloaded"), ("failed", "Download failed")],
        readonly=True,
        index="btree_not_null",
    )
    media_error = fields.Char(readonly=True)
    media_attempts = fields.Integer(readonly=True)
    # Outbound messages (vm.whatsapp.outbox): who sent it, and the send queue's bookkeeping.
    author_id = fields.Many2one("res.users", readonly=True)
    failure_reason = fields.Char(readonly=True)
    send_state = fields.Selection(
        [("queued", "Queued"), ("sending", "Sending")],
        readonly=True,
        copy=False,
        index="btree_not_null",  # only messages still in the queue have one
        help="Queued: waits for the outbox (next attempt at the given time). Sending: handed to the provider.",
    )
    attempt_count = fields.Integer("Send Attempts", readonly=True, copy=False)
    next_attempt_at = fields.Datetime("Next Attempt", readonly=True, copy=False)
    sending_started_at = fields.Datetime(readonly=True, copy=False)

    _sql_constraints = [
        (
            "external_uniq",
            "UNIQUE(integration_id, external_id)",
            "This provider message was already stored for this integration.",
        ),
    ]

    # Delivery statuses only move forward: read beats delivered beats sent (failed is final
    # unless the message is later reported read).
    _STATUS_RANK = {"received": 0, "pending": 0, "sent": 1, "delivered": 2, "failed": 2, "read": 3}

    @api.depends("conversation_id.integration_id", "conversation_id.company_id")
    def _compute_integration_and_company(self):
        for message in self:
            message.integration_id = message.conversation_id.integration_id
            message.company_id = message.conversation_id.company_id

    @api.model
    def _prepare_vals_from_event(self, conversation, event, log):
        vals = {
            "conversation_id": conversation.id,
            # the conversation's, given rather than computed (see integration_id)
            "integration_id": conversation.integration_id.id,
            "company_id": conversation.company_id.id,
            "external_id": event.message_id,
            "direction": "outbound" if event.from_me else "inbound",
            "message_type": event.message_type,
            "body": event.text or False,
            "vm_token": extract_token(event.text) or False,
            "sent_at": event.timestamp or fields.Datetime.now(),
            "status": "sent" if event.from_me else "received",
            "webhook_log_id": log.id,
        }
        if event.media:
            vals["media_ref"] = json.dumps(event.media)
            if conversation.integration_id.provider_downloads_media:
                vals["media_state"] = "pending"
        return vals

    # ------------------------------------------------------------------ inbox

    @api.model
    def _store_events(self, pairs):
        """Store the messages of (inbox item, conversation) pairs, each provider message once: one
        search for those already stored, one create for the new ones. A list in the order of
        ``pairs``: the new message, or None for one already stored (a redelivery).

        A message stored meanwhile by a concurrent transaction fails the create on the unique
        (integration, external id): the inbox then applies the batch request by request."""
        if not pairs:
            return []
        stored = self.search_fetch(
            [
                ("integration_id", "in", list({item.integration.id for item, _conversation in pairs})),
                ("external_id", "in", list({item.event.message_id for item, _conversation in pairs})),
            ],
            ["integration_id", "external_id"],
        )
        seen = {(message.integration_id.id, message.external_id) for message in stored}
        new = []
        for item, _conversation in pairs:
            key = (item.integration.id, item.event.message_id)
            new.append(key not in seen)
            seen.add(key)
        vals_list = [
            self._prepare_vals_from_event(conversation, item.event, item.log)
            for (item, conversation), is_new in zip(pairs, new, strict=True)
            if is_new
        ]
        messages = iter(self._create_once(vals_list))
        if any(vals.get("media_state") == "pending" for vals in vals_list):
            self.env.ref("visionmetrics_whatsapp.ir_cron_download_media")._trigger()
        return [next(messages) or None if is_new else None for is_new in new]

    @api.model
    def _create_once(self, vals_list):
        """Create messages in one INSERT; when one of them was stored meanwhile by a concurrent
        transaction (committed after this one started, so invisible to the search), create them
        one by one instead: that one is an empty recordset in the result, a redelivery."""
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                return list(self.create(vals_list))
        except UniqueViolation:
            if len(vals_list) == 1:
                return [self.browse()]
        return [message for vals in vals_list for message in self._create_once([vals])]

    @api.model
    def _apply_status_events(self, items):
        """The inbox's handler of delivery statuses: the messages found in one search, each moved
        forward (_apply_status). One (state, note) per item."""
        messages = self.search(
            [
                ("integration_id", "in", list({item.integration.id for item in items})),
                ("external_id", "in", list({item.event.message_id for item in items})),
            ]
        )
        by_key = {(message.integration_id.id, message.external_id): message for message in messages}
        results = []
        for item in items:
            event = item.event
            message = by_key.get((item.integration.id, event.message_id))
            if not message:
                note = self.env._(
                    "Status %(status)s for unknown message %(id)s.", status=event.status, id=event.message_id
                )
                results.append(("ignored", note))
                continue
            message._apply_status(event.status, event.error)
            results.append(("processed", False))
        return results

    def _apply_status(self, status, error=None):
        """Apply a delivery status if it moves the message forward."""
        for message in self.filtered(lambda m: m.direction == "outbound"):
            if self._STATUS_RANK.get(status, -1) > self._STATUS_RANK.get(message.status, 0):
                message.status = status
            if status == "failed" and error:
                message.write({"status_error": error, "failure_reason": clean_text(error, REASON_MAX_LENGTH)})

    # ------------------------------------------------------------------ actions

    def action_retry(self):
        """Queue failed outbound messages again (the user chooses to: a message whose outcome
        was unknown may then reach the contact twice). Same rights as replying."""
        if not self:
            return True
        if self.filtered(lambda m: m.direction != "outbound" or m.status != "failed"):
            raise UserError(self.env._("Only failed outbound messages can be sent again."))
        access.check_records(self, "read")
        for conversation in self.conversation_id:
            conversation._check_can_reply()
        self.sudo().write(
            {
                "status": "pending",
                "send_state": "queued",
                "attempt_count": 0,
                "next_attempt_at": False,
                "failure_reason": False,
                "status_error": False,
            }
        )
        self.env["vm.whatsapp.outbox"]._wake_up()
        return True

    @api.model
    def _cron_download_media(self, limit=50):
        """Download pending media into attachments, outside the webhook request."""
        messages = self.search([("media_state", "=", "pending")], order="id", limit=limit)
        for message in messages:
            message._download_media()
            # one message per transaction: a failure never undoes the others
            self.env.cr.commit()  # pylint: disable=invalid-commit

    def _download_media(self):
        self.ensure_one()
        attempts = self.media_attempts + 1
        try:
            adapter = self.integration_id._get_provider()
            content, mimetype, filename = adapter.download_media(json.loads(self.media_ref or "{}"))
        except WhatsAppProviderRetryableError as e:
            state = "failed" if attempts >= MEDIA_MAX_ATTEMPTS else "pending"
            self.write({"media_attempts": attempts, "media_error": str(e)[:250], "media_state": state})
            return
        except (WhatsAppProviderError, UserError, ValueError) as e:
            _logger.warning("WhatsApp media of message %s not downloaded: %s", self.id, e)
            self.write({"media_attempts": attempts, "media_error": str(e)[:250], "media_state": "failed"})
            return
        attachment = self.env["ir.attachment"].create(
            {
                "name": filename or f"whatsapp-{self.message_type}-{self.id}",
                "raw": content,
                "mimetype": mimetype or "application/octet-stream",
                "res_model": self._name,
                "res_id": self.id,
                "company_id": self.company_id.id,
            }
        )
        self.write(
            {"attachment_id": attachment.id, "media_state": "done", "media_error": False, "media_attempts": attempts}
        )
