from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError

MAX_QR_CODES = 5  # QR codes shown (the first + automatic refreshes) before the wizard gives up


class VmWhatsappConnectWizard(models.TransientModel):
    _name = "vm.whatsapp.connect.wizard"
    _description = "Connect WhatsApp"

    integration_id = fields.Many2one("vm.whatsapp.integration", required=True, ondelete="cascade", readonly=True)
    company_id = fields.Many2one(related="integration_id.company_id")
    session_id = fields.Many2one("vm.whatsapp.session", readonly=True, ondelete="cascade")
    state = fields.Selection(related="session_id.state")
    uses_qr = fields.Boolean(related="integration_id.provider_uses_qr")
    uses_verify_token = fields.Boolean(related="integration_id.provider_uses_verify_token")
    registers_webhook = fields.Boolean(related="integration_id.provider_registers_webhook")
    refresh_count = fields.Integer("QR Refreshes", readonly=True)
    phone_number = fields.Char(related="integration_id.phone_number")
    webhook_url = fields.Char(related="integration_id.webhook_url")
    webhook_token = fields.Char(related="integration_id.webhook_token", string="Verify Token")
    status_message = fields.Text(related="session_id.error_message")

    @api.model_create_multi
    def create(self, vals_list):
        wizards = super().create(vals_list)
        wizards._check_integration_access()
        return wizards

    def write(self, vals):
        result = super().write(vals)
        if {"integration_id", "session_id"} & set(vals):
            self._check_integration_access()
        return result

    def _check_integration_access(self):
        """The related fields (webhook URL and token, session state and messages) are read as
        superuser: a wizard is only for the administrators of its integration's company, and
        only shows that integration's own sessions."""
        self.integration_id._check_manage_access()
        for wizard_sudo in self.sudo():
            if wizard_sudo.session_id and wizard_sudo.session_id.integration_id != wizard_sudo.integration_id:
                raise AccessError(self.env._("A connection can only show the sessions of its own integration."))

    def _get_action(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Connect WhatsApp"),
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "new",
            "context": {"dialog_size": "medium"},
        }

    # ------------------------------------------------------------------ polling (called by the QR widget)

    def action_poll(self):
        """The current state for the QR widget, which calls this every 3 seconds: checks the
        session with the provider, replaces an expired QR with a new session (MAX_QR_CODES codes in
        all), and says why when it stops."""
        self.ensure_one()
        self.integration_id._check_manage_access()
        result = self.session_id._poll_state()
        if result["state"] == "expired":
            if self.refresh_count + 1 < MAX_QR_CODES:
                return self._refresh_session()
            result["message"] = self.env._(
                "The QR code expired %(count)s times without being scanned. Open WhatsApp on the phone, "
                "go to Linked devices > Link a device, and click Retry to get a new code.",
                count=self.refresh_count + 1,
            )
        return self._poll_result(result)

    def action_retry(self):
        """Start over with a new session after the wizard gave up (or the session failed)."""
        self.ensure_one()
        self.integration_id._check_manage_access()
        self.refresh_count = 0
        return self._refresh_session(count=False)

    def _refresh_session(self, count=True):
        try:
            session = self.integration_id._start_session()
        except UserError as e:
            result = self.session_id._poll_state()
            result["message"] = e.args[0]
            return self._poll_result(result)
        vals = {"session_id": session.id}
        if count:
            vals["refresh_count"] = self.refresh_count + 1
        self.write(vals)
        return self._poll_result(session._poll_state())

    def _poll_result(self, result):
        state = result["state"]
        result["can_retry"] = state in ("expired", "failed", "closed")
        result["refresh_count"] = self.refresh_count
        if state == "connected":
            result["message"] = self.env._(
                "WhatsApp connected: %(phone)s", phone=result["phone"] or self.integration_id.name
            )
        return result
