from odoo import fields, models

MESSAGE_TYPES = [
    ("text", "Text"),
    ("image", "Image"),
    ("audio", "Audio"),
    ("video", "Video"),
    ("document", "Document"),
    ("sticker", "Sticker"),
    ("location", "Location"),
    ("contact", "Contact"),
    ("reaction", "Reaction"),
    ("other", "Other"),
]


class VmWhatsappMessage(models.Model):
    _name = "vm.whatsapp.message"
    _description = "WhatsApp Message"
    _order = "sent_at desc, id desc"
    _rec_name = "external_id"
    _check_company_auto = True

    conversation_id = fields.Many2one(
        "vm.whatsapp.conversation", required=True, index=True, ondelete="cascade", check_company=True
    )
    integration_id = fields.Many2one(
        related="conversation_id.integration_id", store=True, index=True, precompute=True, required=True
    )
    company_id = fields.Many2one(
        related="conversation_id.company_id", store=True, index=True, precompute=True, required=True
    )
    lead_id = fields.Many2one(related="conversation_id.lead_id")
    external_id = fields.Char("Provider Message ID", required=True, readonly=True)
    direction = fields.Selection(
        [("inbound", "Inbound"), ("outbound", "Outbound")], required=True, default="inbound", readonly=True
    )
    message_type = fields.Selection(MESSAGE_TYPES, string="Type", required=True, default="text", readonly=True)
    body = fields.Text(readonly=True)
    vm_token = fields.Char("Token", readonly=True)
    attachment_id = fields.Many2one("ir.attachment", readonly=True, ondelete="set null")
    sent_at = fields.Datetime("Sent At", readonly=True, help="Provider timestamp (UTC).")
    status = fields.Selection(
        [
            ("received", "Received"),
            ("pending", "Pending"),
            ("sent", "Sent"),
            ("delivered", "Delivered"),
            ("read", "Read"),
            ("failed", "Failed"),
        ],
        required=True,
        default="received",
        readonly=True,
    )
    webhook_log_id = fields.Many2one("vm.whatsapp.webhook.log", readonly=True, index="btree_not_null", ondelete="set null")

    _sql_constraints = [
        (
            "external_uniq",
            "UNIQUE(integration_id, external_id)",
            "This provider message was already stored for this integration.",
        ),
    ]
