from odoo import fields, models

from .vm_whatsapp_integration import PROVIDER_SELECTION


class VmWhatsappWebhookLog(models.Model):
    _name = "vm.whatsapp.webhook.log"
    _description = "WhatsApp Webhook Log"
    _order = "received_at desc, id desc"
    _rec_name = "event_type"
    _check_company_auto = True

    integration_id = fields.Many2one(
        "vm.whatsapp.integration", index="btree_not_null", ondelete="set null", readonly=True, check_company=True
    )
    company_id = fields.Many2one(
        "res.company", required=True, index=True, readonly=True, default=lambda self: self.env.company
    )
    provider = fields.Selection(PROVIDER_SELECTION, readonly=True)
    event_type = fields.Char(readonly=True)
    received_at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now, index=True)
    remote_addr = fields.Char("Remote Address", readonly=True)
    headers = fields.Text(readonly=True, help="JSON; secrets redacted.")
    payload = fields.Text(readonly=True, help="Raw body as received.")
    signature = fields.Selection(
        [("valid", "Valid"), ("invalid", "Invalid"), ("missing", "Missing")], readonly=True
    )
    state = fields.Selection(
        [
            ("received", "Received"),
            ("processed", "Processed"),
            ("duplicate", "Duplicate"),
            ("ignored", "Ignored"),
            ("rejected", "Rejected"),
            ("failed", "Failed"),
        ],
        required=True,
        default="received",
        readonly=True,
        index=True,
    )
    error = fields.Text(readonly=True)
    processed_at = fields.Datetime(readonly=True)
    message_ids = fields.One2many("vm.whatsapp.message", "webhook_log_id", string="Messages")
