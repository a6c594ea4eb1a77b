import json
import logging
from collections import defaultdict
from urllib.parse import quote

from markupsafe import Markup
from psycopg2.errors import UniqueViolation

from odoo import Command, api, fields, models
from odoo.addons.mail.tools.discuss import Store
from odoo.exceptions import UserError
from odoo.tools import mute_logger, plaintext2html
from odoo.tools.mail import generate_tracking_message_id

from ..providers import WhatsAppProviderError, WhatsAppProviderRetryableError
from ..tools.text import REASON_MAX_LENGTH, clean_text
from ..tools.token import extract_token
from . import access
from .bulk import insert_records

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
    _inherit = ["vm.whatsapp.company.guard"]
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
        # no index of its own: the unique (integration_id, external_id) one serves its searches
        **{**_FROM_CONVERSATION, "index": False},
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
    # the mail.message that shows the message in its conversation's thread (mail_message.py)
    mail_message_ids = fields.One2many("mail.message", "vm_whatsapp_message_id", readonly=True)

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

    # Fields the thread shows: a change is sent to the open threads (_queue_thread_update).
    _THREAD_FIELDS = frozenset(["status", "failure_reason", "status_error", "attachment_id", "media_state", "body"])

    @api.model_create_multi
    def create(self, vals_list):
        messages = super().create(vals_list)
        messages._mirror_in_threads()
        return messages

    def write(self, vals):
        result = super().write(vals)
        if vals.get("attachment_id"):
            for message in self:
                message.mail_message_ids.sudo().write({"attachment_ids": [Command.link(message.attachment_id.id)]})
        if not self._THREAD_FIELDS.isdisjoint(vals):
            self._queue_thread_update("update")
        return result

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

    # ------------------------------------------------------------------ thread

    def _mirror_in_threads(self):
        """Show the messages in their conversations' threads: one mail.message each, created
        together, with no follower and no notification (the inbox's batch makes one create);
        then queue what the open threads learn (_send_thread_updates). The users are notified
        by the inbox once the batch's conversations have their leads (_notify_users)."""
        if not self:
            return
        self._create_thread_messages()
        self._queue_thread_update("new")

    def _create_thread_messages(self):
        """The mail.message of each message (no notification, no follower)."""
        subtype_id = self.env["ir.model.data"]._xmlid_to_res_id("mail.mt_comment")
        shared = {}  # what the mail.message of one conversation and author share, read once
        vals_list = []
        for message in self:
            key = (message.conversation_id, message.direction, message.author_id)
            if key not in shared:
                shared[key] = message._mail_message_shared_vals(subtype_id)
            vals_list.append(
                {
                    **shared[key],
                    "message_id": generate_tracking_message_id("vm-whatsapp"),
                    "date": message.sent_at or fields.Datetime.now(),
                    "vm_whatsapp_message_id": message.id,
                    **({"attachment_ids": [Command.link(message.attachment_id.id)]} if message.attachment_id else {}),
                }
            )
        Mail_sudo = self.env["mail.message"].sudo()
        # with no file, the values are all that mail.message.create() would compute: one INSERT
        with_files = [vals for vals in vals_list if "attachment_ids" in vals]
        if with_files:
            Mail_sudo.create(with_files)
        insert_records(Mail_sudo, [vals for vals in vals_list if "attachment_ids" not in vals])
        # what mail.message.create() invalidates on its documents (_invalidate_documents)
        self.conversation_id.invalidate_recordset(["message_needaction", "message_needaction_counter"])

    def _mail_message_shared_vals(self, subtype_id):
        """The values of a message's mail.message that its conversation and author decide."""
        conversation = self.conversation_id
        if self.direction == "inbound":
            author = conversation.partner_id
            name = conversation.contact_name or conversation.contact_phone or conversation.contact_identity
        else:
            author = self.author_id.partner_id
            name = conversation.integration_id.name
        return {
            "model": conversation._name,
            "res_id": conversation.id,
            "record_name": conversation.display_name,
            "message_type": "comment",
            "subtype_id": subtype_id,
            # no body: the text is the provider record's, rendered by mail.message._to_store (an
            # HTML body would be sanitized twice per message, a third of the mirror's cost)
            "author_id": author.id,
            "email_from": author.email_formatted if author else name,
            "reply_to": False,
        }

    def _thread_body(self):
        return plaintext2html(self.body) if self.body else Markup()

    def _thread_data(self):
        """What the thread shows of a message besides its text and files (message_patch.js)."""
        self.ensure_one()
        location = self.message_type == "location" and self.body
        return {
            "id": self.id,
            "direction": self.direction,
            "status": self.status,
            "message_type": self.message_type,
            "failure_reason": self.failure_reason or self.status_error or False,
            "media_state": self.media_state or False,
            "location_url": f"https://www.google.com/maps/search/?api=1&query={quote(location)}" if location else False,
        }

    def _queue_thread_update(self, kind):
        """Remember messages that are new or changed, for _send_thread_updates, which runs with
        the precommit hooks: at commit, and when a savepoint closes (Odoo flushes there). A
        savepoint rolled back drops what was queued in it, and the bus notifications inserted
        in it."""
        data = self.env.cr.precommit.data
        if "vm.whatsapp.thread" not in data:
            data["vm.whatsapp.thread"] = {"new": set(), "update": set()}
            env = self.env
            self.env.cr.precommit.add(lambda: env["vm.whatsapp.message"]._send_thread_updates())
        data["vm.whatsapp.thread"][kind].update(self.ids)

    @api.model
    def _send_thread_updates(self):
        """Send every open thread its new and changed messages: one bus notification per
        conversation for all the messages queued. It carries the ids of the new messages, which
        the open thread fetches with what their ticks show (a rendering of each message here
        would cost the inbox more than the message itself), and what the ticks of the changed
        ones show."""
        queued = self.env.cr.precommit.data.pop("vm.whatsapp.thread", None)
        if not queued:
            return
        Message = self.sudo()
        new = Message.browse(sorted(queued["new"])).exists()
        changed = Message.browse(sorted(queued["update"] - queued["new"])).exists()
        by_conversation = defaultdict(list)
        for message in new | changed:
            by_conversation[message.conversation_id].append(message)
        for conversation, messages in by_conversation.items():
            new_ids = [mail.id for message in messages if message in new for mail in message.mail_message_ids]
            conversation._bus_send(
                "vm.whatsapp/thread",
                {
                    "thread_id": conversation.id,
                    "new_message_ids": new_ids,
                    "data": {
                        "mail.message": [
                            {"id": mail_message.id, "vm_whatsapp": message._thread_data()}
                            for message in messages
                            if message not in new
                            for mail_message in message.mail_message_ids
                        ]
                    },
                },
            )
        self.env.flush_all()  # precommit hooks run after the transaction's last flush

    def _notify_users(self):
        """An Odoo notification (Discuss inbox, needaction) of each message to the users of its
        conversation (the salesperson, else the sales team): one create for all, then one bus
        notification per user and message, which updates their inbox counter."""
        notifications, sends = [], []
        by_conversation = defaultdict(list)
        for message in self:
            by_conversation[message.conversation_id].append(message)
        for conversation, messages in by_conversation.items():
            users = conversation._notify_users()
            if not users:
                continue
            for message in messages:
                for mail_message in message.mail_message_ids:
                    notifications.extend(
                        {
                            "author_id": mail_message.author_id.id,
                            "mail_message_id": mail_message.id,
                            "notification_status": "sent",
                            "notification_type": "inbox",
                            "res_partner_id": user.partner_id.id,
                        }
                        for user in users
                    )
                    sends.extend((user, mail_message) for user in users)
        if not notifications:
            return
        self.env["mail.notification"].sudo().create(notifications)
        payloads = {}
        for user, mail_message in sends:
            if mail_message not in payloads:
                payloads[mail_message] = Store(mail_message).get_result()
                for values in payloads[mail_message].get("mail.message", []):
                    values["needaction"] = True
            user._bus_send("mail.message/inbox", payloads[mail_message])

    # ------------------------------------------------------------------ inbox

    @api.model
    def _store_events(self, pairs):
        """Store the messages of (inbox item, conversation) pairs, each provider message once: one
        search for those already stored, one create for the new ones. A list in the order of
        ``pairs``: the new message, or None for one already stored (a redelivery).

        A message stored meanwhile by a concurrent transaction fails the create on the unique
        (integration, external id): the inbox then applies the batch again in parts."""
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
                messages = insert_records(self, vals_list)
                messages._mirror_in_threads()
                return list(messages)
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
