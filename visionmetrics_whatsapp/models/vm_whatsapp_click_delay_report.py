from odoo import fields, models, tools

from .vm_whatsapp_conversation import ATTRIBUTIONS


class VmWhatsappClickDelayReport(models.Model):
    """The median time from a click to the message it brought, per company, attribution kind,
    campaign, campaign link and month of the first message: a PostgreSQL view over the
    conversations that have a click time (``percentile_cont(0.5)`` of their ``click_delay``).
    A median cannot be added up, so the median column has no aggregate: group by nothing
    coarser than the view's rows (the list shows one row per combination)."""

    _name = "vm.whatsapp.click.delay.report"
    _description = "WhatsApp Click to Message Time"
    _auto = False
    _order = "month desc, conversation_count desc"
    _rec_name = "campaign_id"

    company_id = fields.Many2one("res.company", readonly=True)
    attribution = fields.Selection(ATTRIBUTIONS, readonly=True)
    campaign_id = fields.Many2one("utm.campaign", readonly=True)
    link_id = fields.Many2one("vm.whatsapp.link", "Campaign Link", readonly=True)
    month = fields.Date(readonly=True)
    conversation_count = fields.Integer("Conversations", readonly=True)
    median_delay = fields.Float("Median Click to Message (min)", readonly=True, aggregator=None)
    average_delay = fields.Float("Average Click to Message (min)", readonly=True, aggregator=None)

    def init(self):
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(
            f"""CREATE VIEW {self._table} AS (
                SELECT min(c.id) AS id,
                       c.company_id,
                       c.attribution,
                       c.campaign_id,
                       c.link_id,
                       date_trunc('month', c.first_message_at)::date AS month,
                       count(*) AS conversation_count,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY coalesce(c.click_delay, 0)) AS median_delay,
                       avg(coalesce(c.click_delay, 0)) AS average_delay
                  FROM vm_whatsapp_conversation c
                 WHERE c.click_at IS NOT NULL  -- a delay of 0 may be stored as NULL
              GROUP BY c.company_id, c.attribution, c.campaign_id, c.link_id,
                       date_trunc('month', c.first_message_at)::date
            )"""  # noqa: S608
        )
