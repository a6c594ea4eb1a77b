import logging
from collections import defaultdict
from urllib.parse import urlsplit

from psycopg2.errors import UniqueViolation

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import mute_logger

from .vm_whatsapp_conversation import ATTRIBUTIONS, MATCHED
from .vm_whatsapp_inbox import ConcurrentCreation
from .vm_whatsapp_link import TOKEN_MAX_LENGTH

_logger = logging.getLogger(__name__)
AD_MEDIUM = "Click-to-WhatsApp ad"  # the utm.medium of ad leads (a name: utm has no code)


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
    # The WhatsApp first touch, stored for the reports (CRM > Reporting > WhatsApp): set once, by
    # the first conversation attributed to the lead.
    whatsapp_attribution = fields.Selection(
        ATTRIBUTIONS, "WhatsApp First Touch", readonly=True, index="btree_not_null", copy=False
    )
    whatsapp_first_touch_at = fields.Datetime(
        "WhatsApp First Touch At", readonly=True, index="btree_not_null", copy=False
    )
    whatsapp_ad_id = fields.Char("First-Touch Ad ID", readonly=True, index="btree_not_null", copy=False)
    whatsapp_link_id = fields.Many2one(
        "vm.whatsapp.link", "First-Touch Campaign Link", readonly=True, index="btree_not_null", copy=False
    )
    whatsapp_match_rate = fields.Integer(
        "WhatsApp Match Rate (%)",
        compute="_compute_whatsapp_match_rate",
        store=True,
        aggregator="avg",
        help="100 when the first touch was a token, an ad or a campaign link; 0 by phone or as a new lead.",
    )
    whatsapp_won = fields.Boolean("Won", compute="_compute_whatsapp_won", store=True, index="btree_not_null")
    whatsapp_won_revenue = fields.Monetary(
        "Won Revenue", compute="_compute_whatsapp_won", store=True, currency_field="company_currency"
    )

    @api.depends("whatsapp_conversation_ids")
    def _compute_whatsapp_message_count(self):
        for lead in self:
            lead.whatsapp_message_count = sum(lead.whatsapp_conversation_ids.mapped("message_count"))

    @api.depends("whatsapp_attribution")
    def _compute_whatsapp_match_rate(self):
        for lead in self:
            lead.whatsapp_match_rate = 100 if lead.whatsapp_attribution in MATCHED else 0

    @api.depends("active", "stage_id.is_won", "expected_revenue")
    def _compute_whatsapp_won(self):
        # CRM's "Won" filter: active, in a won stage. Stored so reports group and sum by it.
        for lead in self:
            lead.whatsapp_won = lead.active and lead.stage_id.is_won
            lead.whatsapp_won_revenue = lead.expected_revenue if lead.whatsapp_won else 0.0

    def action_create_whatsapp_link(self):
        """The lead's own campaign link: a short URL and QR code whose message carries the lead's
        first-touch token (made now if the lead has none), so the chat it opens is this lead's."""
        self.ensure_one()
        self.check_access("write")
        Link = self.env["vm.whatsapp.link"]
        link = Link.search([("lead_id", "=", self.id), ("token", "=", self.first_touch_token)], limit=1)
        if not link:
            if self.first_touch_token and len(self.first_touch_token) > TOKEN_MAX_LENGTH:
                raise UserError(
                    self.env._(
                        "The first-touch token %(token)s is longer than %(max)s characters, which customers "
                        "would see in their message: shorten it, or clear it to get a new one.",
                        token=self.first_touch_token,
                        max=TOKEN_MAX_LENGTH,
                    )
                )
            if not self.first_touch_token:
                self.first_touch_token = Link._new_tokens(1)[0]
            company = self.company_id or self.env.company
            integration = self.env["vm.whatsapp.integration"].search(
                [("company_id", "=", company.id), ("phone_number", "!=", False)], limit=1
            )
            link = Link.sudo().create(
                {
                    "name": self.env._("Lead: %(lead)s", lead=self.name),
                    "company_id": company.id,
                    "integration_id": integration.id,
                    "lead_id": self.id,
                    "token": self.first_touch_token,
                    "campaign_id": self.campaign_id.id,
                    "source_id": self.source_id.id,
                    "medium_id": self.medium_id.id,
                }
            )
        return {
            "type": "ir.actions.act_window",
            "res_model": "vm.whatsapp.link",
            "res_id": link.id,
            "view_mode": "form",
            "views": [(False, "form")],
        }

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
        integration[, values]]) tuples, in one create per company and team; contacts of one
        company sharing a phone get one lead. A list in the order of ``contacts``.

        The integration's sales team and salesperson (``team_id``, ``user_id``) are the lead's.
        With no salesperson, the lead is left unassigned, for CRM's rule-based assignment when it
        is on (the assignment's scheduled action is then run soon). ``values`` (the utm of an ad
        or a link, which replace the source; the WhatsApp first touch) are the lead's too."""
        source = self.env.ref("visionmetrics_whatsapp.utm_source_whatsapp", raise_if_not_found=False)
        lead_type = "lead" if self._vm_whatsapp_leads_enabled() else "opportunity"
        keys, vals_by_key = [], {}
        for i, (company, contact_name, phone, partner, *rest) in enumerate(contacts):
            integration = rest[0] if rest else None
            values = rest[1] if len(rest) > 1 else {}
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
                **{field: value for field, value in values.items() if value},
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

    @api.model
    def _vm_whatsapp_ad_utms(self, pairs):
        """The utm values of click-to-WhatsApp ads, for (company, referral) pairs, in order: the
        ad's campaign (one per ad id and company, found in one search, the missing ones created
        in one create, named after the ad), source Facebook or Instagram from the ad's URL (none
        when it says neither), medium "Click-to-WhatsApp ad"."""
        if not pairs:
            return []
        Campaign = self.env["utm.campaign"].with_context(active_test=False)
        wanted = {(company.id, referral.source_id): referral for company, referral in pairs if referral.source_id}
        campaigns = {}
        if wanted:
            found = Campaign.search(
                [
                    ("whatsapp_company_id", "in", list({company_id for company_id, _ad in wanted})),
                    ("whatsapp_ad_id", "in", list({ad for _company, ad in wanted})),
                ]
            )
            campaigns = {(c.whatsapp_company_id.id, c.whatsapp_ad_id): c for c in found}
            missing = [key for key in wanted if key not in campaigns]
            if missing:
                vals_list = [
                    {
                        "title": self._vm_whatsapp_ad_campaign_title(wanted[key]),
                        "whatsapp_company_id": key[0],
                        "whatsapp_ad_id": key[1],
                        "is_auto_campaign": True,
                    }
                    for key in missing
                ]
                try:
                    with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                        created = Campaign.create(vals_list)
                except UniqueViolation:
                    raise ConcurrentCreation(
                        self.env._("A concurrent request created this ad's campaign; applied again shortly.")
                    ) from None
                campaigns.update(zip(missing, created, strict=True))
        medium = self.env["utm.mixin"]._find_or_create_record("utm.medium", AD_MEDIUM)
        sources = {}
        result = []
        for company, referral in pairs:
            platform = self._vm_whatsapp_ad_platform(referral.source_url)
            if platform and platform not in sources:
                facebook = self.env.ref("utm.utm_source_facebook", raise_if_not_found=False)
                sources[platform] = (platform == "Facebook" and facebook) or self.env[
                    "utm.mixin"
                ]._find_or_create_record("utm.source", platform)
            campaign = campaigns.get((company.id, referral.source_id))
            result.append(
                {
                    "campaign_id": campaign.id if campaign else False,
                    "source_id": sources[platform].id if platform else False,
                    "medium_id": medium.id,
                }
            )
        return result

    @api.model
    def _vm_whatsapp_ad_campaign_title(self, referral):
        if referral.headline:
            return self.env._("%(headline)s (ad %(id)s)", headline=referral.headline[:200], id=referral.source_id)
        return self.env._("Click-to-WhatsApp ad %(id)s", id=referral.source_id)

    @api.model
    def _vm_whatsapp_ad_platform(self, url):
        """ "Instagram" or "Facebook" from an ad's URL (instagram.com, fb.me, facebook.com...), or None."""
        host = (urlsplit(url).hostname or "").lower() if url else ""
        if host == "instagram.com" or host.endswith((".instagram.com", ".instagr.am")) or host == "instagr.am":
            return "Instagram"
        if host.endswith(("facebook.com", "fb.me", "fb.com", "fb.watch")):
            return "Facebook"
        return None

    @api.model
    def _vm_whatsapp_fill_first_touch(self, items):
        """For (lead, attribution kind, evidence utm, time, conversation, conversation values):
        the utm fields the lead has none of, from the evidence (an ad's, a link's), and, for a
        lead with no WhatsApp first touch yet, that first touch. Never overwrites a value."""
        writes = defaultdict(lambda: self.browse())  # frozen values -> leads
        seen = set()
        for lead, kind, utm, at, conversation, vals in items:
            if lead in seen:  # two conversations of one lead in a batch: the first one counts
                continue
            seen.add(lead)
            lead_vals = {field: value for field, value in utm.items() if value and not lead[field]}
            if not lead.whatsapp_attribution:
                lead_vals.update(
                    whatsapp_attribution=kind,
                    whatsapp_first_touch_at=at,
                    whatsapp_ad_id=vals.get("ad_id") or conversation.ad_id or False,
                    whatsapp_link_id=vals.get("link_id") or conversation.link_id.id or False,
                )
            if lead_vals:
                writes[frozenset(lead_vals.items())] |= lead
        Lead = self.with_context(tracking_disable=True)
        for frozen, leads in writes.items():
            Lead.browse(leads.ids).write(dict(frozen))
