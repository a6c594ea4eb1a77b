from odoo import api, fields, models
from odoo.exceptions import UserError


class ResCompany(models.Model):
    _inherit = "res.company"

    vm_whatsapp_integration_ids = fields.One2many(
        "vm.whatsapp.integration", "company_id", string="WhatsApp Integrations"
    )

    @api.ondelete(at_uninstall=False)
    def _unlink_except_vm_whatsapp_webhook_logs(self):
        """A company's webhook logs are its records (the log table has no foreign keys, which
        would have refused the deletion)."""
        Log = self.env["vm.whatsapp.webhook.log"].sudo()
        for company in self:
            if Log.search_count([("company_id", "=", company.id)], limit=1):
                raise UserError(
                    self.env._(
                        "The company %(company)s has WhatsApp webhook logs. Delete them first "
                        "(CRM → Configuration → WhatsApp → Webhook Logs).",
                        company=company.display_name,
                    )
                )
