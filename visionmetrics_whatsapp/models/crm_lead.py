from collections import defaultdict

from odoo import api, fields, models


class CrmLead(models.Model):
    _inherit = "crm.lead"

    first_touch_token = fields.Char(
        index="btree_not_null",
        copy=False,
        tracking=True,
        help="VisionMetrics first-touch token. An inbound WhatsApp message containing "
        "'vm_token:<token>' is attributed to the lead with this token.",
    )
    whatsapp_conversation_ids = fields.One2many("vm.whatsapp.conversation", "lead_id", string="WhatsApp Conversations")
    whatsapp_message_count = fields.Integer("WhatsApp Messages", compute="_compute_whatsapp_message_count")

    @api.depends("whatsapp_conversation_ids")
    def _compute_whatsapp_message_count(self):
        for lead in self:
            lead.whatsapp_message_count = sum(lead.whatsapp_conversation_ids.mapped("message_count"))

    def action_view_whatsapp_conversations(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_conversation_action")
        action["domain"] = [("lead_id", "=", self.id)]
        action["context"] = {"create": False}
        if len(self.whatsapp_conversation_ids) == 1:
            action.update(view_mode="form", views=[(False, "form")], res_id=self.whatsapp_conversation_ids.id)
        return action

    # ------------------------------------------------------------------ WhatsApp attribution

    @api.model
    def _vm_whatsapp_company_domain(self, company):
        # Leads without a company are shared by all companies; another company's never match.
        return [("company_id", "in", [company.id, False])]

    @api.model
    def _vm_whatsapp_find_by_tokens(self, wanted):
        """{(company, token): lead} for a set of (company, token): the newest lead of the company
        (or of no company) whose first-touch token is the token. One query."""
        if not wanted:
            return {}
        companies = self.env["res.company"].union(*(company for company, _token in wanted))
        leads = self.search(
            [
                ("first_touch_token", "in", list({token for _company, token in wanted})),
                *self._vm_whatsapp_company_domain(companies),
            ],
            order="create_date desc, id desc",
        )
        found = {}
        for lead in leads:  # newest first: the first one found for a key wins
            for company in (lead.company_id,) if lead.company_id else companies:
                found.setdefault((company, lead.first_touch_token), lead)
        return {key: lead for key, lead in found.items() if key in wanted}

    @api.model
    def _vm_whatsapp_find_by_phones(self, wanted):
        """For each (company, E.164 phones[, integration]) of ``wanted``, the newest lead of the
        company with one of those phones; else a new lead for the newest contact (partner) of the
        company with one of them (with the integration's team and salesperson); else an empty
        recordset. A list in the order of ``wanted``; two queries."""
        phones = list({phone for _company, company_phones, *_rest in wanted for phone in company_phones})
        if not phones:
            return [self.browse()] * len(wanted)
        companies = self.env["res.company"].union(*(company for company, *_rest in wanted))

        def newest(records, company, company_phones):
            return next(
                (
                    record
                    for record in records
                    if record.phone_sanitized in company_phones and record.company_id in (company, company.browse())
                ),
                None,
            )

        leads = self.search(
            [("phone_sanitized", "in", phones), *self._vm_whatsapp_company_domain(companies)],
            order="create_date desc, id desc",
        )
        found = [newest(leads, company, company_phones) or self.browse() for company, company_phones, *_rest in wanted]
        missing = [i for i, lead in enumerate(found) if not lead and wanted[i][1]]
        if missing:
            partners = self.env["res.partner"].search(
                [("phone_sanitized", "in", phones), ("company_id", "in", [*companies.ids, False])],
                order="create_date desc, id desc",
            )
            matched = [(i, newest(partners, *wanted[i][:2])) for i in missing]
            matched = [(i, partner) for i, partner in matched if partner]
            contacts = [
                (wanted[i][0], partner.name, wanted[i][1][0], partner, *wanted[i][2:]) for i, partner in matched
            ]
            for (i, _partner), lead in zip(matched, self._vm_whatsapp_create_leads(contacts), strict=True):
                found[i] = lead
        return found

    @api.model
    def _vm_whatsapp_leads_enabled(self):
        # Webhooks run as the public user: read the CRM setting ("Leads") from the employee group.
        use_lead = self.env.ref("crm.group_use_lead", raise_if_not_found=False)
        return bool(use_lead) and use_lead in self.env.ref("base.group_user").sudo().implied_ids

    @api.model
    def _vm_whatsapp_create_leads(self, contacts):
        """New leads, with source WhatsApp, for (company, contact name, phone, partner or None[,
        integration]) tuples, in one create per company and team; contacts of one company sharing
        a phone get one lead. A list in the order of ``contacts``.

        The integration's sales team and salesperson (``team_id``, ``user_id``) are the lead's.
        With no salesperson, the lead is left unassigned, for CRM's rule-based assignment when it
        is on (the assignment's scheduled action is then run soon)."""
        source = self.env.ref("visionmetrics_whatsapp.utm_source_whatsapp", raise_if_not_found=False)
        lead_type = "lead" if self._vm_whatsapp_leads_enabled() else "opportunity"
        keys, vals_by_key = [], {}
        for i, (company, contact_name, phone, partner, *rest) in enumerate(contacts):
            integration = rest[0] if rest else None
            key = (company.id, phone) if phone else i
            keys.append(key)
            if key in vals_by_key:
                continue
            name = contact_name or phone or self.env._("Unknown contact")
            vals_by_key[key] = {
                "name": self.env._("WhatsApp: %(contact)s", contact=name),
                "contact_name": contact_name or False,
                "phone": phone or False,
                "partner_id": partner.id if partner else False,
                "company_id": company.id,
                "source_id": source.id if source else False,
                "user_id": False,
                "type": lead_type,
                **self._vm_whatsapp_assignment_vals(integration),
            }
        # One create per company and team, with the team's first open stage as a default: crm
        # looks the stage up lead by lead otherwise, and a stage given in the values makes its
        # create() update the scoring frequencies lead by lead (_handle_won_lost).
        groups = defaultdict(list)
        for key, vals in vals_by_key.items():
            groups[(vals["company_id"], vals.get("team_id") or False)].append(key)
        Lead = self.with_context(tracking_disable=True, mail_create_nolog=True, mail_create_nosubscribe=True)
        by_key = {}
        for (company_id, team_id), group_keys in groups.items():
            stage = self._stage_find(team_id=team_id, domain=[("fold", "=", False)])
            leads = (
                Lead.with_company(company_id)
                .with_context(default_stage_id=stage.id)
                .create([vals_by_key[key] for key in group_keys])
            )
            by_key.update(zip(group_keys, leads, strict=True))
        if any(not vals["user_id"] for vals in vals_by_key.values()):
            self._vm_whatsapp_trigger_assignment()
        return [by_key[key] for key in keys]

    @api.model
    def _vm_whatsapp_assignment_vals(self, integration):
        """The team and salesperson a new lead of ``integration`` gets."""
        if not integration:
            return {}
        vals = {"team_id": integration.team_id.id} if integration.team_id else {}
        if integration.user_id:
            vals["user_id"] = integration.user_id.id
        return vals

    @api.model
    def _vm_whatsapp_trigger_assignment(self):
        """Run CRM's lead assignment soon, when rule-based assignment runs automatically (its
        scheduled action is active); in manual mode the sales manager assigns the leads."""
        if not self.env["ir.config_parameter"].sudo().get_param("crm.lead.auto.assignment"):
            return
        cron = self.env.ref("crm.ir_cron_crm_lead_assign", raise_if_not_found=False)
        if cron and cron.sudo().active:
            cron._trigger()

    def _merge_dependences(self, opportunities):
        """Merging leads (also CRM's assignment merges duplicates) keeps their WhatsApp
        conversations, on the lead that remains."""
        result = super()._merge_dependences(opportunities)
        opportunities.sudo().whatsapp_conversation_ids.write({"lead_id": self.id})
        return result
