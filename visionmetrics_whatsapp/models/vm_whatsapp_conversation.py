import logging
import uuid
from collections import defaultdict
from datetime import timedelta

from psycopg2.errors import UniqueViolation

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import format_datetime, mute_logger

from .. import providers
from ..tools.media import CAPTION_KINDS, CAPTION_MAX_LENGTH, DOCUMENT_MAX_SIZE, TEXT_MAX_LENGTH, media_kind
from ..tools.phone import mask, to_e164, variants
from ..tools.text import clean_text
from . import access

_logger = logging.getLogger(__name__)


class ConcurrentConversationError(Exception):
    """The contact's conversation was created by a concurrent request committed after this
    transaction's snapshot: the request is applied again in a new transaction."""


class VmWhatsappConversation(models.Model):
    _name = "vm.whatsapp.conversation"
    _description = "WhatsApp Conversation"
    _order = "last_message_at desc, id desc"
    _rec_name = "contact_name"
    _check_company_auto = True

    integration_id = fields.Many2one(
        "vm.whatsapp.integration", required=True, index=True, ondelete="cascade", check_company=True
    )
    company_id = fields.Many2one(
        related="integration_id.company_id", store=True, index=True, precompute=True, required=True
    )
    contact_identity = fields.Char(required=True, help="The provider's id for the contact: wa_id, JID or LID.")
    contact_phone = fields.Char("Phone", index="btree_not_null", help="E.164, when known.")
    contact_name = fields.Char("Contact")
    lead_id = fields.Many2one("crm.lead", index=True, ondelete="set null", check_company=True)
    partner_id = fields.Many2one("res.partner", string="Contact Partner", index="btree_not_null", check_company=True)
    attribution = fields.Selection(
        [("token", "Marketing token"), ("phone", "Phone number"), ("anonymous", "New lead"), ("manual", "Manual")],
        readonly=True,
    )
    vm_token = fields.Char("Token", index="btree_not_null", readonly=True)
    ctwa_clid = fields.Char("Click ID (ctwa_clid)", readonly=True, index="btree_not_null")
    first_message_at = fields.Datetime(readonly=True)
    last_message_at = fields.Datetime(readonly=True, index=True)
    message_ids = fields.One2many("vm.whatsapp.message", "conversation_id", string="Messages")
    message_count = fields.Integer(compute="_compute_message_count")
    can_send_free_text = fields.Boolean(
        "Can Reply", compute="_compute_can_send_free_text", help="Whether a free-form reply can be sent now."
    )
    send_window_message = fields.Char("Why Replying Is Not Possible", compute="_compute_can_send_free_text")

    _sql_constraints = [
        (
            "contact_uniq",
            "UNIQUE(integration_id, contact_identity)",
            "There is already a conversation with this contact on this integration.",
        ),
    ]

    @api.depends("message_ids")
    def _compute_message_count(self):
        counts = dict(
            self.env["vm.whatsapp.message"]._read_group(
                [("conversation_id", "in", self.ids)], ["conversation_id"], ["__count"]
            )
        )
        for conversation in self:
            conversation.message_count = counts.get(conversation, 0)

    def _compute_can_send_free_text(self):
        last_inbound = dict(
            self.env["vm.whatsapp.message"]._read_group(
                [("conversation_id", "in", self._origin.ids), ("direction", "=", "inbound")],
                ["conversation_id"],
                ["sent_at:max"],
            )
        )
        now = fields.Datetime.now()
        for conversation in self:
            reason = conversation._reply_refusal(last_inbound.get(conversation._origin), now)
            conversation.can_send_free_text = not reason
            conversation.send_window_message = reason or False

    def _reply_refusal(self, last_inbound_at, now):
        """Why no free-form message can be sent in this conversation now (a sentence for the
        user), or None: the integration is not connected, or the provider's customer service
        window (Meta, 360dialog: 24 hours after the contact's last message) is closed."""
        integration = self.integration_id
        if not integration.active or integration.state != "connected":
            return self.env._(
                "The WhatsApp number %(name)s is not connected: a WhatsApp administrator must connect it "
                "again (Settings > WhatsApp) before you can reply.",
                name=integration.name,
            )
        provider_class = providers.PROVIDERS.get(integration.provider)
        window = provider_class.free_text_window if provider_class else None
        if not window:
            return None
        if not last_inbound_at:
            return self.env._(
                "The contact has not written to this number yet: WhatsApp only accepts template messages until they do."
            )
        if now - last_inbound_at > timedelta(seconds=window):
            return self.env._(
                "More than %(hours)s hours have passed since the contact's last message (%(when)s): WhatsApp "
                "only accepts template messages now. You can reply freely again once the contact writes.",
                hours=window // 3600,
                when=format_datetime(self.env, last_inbound_at),
            )
        return None

    def _compute_display_name(self):
        for conversation in self:
            conversation.display_name = (
                conversation.contact_name or conversation.contact_phone or conversation.contact_identity or ""
            )

    def action_open_lead(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "crm.lead",
            "res_id": self.lead_id.id,
            "view_mode": "form",
        }

    def action_send_message(self, body, attachment_ids=None):
        """Queue a reply from the current user: ``body`` (text) and the files ``attachment_ids``
        (ir.attachment ids). Each file is one message, the text its caption (of the first file
        that takes one); a text that cannot be a caption is a message of its own, sent first.
        The outbox sends them within seconds (vm.whatsapp.outbox). Returns the id of the first
        new message (``pending``). Raises UserError when replying is not possible now (see
        ``send_window_message``) or there is nothing to send."""
        self.ensure_one()
        self._check_can_reply()
        text = (clean_text(body) if isinstance(body, str) else "").strip()
        if len(text) > TEXT_MAX_LENGTH:
            raise UserError(
                self.env._(
                    "The message is %(length)s characters long; WhatsApp accepts at most %(max)s.",
                    length=len(text),
                    max=TEXT_MAX_LENGTH,
                )
            )
        files = self._reply_files(attachment_ids)
        if not text and not files:
            raise UserError(self.env._("Write a message or attach a file before sending."))
        captioned = next((i for i, (_a, kind) in enumerate(files) if kind in CAPTION_KINDS), None)
        if len(text) > CAPTION_MAX_LENGTH:
            captioned = None
        vals_list = []
        if text and captioned is None:
            vals_list.append(self._reply_vals(body=text))
        for i, (attachment, kind) in enumerate(files):
            vals_list.append(
                self._reply_vals(body=text if i == captioned else False, message_type=kind, attachment=attachment)
            )
        # Users read messages only: created as superuser once checked, by the ORM (create_uid
        # and author_id are the user's).
        messages = self.env["vm.whatsapp.message"].sudo().create(vals_list)
        self._attach_files(messages)
        now = fields.Datetime.now()
        self.sudo().write({"last_message_at": now, "first_message_at": self.first_message_at or now})
        self.env["vm.whatsapp.outbox"]._wake_up()
        return messages[:1].id

    def _check_can_reply(self):
        """Raise unless the current user may reply in this conversation now: they can read it
        and its integration (so both belong to the companies they work in), and replying is
        possible (``send_window_message``)."""
        self.ensure_one()
        if not (self.env.su or self.env.user.has_group("visionmetrics_whatsapp.group_whatsapp_user")):
            raise AccessError(self.env._("Only WhatsApp users can reply to WhatsApp conversations."))
        access.check_records(self, "read")
        access.check_records(self.integration_id, "read")
        if not self.can_send_free_text:
            raise UserError(self.send_window_message)

    def _reply_files(self, attachment_ids):
        """[(attachment, media kind)] of the files to send, checked: they exist, the user may read
        them, and WhatsApp accepts their size."""
        if not attachment_ids:
            return []
        if isinstance(attachment_ids, int):
            attachment_ids = [attachment_ids]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in attachment_ids):
            raise UserError(self.env._("The files to send are given by their ids."))
        attachments = self.env["ir.attachment"].browse(list(dict.fromkeys(attachment_ids)))
        if len(attachments.exists()) != len(attachments):
            raise UserError(self.env._("A file to send no longer exists; attach it again."))
        try:
            attachments.check("read")
        except AccessError:
            raise AccessError(self.env._("You can only send files that you can open.")) from None
        files = []
        for attachment in attachments.sudo():
            kind = media_kind(attachment.mimetype, attachment.file_size)
            if kind is None:
                raise UserError(
                    self.env._(
                        "%(name)s is too large: WhatsApp accepts files of at most %(max)s MB.",
                        name=attachment.name,
                        max=DOCUMENT_MAX_SIZE // (1024 * 1024),
                    )
                )
            files.append((attachment, kind))
        return files

    def _reply_vals(self, body, message_type="text", attachment=None):
        return {
            "conversation_id": self.id,
            "integration_id": self.integration_id.id,
            "company_id": self.company_id.id,
            # a local id until the provider gives its own (the outbox stores it)
            "external_id": f"local:{uuid.uuid4().hex}",
            "direction": "outbound",
            "message_type": message_type,
            "body": body,
            "attachment_id": attachment.id if attachment else False,
            "sent_at": fields.Datetime.now(),
            "status": "pending",
            "send_state": "queued",
            "author_id": self.env.uid,
        }

    def _attach_files(self, messages):
        """Each sent file belongs to its message from now on (its access follows the message's):
        a file uploaded for the reply is moved, a file of another record is copied."""
        for message in messages.filtered("attachment_id"):
            attachment = message.attachment_id.sudo()
            vals = {"res_model": message._name, "res_id": message.id, "company_id": message.company_id.id}
            if not attachment.res_id or attachment.res_model in (False, self._name, "mail.compose.message"):
                attachment.write(vals)
            else:
                message.attachment_id = attachment.copy(vals)

    # ------------------------------------------------------------------ inbox

    @api.model
    def _apply_message_events(self, items):
        """The inbox's handler of messages (vm.whatsapp.inbox.HANDLERS), for a whole batch: the
        conversations found or created (one search, one create), the messages stored once (one
        search, one create), then the conversations updated and attributed together. One
        (state, note) per item."""
        results = [None] * len(items)
        todo = []
        for i, item in enumerate(items):
            if item.event.is_group:
                note = self.env._("Group message %(id)s: groups are not conversations.", id=item.event.message_id)
                results[i] = ("ignored", note)
            else:
                todo.append(i)
        conversations = self._get_or_create_for_events([(items[i].integration, items[i].event) for i in todo])
        pairs = [(items[i], conversations[(items[i].integration.id, items[i].event.contact_identity)]) for i in todo]
        messages = self.env["vm.whatsapp.message"]._store_events(pairs)
        stored = []
        for i, (item, conversation), message in zip(todo, pairs, messages, strict=True):
            results[i] = ("processed", False) if message else ("duplicate", False)
            if message:
                stored.append((conversation, message, item.event))
        self._register_messages(stored)
        return results

    @api.model
    def _get_or_create_for_events(self, pairs):
        """The conversations of the contacts of (integration, event) pairs, those that are new
        created together: {(integration id, contact identity): conversation}."""
        if not pairs:
            return {}
        found = self.search_fetch(
            [
                ("integration_id", "in", list({integration.id for integration, _event in pairs})),
                ("contact_identity", "in", list({event.contact_identity for _integration, event in pairs})),
            ],
            ["integration_id", "company_id", "contact_identity", *self._INGEST_FIELDS],
        )
        conversations = {(c.integration_id.id, c.contact_identity): c for c in found}
        new = {}
        for integration, event in pairs:
            key = (integration.id, event.contact_identity)
            if key not in conversations and key not in new:
                new[key] = self._prepare_vals_from_event(integration, event)
            if key in new:  # the batch's first and last messages of a new contact, set at creation
                vals, sent_at = new[key], event.timestamp or fields.Datetime.now()
                vals["first_message_at"] = min(vals.get("first_message_at") or sent_at, sent_at)
                vals["last_message_at"] = max(vals.get("last_message_at") or sent_at, sent_at)
                if not vals["contact_name"] and not event.from_me and event.contact_name:
                    vals["contact_name"] = event.contact_name
        if new:
            try:
                with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                    created = self.create(list(new.values()))
            except UniqueViolation:
                # Created by a concurrent transaction committed after this one started: invisible
                # here, so the request fails and is applied again shortly.
                raise ConcurrentConversationError(
                    self.env._("A concurrent request created this contact's conversation; applied again shortly.")
                ) from None
            conversations.update(zip(new, created, strict=True))
        return conversations

    _INGEST_FIELDS = ["first_message_at", "last_message_at", "contact_name", "contact_phone", "lead_id", "attribution"]

    @api.model
    def _prepare_vals_from_event(self, integration, event):
        region = integration.company_id.country_id.code
        return {
            "integration_id": integration.id,
            "contact_identity": event.contact_identity,
            "contact_phone": to_e164(event.contact_phone, region) if event.contact_phone else False,
            "contact_name": (event.contact_name if not event.from_me else False) or False,
        }

    @api.model
    def _register_messages(self, stored):
        """Update the conversations of new messages ((conversation, message, event) triples, in
        arrival order): first and last message times, the contact's name; then attribute those
        that received an inbound message."""
        updates = defaultdict(dict)
        tokens = defaultdict(list)  # conversation -> tokens of its new inbound messages, in order
        for conversation, message, event in stored:
            vals = updates[conversation]
            sent_at = message.sent_at
            first = vals.get("first_message_at", conversation.first_message_at)
            last = vals.get("last_message_at", conversation.last_message_at)
            if not first or sent_at < first:
                vals["first_message_at"] = sent_at
            if not last or sent_at > last:
                vals["last_message_at"] = sent_at
            if not event.from_me and event.contact_name and not conversation.contact_name:
                vals.setdefault("contact_name", event.contact_name)
            if message.direction == "inbound":
                tokens[conversation].extend([message.vm_token] if message.vm_token else [])
        for conversation, vals in updates.items():
            if vals:
                conversation.write(vals)
        self._attribute_all(tokens)

    @api.model
    def _attribute_all(self, tokens):
        """Give conversations their lead (DESIGN §7), with a few queries for all of them:
        ``tokens`` maps each conversation to the tokens of its new inbound messages, in order.

        1. the first token that is a lead's first-touch token of the conversation's company
           (re-attributes a conversation attributed by phone or as a new lead);
        2. else, for a conversation with no lead yet, the newest lead (or contact) of the
           company with the contact's phone;
        3. else a new lead, one per company and phone however many conversations share it."""
        Lead = self.env["crm.lead"]
        wanted = {
            (conversation.company_id, token)
            for conversation, conversation_tokens in tokens.items()
            if conversation.attribution not in ("token", "manual")
            for token in conversation_tokens
        }
        by_token = Lead._vm_whatsapp_find_by_tokens(wanted)
        for conversation, conversation_tokens in tokens.items():
            if conversation.attribution in ("token", "manual"):
                continue
            token = next((t for t in conversation_tokens if (conversation.company_id, t) in by_token), None)
            if token:
                conversation._set_lead(by_token[(conversation.company_id, token)], "token", token)
        orphans = [conversation for conversation in tokens if not conversation.lead_id]
        if not orphans:
            return
        leads = Lead._vm_whatsapp_find_by_phones(
            [
                (conversation.company_id, variants(conversation.contact_phone), conversation.integration_id)
                for conversation in orphans
            ]
        )
        unknown = []
        for conversation, lead in zip(orphans, leads, strict=True):
            if lead:
                conversation._set_lead(lead, "phone")
            else:
                unknown.append(conversation)
        contacts = [(c.company_id, c.contact_name, c.contact_phone, None, c.integration_id) for c in unknown]
        for conversation, lead in zip(unknown, Lead._vm_whatsapp_create_leads(contacts), strict=True):
            conversation._set_lead(lead, "anonymous")

    def _set_lead(self, lead, attribution, token=None):
        previous = self.attribution
        self.write(
            {
                "lead_id": lead.id,
                "partner_id": lead.partner_id.id or self.partner_id.id,
                "attribution": attribution,
                "vm_token": token or self.vm_token,
            }
        )
        _logger.info(
            "WhatsApp conversation %s (%s) attributed to lead %s by %s%s",
            self.id,
            mask(self.contact_phone) or "no phone",
            lead.id,
            attribution,
            f" (was {previous})" if previous else "",
        )
