from odoo import fields, models


class VmWhatsappSession(models.Model):
    _name = "vm.whatsapp.session"
    _description = "WhatsApp Connection Session"
    _order = "create_date desc, id desc"
    _check_company_auto = True

    integration_id = fields.Many2one(
        "vm.whatsapp.integration", required=True, index=True, ondelete="cascade", check_company=True
    )
    company_id = fields.Many2one(
        related="integration_id.company_id", store=True, index=True, precompute=True, required=True
    )
    provider = fields.Selection(related="integration_id.provider")
    external_id = fields.Char(
        "Provider Session", index="btree_not_null", copy=False, help="Instance / session id at the provider."
    )
    state = fields.Selection(
        [
            ("pending", "Pending"),
            ("qr_ready", "QR Ready"),
            ("connected", "Connected"),
            ("expired", "Expired"),
            ("failed", "Failed"),
            ("closed", "Closed"),
        ],
        required=True,
        default="pending",
        index=True,
        readonly=True,
    )
    qr_code = fields.Char("QR Payload", readonly=True, copy=False)
    qr_image = fields.Binary("QR Code", attachment=False, readonly=True, copy=False)
    pairing_code = fields.Char(readonly=True, copy=False)
    qr_expires_at = fields.Datetime("QR Expires At", readonly=True)
    connected_at = fields.Datetime(readonly=True)
    closed_at = fields.Datetime(readonly=True)
    last_checked_at = fields.Datetime(readonly=True)
    check_count = fields.Integer(readonly=True)
    error_message = fields.Text(readonly=True)

    def _compute_display_name(self):
        for session in self:
            session.display_name = f"{session.integration_id.display_name} / {session.create_date or ''}".strip(" /")
