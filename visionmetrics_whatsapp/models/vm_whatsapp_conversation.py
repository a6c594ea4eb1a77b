from odoo import api, fields, models


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
    contact_identity = fields.Char(
        required=True, help="The provider's id for the contact: wa_id, JID or LID."
    )
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
