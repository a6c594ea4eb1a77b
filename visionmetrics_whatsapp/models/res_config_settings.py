from odoo import api, fields, models
from odoo.exceptions import UserError

from . import access


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    vm_whatsapp_integration_ids = fields.One2many(related="company_id.vm_whatsapp_integration_ids")
    vm_whatsapp_key_status = fields.Char("Encryption Key", compute="_compute_vm_whatsapp_key_status")
    vm_whatsapp_failed_webhook_count = fields.Integer(
        "Failed Webhook Requests",
        compute="_compute_vm_whatsapp_failed_webhook_count",
        groups="visionmetrics_whatsapp.group_whatsapp_manager",
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
        access.check_manager(self.env)
        action = self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_webhook_log_action")
        action["domain"] = [("state", "=", "failed"), ("company_id", "=", (self.company_id or self.env.company).id)]
        return action

    def action_vm_whatsapp_manage(self):
        access.check_manager(self.env)
        return self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_integration_action")

    def action_vm_whatsapp_connect(self):
        """Connect the company's WhatsApp: its first integration that is not connected (else its
        first one), created as a sandbox integration when the company has none."""
        access.check_manager(self.env)
        company = self.company_id or self.env.company
        access.check_company(self.env, company)
        integrations = self.env["vm.whatsapp.integration"].search([("company_id", "=", company.id)])
        integration = integrations.filtered(lambda i: i.state != "connected")[:1] or integrations[:1]
        if not integration:
            integration = self.env["vm.whatsapp.integration"].create({"company_id": company.id})
        return integration.action_connect()

    def action_vm_whatsapp_test_key(self):
        access.check_manager(self.env)
        kid = self.env["vm.whatsapp.integration"]._get_keyring().self_test()
        return self._vm_whatsapp_notify(
            self.env._("The encryption key %(kid)s works: a secret was encrypted and decrypted.", kid=kid)
        )

    def action_vm_whatsapp_reencrypt(self):
        """Re-encrypt every company's secrets with the current key: the key is the server's, and
        the previous key is removed from the configuration once this is done. So only Settings
        administrators (who enter secrets) may, and the integrations whose secrets no key can read
        are named only when the user can read them; the others are counted."""
        access.check_settings_admin(self.env)
        count, unreadable = self.env["vm.whatsapp.integration"]._reencrypt_all_secrets()
        named = unreadable.with_env(self.env)._filtered_access("read")
        others = len(unreadable - named)
        parts = [self.env._("%(count)s secrets were re-encrypted with the current key.", count=count)]
        if named:
            parts.append(
                self.env._(
                    "These integrations have secrets that no configured key can read; enter them again: %(names)s",
                    names=", ".join(named.mapped("name")),
                )
            )
        if others:
            parts.append(
                self.env._(
                    "%(count)s integrations of other companies have secrets that no configured key can read; "
                    "the administrators of those companies must enter them again.",
                    count=others,
                )
            )
        return self._vm_whatsapp_notify(" ".join(parts), notification_type="warning" if unreadable else "success")

    def _vm_whatsapp_notify(self, message, notification_type="success"):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": message, "type": notification_type, "sticky": False},
        }
