from odoo import fields, models


class ResCompany(models.Model):
    _inherit = "res.company"

    vm_whatsapp_integration_ids = fields.One2many(
        "vm.whatsapp.integration", "company_id", string="WhatsApp Integrations"
    )
