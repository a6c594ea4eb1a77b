import logging
import uuid
from collections import defaultdict

from psycopg2.errors import UniqueViolation

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import mute_logger

from ..tools.phone import mask, to_e164, variants
from .access import check_records

_logger = logging.getLogger(__name__)


class ConcurrentConversationError(Exception):
    """The contact's conversation was created by a concurrent request committed after this
    transaction's snapshot: the request is applied again in a new transaction."""


class VmWhatsappConversation(models.Model):
    _name = "vm.whatsapp.conversation"
    _inherit = ["mail.thread", "bus.listener.mixin"]
    _description = "WhatsApp Conversation"
    # The thread shows the WhatsApp messages (mirrored as mail.message, see vm.whatsapp.message);
    # whoever may read the conversation may answer in it (action_send_message), as its salesperson.
    _mail_post_access = "read"
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
    lead_id = fields.Many2one("crm.lead", string="Lead", index=True, ondelete="set null", check_company=True)
    partner_id = fields.Many2one("res.partner", string="Contact Partner", index="btree_not_null", check_company=True)
    attribution = fields.Selection(
        [("token", "Marketing token"), ("phone", "Phone number"), ("anonymous", "New lead"), ("manual", "Manual")],
        readonly=True,
    )
    vm_token = fields.Char("Token", index="btree_not_null", readonly=True)
    first_message_at = fields.Datetime(readonly=True)
    last_message_at = fields.Datetime(readonly=True, index=True)
    # The provider's messages (DESIGN §3), not mail.thread's: mail.thread reads its own messages by
    # model and res_id, and the two searches that go through its message_ids are redefined below.
    message_ids = fields.One2many(
        "vm.whatsapp.message", "conversation_id", string="Messages", domain=[], auto_join=False
    )
    message_count = fields.Integer(compute="_compute_message_count")
    # chatui placeholders until outbound's branch is merged (HELPER_CONTRACTS): keep outbound's.
    can_send_free_text = fields.Boolean(compute="_compute_can_send_free_text")
    send_window_message = fields.Char(compute="_compute_can_send_free_text")

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

    @api.depends("integration_id.state")
    def _compute_can_send_free_text(self):
        # chatui placeholder until outbound's branch is merged (HELPER_CONTRACTS): keep outbound's.
        for conversation in self:
            connected = conversation.integration_id.state == "connected"
            conversation.can_send_free_text = connected
            conversation.send_window_message = (
                False if connected else self.env._("The WhatsApp number is not connected: connect it to reply.")
            )

    def _search_message_needaction(self, operator, operand):
        # mail.thread's goes through message_ids, which are here the provider's messages
        return self._search_mail_messages(operator, operand, [("needaction", "=", True)])

    def _search_message_has_error(self, operator, operand):
        return self._search_mail_messages(
            operator, operand, [("has_error", "=", True), ("author_id", "=", self.env.user.partner_id.id)]
        )

    def _search_mail_messages(self, operator, operand, domain):
        if operator not in ("=", "!=") or not isinstance(operand, bool):
            raise UserError(self.env._("Operation not supported"))
        messages = self.env["mail.message"]._search([("model", "=", self._name), *domain])
        positive = (operator == "=") == operand
        return [("id", "in" if positive else "not in", messages.subselect("res_id"))]

    def _compute_display_name(self):
        for conversation in self:
            conversation.display_name = (
                conversation.contact_name or conversation.contact_phone or conversation.contact_identity or ""
            )

    @api.model_create_multi
    def create(self, vals_list):
        # No creation note, follower or tracking per conversation: the inbox creates them by batch.
        quiet = self.with_context(mail_create_nolog=True, mail_create_nosubscribe=True, tracking_disable=True)
        return super(VmWhatsappConversation, quiet).create(vals_list).with_env(self.env)

    def action_open_lead(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "crm.lead",
            "res_id": self.lead_id.id,
            "view_mode": "form",
        }

    def action_send_message(self, body, attachment_ids=None):
        """Queue an outbound message from the current user: its id (DESIGN §10).

        chatui placeholder until outbound's branch is merged (HELPER_CONTRACTS): keep outbound's.
        It only stores the pending message (nothing sends it); one attachment at most."""
        self.ensure_one()
        check_records(self, "read")
        if not self.can_send_free_text:
            raise UserError(self.send_window_message)
        body = (body or "").strip()
        attachments = self._composer_attachments(attachment_ids or [])
        if not body and not attachments:
            raise UserError(self.env._("Write a message or attach a file to send."))
        if len(attachments) > 1:
            raise UserError(self.env._("Send one file per message."))
        mimetype = attachments.mimetype or ""
        kind = next((k for k in ("image", "audio", "video") if mimetype.startswith(k + "/")), "document")
        now = fields.Datetime.now()
        message = (
            self.env["vm.whatsapp.message"]
            .sudo()
            .create(
                {
                    "conversation_id": self.id,
                    "external_id": f"vm-pending-{uuid.uuid4().hex}",
                    "direction": "outbound",
                    "message_type": kind if attachments else "text",
                    "body": body or False,
                    "attachment_id": attachments.id,
                    "sent_at": now,
                    "status": "pending",
                    "author_id": self.env.uid,
                }
            )
        )
        attachments.sudo().write({"res_model": message._name, "res_id": message.id})
        self.sudo().last_message_at = now
        return message.id

    def _composer_attachments(self, attachment_ids):
        """The attachments the current user uploaded in this conversation's composer; an
        AccessError for any other (another user's, another record's)."""
        ids = list(dict.fromkeys(int(i) for i in attachment_ids))
        attachments = self.env["ir.attachment"].sudo().browse(ids).exists()
        placements = (("mail.compose.message", 0), (self._name, self.id))
        if len(attachments) != len(ids) or any(
            attachment.create_uid != self.env.user or (attachment.res_model, attachment.res_id) not in placements
            for attachment in attachments
        ):
            raise AccessError(self.env._("You can only send the files you attached to this conversation."))
        return attachments

    # ------------------------------------------------------------------ thread (web client)

    def _thread_to_store(self, store, /, *, fields=None, request_list=None):
        super()._thread_to_store(store, fields=fields, request_list=request_list)
        if request_list and "vm_whatsapp" in request_list:
            for conversation in self:
                store.add(conversation, {"vm_whatsapp": conversation._composer_state()}, as_thread=True)

    def _composer_state(self):
        self.ensure_one()
        return {
            "can_send": self.can_send_free_text,
            "reason": self.send_window_message or False,
            "integration": self.integration_id.display_name,
            "phone": self.contact_phone or False,
        }

    def _message_update_content(self, message, body, *args, **kwargs):
        if message.vm_whatsapp_message_id:
            raise UserError(self.env._("A WhatsApp message cannot be edited or deleted once sent."))
        return super()._message_update_content(message, body, *args, **kwargs)

    def _notify_users(self):
        """Who is told of this conversation's inbound messages: the lead's salesperson, else the
        members of the lead's sales team (else the integration's), among the internal users who
        may read the conversation."""
        self.ensure_one()
        lead = self.lead_id
        users = lead.user_id
        if not users:
            team = lead.team_id
            if not team and "team_id" in self.integration_id._fields:
                team = self.integration_id.team_id
            users = team.member_ids
        return users.filtered(
            lambda user: (
                user.active
                and not user.share
                and self.company_id in user.company_ids
                and user.has_group("visionmetrics_whatsapp.group_whatsapp_user")
            )
        )

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
        inbound = [message.id for _conversation, message, _event in stored if message.direction == "inbound"]
        self.env["vm.whatsapp.message"].browse(inbound)._notify_users()

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
            [(conversation.company_id, variants(conversation.contact_phone)) for conversation in orphans]
        )
        unknown = []
        for conversation, lead in zip(orphans, leads, strict=True):
            if lead:
                conversation._set_lead(lead, "phone")
            else:
                unknown.append(conversation)
        contacts = [(c.company_id, c.contact_name, c.contact_phone, None) for c in unknown]
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
