from odoo import api, fields, models


class CrmLead(models.Model):
    _inherit = "crm.lead"

    first_touch_token = fields.Char(
        index="btree_not_null",
        copy=False,
        tracking=True,
        help="VisionMetrics first-touch token. An inbound WhatsApp message containing "
        "'vm_token:<token>' is attributed to the lead with this token.",
    )
    whatsapp_conversation_ids = fields.One2many("vm.whatsapp.conversation", "lead_id", string="WhatsApp Conversations")
    whatsapp_message_count = fields.Integer("WhatsApp Messages", compute="_compute_whatsapp_message_count")

    @api.depends("whatsapp_conversation_ids")
    def _compute_whatsapp_message_count(self):
        for lead in self:
            lead.whatsapp_message_count = sum(lead.whatsapp_conversation_ids.mapped("message_count"))

    def action_view_whatsapp_conversations(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_conversation_action")
        action["domain"] = [("lead_id", "=", self.id)]
        action["context"] = {"create": False}
        if len(self.whatsapp_conversation_ids) == 1:
            action.update(view_mode="form", views=[(False, "form")], res_id=self.whatsapp_conversation_ids.id)
        return action

    # ------------------------------------------------------------------ WhatsApp attribution

    @api.model
    def _vm_whatsapp_company_domain(self, company):
        # Leads without a company are shared by all companies; another company's never match.
        return [("company_id", "in", [company.id, False])]

    @api.model
    def _vm_whatsapp_find_by_token(self, company, token):
        """The lead of ``company`` whose first-touch token is ``token`` (the newest if several)."""
        return self.search(
            [("first_touch_token", "=", token), *self._vm_whatsapp_company_domain(company)],
            order="create_date desc, id desc",
            limit=1,
        )

    @api.model
    def _vm_whatsapp_find_by_phone(self, company, phones):
        """The newest lead of ``company`` with one of the E.164 ``phones``; else a new lead for the
        newest contact (partner) of the company with one of them; else an empty recordset."""
        lead = self.search(
            [("phone_sanitized", "in", phones), *self._vm_whatsapp_company_domain(company)],
            order="create_date desc, id desc",
            limit=1,
        )
        if lead:
            return lead
        partner = self.env["res.partner"].search(
            [("phone_sanitized", "in", phones), ("company_id", "in", [company.id, False])],
            order="create_date desc, id desc",
            limit=1,
        )
        if partner:
            return self._vm_whatsapp_create_lead(company, partner.name, phones[0], partner=partner)
        return self.browse()

    @api.model
    def _vm_whatsapp_leads_enabled(self):
        # Webhooks run as the public user: read the CRM setting ("Leads") from the employee group.
        use_lead = self.env.ref("crm.group_use_lead", raise_if_not_found=False)
        return bool(use_lead) and use_lead in self.env.ref("base.group_user").sudo().implied_ids

    @api.model
    def _vm_whatsapp_create_lead(self, company, contact_name, phone, partner=None):
        """A new lead for a WhatsApp contact, with source WhatsApp."""
        name = contact_name or phone or self.env._("Unknown contact")
        vals = {
            "name": self.env._("WhatsApp: %(contact)s", contact=name),
            "contact_name": contact_name or False,
            "phone": phone or False,
            "partner_id": partner.id if partner else False,
            "company_id": company.id,
            "source_id": self.env.ref("visionmetrics_whatsapp.utm_source_whatsapp", raise_if_not_found=False).id,
            "user_id": False,
            "type": "lead" if self._vm_whatsapp_leads_enabled() else "opportunity",
        }
        return (
            self.with_company(company)
            .with_context(tracking_disable=True, mail_create_nolog=True, mail_create_nosubscribe=True)
            .create(vals)
        )
