"""Leads qualified or won queue their conversion events for Meta (vm.whatsapp.conversion).

Kept apart from crm_lead.py: the same model, one concern per file.
"""

from odoo import fields, models

# a write of one of these may qualify or win a lead
CONVERSION_FIELDS = frozenset({"stage_id", "probability", "active"})


class CrmLead(models.Model):
    # the conversions room's part of crm.lead (vm.whatsapp.conversion)
    # pylint: disable-next=consider-merging-classes-inherited
    _inherit = "crm.lead"

    whatsapp_conversion_ids = fields.One2many(
        "vm.whatsapp.conversion",
        "lead_id",
        string="Meta Conversions",
        groups="visionmetrics_whatsapp.group_whatsapp_user",
    )

    def write(self, vals):
        if not (CONVERSION_FIELDS.intersection(vals) and self and self._vm_conversions_enabled()):
            return super().write(vals)
        before = {lead.id: (lead.stage_id, lead._vm_is_won()) for lead in self}
        result = super().write(vals)
        self._vm_queue_conversions(before)
        return result

    def _vm_conversions_enabled(self):
        """Whether any integration sends conversions to Meta (one query on a small table)."""
        integrations_sudo = self.env["vm.whatsapp.integration"].sudo()
        return bool(integrations_sudo.search_count([("meta_dataset_id", "!=", False)], limit=1))

    def _vm_is_won(self):
        self.ensure_one()
        return self.active and (self.stage_id.is_won or self.probability >= 100)

    def _vm_queue_conversions(self, before):
        """Queue Purchase for the leads just won and LeadSubmitted for those that just left the
        first stage of their team's pipeline; ``before`` maps each lead id to its (stage, won)
        before the write. One search of stages for all the leads."""
        won = self.filtered(lambda lead: lead._vm_is_won() and not before[lead.id][1])
        moved = self.filtered(lambda lead: before[lead.id][0] and lead.stage_id != before[lead.id][0])
        qualified = self.browse()
        if moved:
            # the stage new leads get (crm.lead._compute_stage_id): the first one not folded
            stages = self.env["crm.stage"].search(
                ["|", ("team_id", "=", False), ("team_id", "in", moved.team_id.ids), ("fold", "=", False)],
                order="sequence, id",
            )
            first = {}  # team id (0: no team) -> the first stage of its pipeline
            for team_id in {*moved.team_id.ids, 0}:
                first[team_id] = next((s for s in stages if not s.team_id or s.team_id.id == team_id), None)
            qualified = moved.filtered(lambda lead: before[lead.id][0] == first[lead.team_id.id or 0])
        if won or qualified:
            conversions_sudo = self.env["vm.whatsapp.conversion"].sudo()
            conversions_sudo._enqueue({"LeadSubmitted": qualified, "Purchase": won})
