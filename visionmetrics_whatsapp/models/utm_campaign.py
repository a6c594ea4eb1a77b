from odoo import fields, models


class UtmCampaign(models.Model):
    _inherit = "utm.campaign"

    whatsapp_ad_id = fields.Char(
        "Click-to-WhatsApp Ad ID",
        readonly=True,
        copy=False,
        index="btree_not_null",
        help="The Meta ad whose clicks this campaign counts (one campaign per ad and company).",
    )
    whatsapp_company_id = fields.Many2one("res.company", "Ad Company", readonly=True, copy=False)

    _sql_constraints = [
        (
            "whatsapp_ad_uniq",
            "UNIQUE(whatsapp_company_id, whatsapp_ad_id)",
            "There is already a campaign for this ad in this company.",
        )
    ]
