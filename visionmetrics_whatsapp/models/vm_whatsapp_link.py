import re
import secrets
from urllib.parse import quote

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..tools.phone import to_e164
from . import access

TOKEN_MAX_LENGTH = 12  # customers see the token in their draft
TOKEN_RE = re.compile(rf"[A-Za-z0-9-]{{1,{TOKEN_MAX_LENGTH}}}")  # what tools.token.extract_token reads
# no 0/o, 1/l/i: the token may be read aloud or typed from a printed QR's caption
TOKEN_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105 (an alphabet)
TOKEN_LENGTH = 8  # 31^8 ≈ 8.5e11 tokens


class VmWhatsappLink(models.Model):
    _name = "vm.whatsapp.link"
    _inherit = ["vm.whatsapp.company.guard"]
    _description = "WhatsApp Campaign Link"
    _order = "id desc"
    _check_company_auto = True

    name = fields.Char(required=True)
    active = fields.Boolean(default=True)
    company_id = fields.Many2one("res.company", required=True, index=True, default=lambda self: self.env.company)
    integration_id = fields.Many2one(
        "vm.whatsapp.integration",
        check_company=True,
        ondelete="set null",
        help="The WhatsApp number the link opens a chat with.",
    )
    phone_number = fields.Char(
        "WhatsApp Number",
        compute="_compute_phone_number",
        store=True,
        readonly=False,
        help="E.164; the integration's connected number unless typed.",
    )
    campaign_id = fields.Many2one("utm.campaign", ondelete="set null")
    source_id = fields.Many2one("utm.source", ondelete="set null")
    medium_id = fields.Many2one("utm.medium", ondelete="set null")
    message = fields.Text(
        "Prefilled Message", help="The text the customer's WhatsApp opens with; the token is added after it."
    )
    token = fields.Char(
        required=True,
        copy=False,
        default=lambda self: self._new_tokens(1)[0],
        help="At most 12 letters, digits or dashes. Customers see it: 'vm_token:<token>' ends their draft.",
    )
    lead_id = fields.Many2one(
        "crm.lead",
        string="For Lead",
        readonly=True,
        index="btree_not_null",
        check_company=True,
        ondelete="cascade",
        help="The lead whose first-touch token this link carries.",
    )
    link_tracker_id = fields.Many2one("link.tracker", readonly=True, copy=False, ondelete="restrict")
    short_url = fields.Char("Short URL", related="link_tracker_id.short_url")
    whatsapp_url = fields.Char("WhatsApp URL", compute="_compute_whatsapp_url")
    click_count = fields.Integer("Clicks", related="link_tracker_id.count")
    conversation_ids = fields.One2many("vm.whatsapp.conversation", "link_id", string="Conversations")
    lead_ids = fields.One2many("crm.lead", "whatsapp_link_id", string="Leads")
    conversation_count = fields.Integer(compute="_compute_counts")
    lead_count = fields.Integer(compute="_compute_counts")

    _sql_constraints = [("token_uniq", "UNIQUE(token)", "Another campaign link already has this token.")]

    @api.depends("integration_id.phone_number")
    def _compute_phone_number(self):
        for link in self:
            link.phone_number = link.integration_id.phone_number or link.phone_number

    @api.depends("phone_number", "message", "token")
    def _compute_whatsapp_url(self):
        for link in self:
            link.whatsapp_url = link._build_whatsapp_url() if link.phone_number and link.token else False

    def _compute_counts(self):
        for field, model in (("conversation_count", "vm.whatsapp.conversation"), ("lead_count", "crm.lead")):
            inverse = "link_id" if model == "vm.whatsapp.conversation" else "whatsapp_link_id"
            counts = dict(self.env[model]._read_group([(inverse, "in", self.ids)], [inverse], ["__count"]))
            for link in self:
                link[field] = counts.get(link, 0)

    @api.constrains("token")
    def _check_token(self):
        for link in self:
            if not TOKEN_RE.fullmatch(link.token or ""):
                raise ValidationError(
                    self.env._("The token %(token)s must be 1 to 12 letters, digits or dashes.", token=link.token or "")
                )
        # a lead's first-touch token comes first in attribution: a link with it would never count
        clashes = (
            self.env["crm.lead"]
            .with_context(active_test=False)
            .sudo()
            ._read_group(
                [
                    ("first_touch_token", "in", self.mapped("token")),
                    ("company_id", "in", [*self.company_id.ids, False]),
                ],
                ["first_touch_token"],
                ["id:array_agg"],
            )
        )
        for token, lead_ids in clashes:
            link = self.filtered(lambda rec, token=token: rec.token == token)
            if any(not rec.lead_id or rec.lead_id.id not in lead_ids or len(lead_ids) > 1 for rec in link):
                raise ValidationError(
                    self.env._("The token %(token)s is a lead's first-touch token; choose another.", token=token)
                )

    @api.constrains("phone_number")
    def _check_phone_number(self):
        for link in self:
            if link.phone_number and not to_e164(link.phone_number, link.company_id.country_id.code):
                raise ValidationError(
                    self.env._(
                        "%(number)s is not a phone number; type it with its country code (+55 11 ...).",
                        number=link.phone_number,
                    )
                )

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("phone_number"):
                vals["phone_number"] = to_e164(vals["phone_number"]) or vals["phone_number"]
        links = super().create(vals_list)
        links._sync_trackers()
        return links

    def write(self, vals):
        if vals.get("phone_number"):
            vals["phone_number"] = to_e164(vals["phone_number"]) or vals["phone_number"]
        result = super().write(vals)
        if "token" in vals:
            self.flush_recordset(["token"])  # a token taken says so before its tracker would clash
        if {
            "phone_number",
            "message",
            "token",
            "integration_id",
            "campaign_id",
            "source_id",
            "medium_id",
            "name",
        } & set(vals):
            self._sync_trackers()
        return result

    # ------------------------------------------------------------------ actions

    def action_download_qr_png(self):
        return self._qr_action("png")

    def action_download_qr_svg(self):
        return self._qr_action("svg")

    def _qr_action(self, fmt):
        self.ensure_one()
        access.check_records(self, "read")
        if not self.short_url:
            raise UserError(self.env._("Give the link a WhatsApp number first: it has no short URL yet."))
        return {"type": "ir.actions.act_url", "url": f"/vm_whatsapp/link/{self.id}/qr.{fmt}", "target": "download"}

    def action_view_conversations(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_conversation_action")
        action.update(domain=[("link_id", "=", self.id)], context={"create": False})
        return action

    def action_view_leads(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("crm.crm_lead_all_leads")
        action.update(domain=[("whatsapp_link_id", "=", self.id)], context={"create": False, "active_test": False})
        return action

    # ------------------------------------------------------------------ business

    def _build_whatsapp_url(self):
        """``https://wa.me/<digits>?text=<message> vm_token:<token>``, the text percent-encoded
        as UTF-8 (a space is %20, never '+', which wa.me may show as it is)."""
        self.ensure_one()
        digits = re.sub(r"\D", "", to_e164(self.phone_number) or self.phone_number or "")
        text = f"{(self.message or '').strip()} vm_token:{self.token}".strip()
        return f"https://wa.me/{digits}?text={quote(text, safe='')}"

    def _sync_trackers(self):
        """Create or update each link's link.tracker (its short URL ``/r/<code>`` and click
        count). link.tracker is writable by administrators only: done as superuser, for links the
        user could create or write."""
        for link in self:
            if not link.phone_number:
                continue
            vals = {
                "url": link._build_whatsapp_url(),
                "title": link.name,
                "campaign_id": link.campaign_id.id,
                "source_id": link.source_id.id,
                "medium_id": link.medium_id.id,
            }
            tracker_sudo = link.link_tracker_id.sudo()
            if tracker_sudo:
                tracker_sudo.write(vals)
            else:
                link.link_tracker_id = self.env["link.tracker"].sudo().create(vals)

    @api.model
    def _new_tokens(self, count):
        """``count`` random tokens that no link has yet."""
        tokens = set()
        while len(tokens) < count:
            wanted = {"".join(secrets.choice(TOKEN_ALPHABET) for _i in range(TOKEN_LENGTH)) for _i in range(count)}
            taken = set(
                self.sudo().with_context(active_test=False).search([("token", "in", list(wanted))]).mapped("token")
            )
            tokens |= wanted - taken
        return list(tokens)[:count]

    @api.model
    def _find_by_tokens(self, wanted):
        """{(company, token): link} for a set of (company, token), in one query. Inactive
        (archived) links still attribute: the QR codes they printed are still out there."""
        if not wanted:
            return {}
        links = self.with_context(active_test=False).search(
            [
                ("token", "in", list({token for _company, token in wanted})),
                ("company_id", "in", list({company.id for company, _token in wanted})),
            ]
        )
        found = {(link.company_id, link.token): link for link in links}
        return {key: link for key, link in found.items() if key in wanted}

    def _utm_values(self):
        self.ensure_one()
        return {"campaign_id": self.campaign_id.id, "source_id": self.source_id.id, "medium_id": self.medium_id.id}
