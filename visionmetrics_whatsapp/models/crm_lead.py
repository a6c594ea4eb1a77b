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
    whatsapp_conversation_ids = fields.One2many(
        "vm.whatsapp.conversation", "lead_id", string="WhatsApp Conversations"
    )
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
