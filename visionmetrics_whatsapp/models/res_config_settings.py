from odoo import api, fields, models
from odoo.exceptions import UserError


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    vm_whatsapp_integration_ids = fields.One2many(related="company_id.vm_whatsapp_integration_ids")
    vm_whatsapp_key_status = fields.Char("Encryption Key", compute="_compute_vm_whatsapp_key_status")
    vm_whatsapp_failed_webhook_count = fields.Integer(
        "Failed Webhook Requests", compute="_compute_vm_whatsapp_failed_webhook_count"
    )

    @api.depends("company_id")
    def _compute_vm_whatsapp_key_status(self):
        try:
            keyring = self.env["vm.whatsapp.integration"]._get_keyring()
            status = self.env._("Configured (key id %(kid)s)", kid=keyring.current_id)
        except UserError as e:
            status = e.args[0]
        for settings in self:
            settings.vm_whatsapp_key_status = status

    @api.depends("company_id")
    def _compute_vm_whatsapp_failed_webhook_count(self):
        for settings in self:
            company = settings.company_id or self.env.company
            settings.vm_whatsapp_failed_webhook_count = (
                self.env["vm.whatsapp.webhook.log"]
                .sudo()
                .search_count([("company_id", "=", company.id), ("state", "=", "failed")])
            )

    def action_vm_whatsapp_view_failed_webhooks(self):
        action = self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_webhook_log_action")
        action["domain"] = [("state", "=", "failed"), ("company_id", "=", (self.company_id or self.env.company).id)]
        return action

    def action_vm_whatsapp_manage(self):
        return self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_integration_action")

    def action_vm_whatsapp_connect(self):
        """Connect the company's WhatsApp: its first integration that is not connected (else its
        first one), created as a sandbox integration when the company has none."""
        company = self.company_id or self.env.company
        integrations = self.env["vm.whatsapp.integration"].search([("company_id", "=", company.id)])
        integration = integrations.filtered(lambda i: i.state != "connected")[:1] or integrations[:1]
        if not integration:
            integration = self.env["vm.whatsapp.integration"].create({"company_id": company.id})
        return integration.action_connect()

    def action_vm_whatsapp_test_key(self):
        kid = self.env["vm.whatsapp.integration"]._get_keyring().self_test()
        return self._vm_whatsapp_notify(
            self.env._("The encryption key %(kid)s works: a secret was encrypted and decrypted.", kid=kid)
        )

    def action_vm_whatsapp_reencrypt(self):
        count, unreadable = self.env["vm.whatsapp.integration"]._reencrypt_all_secrets()
        if unreadable:
            return self._vm_whatsapp_notify(
                self.env._(
                    "%(count)s secrets were re-encrypted with the current key. These integrations have secrets "
                    "that no configured key can read; enter them again: %(names)s",
                    count=count,
                    names=", ".join(unreadable.mapped("name")),
                ),
                notification_type="warning",
            )
        return self._vm_whatsapp_notify(
            self.env._("%(count)s secrets were re-encrypted with the current key.", count=count)
        )

    def _vm_whatsapp_notify(self, message, notification_type="success"):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": message, "type": notification_type, "sticky": False},
        }
