import logging

from psycopg2.errors import UniqueViolation

from odoo import api, fields, models
from odoo.tools import mute_logger

from ..tools.phone import mask, to_e164, variants

_logger = logging.getLogger(__name__)


class ConcurrentConversationError(Exception):
    """The contact's conversation was created by a concurrent request committed after this
    transaction's snapshot: the event must be processed again in a new transaction."""


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
    lead_id = fields.Many2one("crm.lead", string="Lead", index=True, ondelete="set null", check_company=True)
    partner_id = fields.Many2one("res.partner", string="Contact Partner", index="btree_not_null", check_company=True)
    attribution = fields.Selection(
        [("token", "Marketing token"), ("phone", "Phone number"), ("anonymous", "New lead"), ("manual", "Manual")],
        readonly=True,
    )
    vm_token = fields.Char("Token", index="btree_not_null", readonly=True)
    first_message_at = fields.Datetime(readonly=True)
    last_message_at = fields.Datetime(readonly=True, index=True)
    message_ids = fields.One2many("vm.whatsapp.message", "conversation_id", string="Messages")
    message_count = fields.Integer(compute="_compute_message_count")

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

    # ------------------------------------------------------------------ ingest

    _INGEST_FIELDS = ["first_message_at", "last_message_at", "contact_name", "contact_phone", "lead_id", "attribution"]

    @api.model
    def _get_or_create_for_event(self, integration, event):
        """The conversation of the event's contact on ``integration``, created when new."""
        return self._get_or_create_for_events([(integration, event)])[(integration.id, event.contact_identity)]

    @api.model
    def _get_or_create_for_events(self, items):
        """The conversations of the contacts of (integration, event) pairs, created when new (in
        one search for those that exist): {(integration id, contact identity): conversation}."""
        identities = {(integration.id, event.contact_identity) for integration, event in items}
        found = self.search_fetch(
            [
                ("integration_id", "in", list({integration_id for integration_id, _identity in identities})),
                ("contact_identity", "in", list({identity for _integration_id, identity in identities})),
            ],
            ["integration_id", "company_id", "contact_identity", *self._INGEST_FIELDS],
        )
        conversations = {(c.integration_id.id, c.contact_identity): c for c in found}
        for integration, event in items:
            key = (integration.id, event.contact_identity)
            if key not in conversations:
                conversations[key] = self._create_for_event(integration, event)
        return conversations

    @api.model
    def _create_for_event(self, integration, event):
        region = integration.company_id.country_id.code
        vals = {
            "integration_id": integration.id,
            "contact_identity": event.contact_identity,
            "contact_phone": to_e164(event.contact_phone, region) if event.contact_phone else False,
            "contact_name": (event.contact_name if not event.from_me else False) or False,
        }
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                return self.create(vals)
        except UniqueViolation:
            # Created by a concurrent delivery committed after this transaction started: it is
            # invisible here, so the request is processed again in a new transaction.
            raise ConcurrentConversationError() from None

    def _register_message(self, message, event):
        """Update the conversation for a new message and attribute it (inbound messages only)."""
        self.ensure_one()
        vals = {}
        sent_at = message.sent_at
        if not self.first_message_at or sent_at < self.first_message_at:
            vals["first_message_at"] = sent_at
        if not self.last_message_at or sent_at > self.last_message_at:
            vals["last_message_at"] = sent_at
        if not event.from_me and event.contact_name and not self.contact_name:
            vals["contact_name"] = event.contact_name
        if vals:
            self.write(vals)
        if message.direction == "inbound":
            self._attribute(message.vm_token)

    def _attribute(self, token=None):
        """Give the conversation a lead (DESIGN §7): by token, else by phone, else a new lead.
        A token re-attributes a conversation attributed by phone or as a new lead."""
        self.ensure_one()
        Lead = self.env["crm.lead"]
        company = self.company_id
        if token and self.attribution not in ("token", "manual"):
            lead = Lead._vm_whatsapp_find_by_token(company, token)
            if lead:
                self._set_lead(lead, "token", token)
                return
        if self.lead_id:
            return
        lead = Lead.browse()
        if self.contact_phone:
            lead = Lead._vm_whatsapp_find_by_phone(company, variants(self.contact_phone))
            if lead:
                self._set_lead(lead, "phone")
                return
        lead = Lead._vm_whatsapp_create_lead(company, self.contact_name, self.contact_phone)
        self._set_lead(lead, "anonymous")

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
