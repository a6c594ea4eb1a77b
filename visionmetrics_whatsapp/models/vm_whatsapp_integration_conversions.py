"""The integration's settings for Meta's Conversions API for Business Messaging (DESIGN §11).

Kept apart from vm_whatsapp_integration.py: one concern, one file (the same model).

Which CRM events are sent is two booleans rather than a table of stage → event rows: the CRM
has two moments every pipeline shares (a lead qualified, a lead won), and Meta accepts only a
handful of event names for ``business_messaging`` (others are rejected), so a free mapping
would mostly let an administrator configure events Meta refuses.
"""

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..providers import WhatsAppProviderError
from ..providers.meta_conversions import GRAPH_ID_RE, MetaApiError, MetaConversionsClient
from . import vm_whatsapp_integration as integration_base

MANAGER = "visionmetrics_whatsapp.group_whatsapp_manager"


class VmWhatsappIntegrationConversions(models.Model):
    _inherit = "vm.whatsapp.integration"

    _SECRET_FIELDS = (*integration_base.VmWhatsappIntegration._SECRET_FIELDS, "meta_conversions_token")

    provider_sends_conversions = integration_base._capability_field("Sends Conversions to Meta")
    meta_waba_id = fields.Char(
        "WhatsApp Business Account ID",
        groups=MANAGER,
        copy=False,
        help="The WABA of this number (digits): needed to create the dataset, and sent with each event.",
    )
    meta_dataset_id = fields.Char(
        "Meta Dataset ID",
        groups=MANAGER,
        copy=False,
        index="btree_not_null",
        help="The Conversions API dataset of the WhatsApp Business Account. When set, the CRM events "
        "chosen below are sent to Meta for the conversations that came from a click-to-WhatsApp ad.",
    )
    meta_send_purchase = fields.Boolean(
        "Won Lead → Purchase",
        default=True,
        groups=MANAGER,
        help="A lead won sends Purchase, with its expected revenue in the company currency.",
    )
    meta_send_lead_submitted = fields.Boolean(
        "Qualified Lead → LeadSubmitted",
        default=True,
        groups=MANAGER,
        help="A lead that leaves the first stage of its sales team's pipeline sends LeadSubmitted.",
    )
    meta_test_event_code = fields.Char(
        "Test Event Code",
        groups=MANAGER,
        copy=False,
        help="From Meta's Events Manager (Test events): events sent with it only show up there. Empty in production.",
    )
    meta_conversions_token = fields.Char(
        "Conversions API Token",
        compute="_compute_secrets",
        inverse="_inverse_secrets",
        groups="base.group_system",
        copy=False,
        help="Write-only: a Meta access token for the Conversions API. Meta: empty uses the integration's "
        "access token. 360dialog: required (the 360dialog API key is not a Meta token).",
    )
    meta_conversions_token_encrypted = fields.Char(groups="base.group_system", copy=False, readonly=True)
    meta_conversions_token_set = fields.Boolean(
        "Conversions API Token Set", compute="_compute_secrets_set", compute_sudo=True
    )
    meta_conversion_count = fields.Integer("Meta Conversions", compute="_compute_meta_conversion_count", groups=MANAGER)

    def _compute_meta_conversion_count(self):
        counts = dict(
            self.env["vm.whatsapp.conversion"]._read_group(
                [("integration_id", "in", self._origin.ids)], ["integration_id"], ["__count"]
            )
        )
        for integration in self:
            integration.meta_conversion_count = counts.get(integration._origin, 0)

    @api.constrains("meta_dataset_id", "meta_waba_id", "provider")
    def _check_meta_conversions(self):
        for integration in self.sudo():
            for field_name in ("meta_dataset_id", "meta_waba_id"):
                value = integration[field_name]
                if value and not GRAPH_ID_RE.match(value):
                    raise ValidationError(
                        self.env._(
                            "%(field)s must contain only digits (as Meta shows it).",
                            field=integration._fields[field_name].get_description(self.env)["string"],
                        )
                    )
            if integration.meta_dataset_id and not integration.provider_sends_conversions:
                raise ValidationError(
                    self.env._("Conversions are sent to Meta for Meta and 360dialog integrations only.")
                )

    # ------------------------------------------------------------------ actions

    def action_create_meta_dataset(self):
        """Ask Meta for the dataset of the WhatsApp Business Account (created when it has none;
        one per WABA) and store its id."""
        self._check_manage_access()
        self.ensure_one()
        if not self.provider_sends_conversions:
            raise UserError(self.env._("Conversions are sent to Meta for Meta and 360dialog integrations only."))
        if not self.meta_waba_id:
            raise UserError(
                self.env._(
                    "Enter the WhatsApp Business Account ID first (Meta Business Suite → WhatsApp accounts, "
                    "or WhatsApp Manager)."
                )
            )
        name = self.env._("%(company)s WhatsApp (%(name)s)", company=self.company_id.name, name=self.name)
        try:
            dataset_id = self._meta_conversions_client().create_dataset(self.meta_waba_id, name)
        except MetaApiError as e:
            raise UserError(self.env._("Meta could not create the dataset: %(error)s", error=e)) from None
        self.meta_dataset_id = dataset_id
        notification = self._notify_user(self.env._("Meta dataset %(id)s is set.", id=dataset_id))
        notification["params"]["next"] = {"type": "ir.actions.client", "tag": "soft_reload"}
        return notification

    def action_view_meta_conversions(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_conversion_action")
        action["domain"] = [("integration_id", "=", self.id)]
        return action

    # ------------------------------------------------------------------ business

    def _meta_conversions_client(self):
        """The Graph API client of this integration's Conversions API calls: the provider's Graph
        address, and the Conversions API token, else the provider's own token. MetaApiError
        when there is no usable token."""
        self.ensure_one()
        try:
            root, version, token = self._get_provider().graph_api()
        except WhatsAppProviderError as e:  # not a provider that reaches Meta's Graph API
            raise MetaApiError(str(e)) from None
        token = self._get_secret("meta_conversions_token") or token
        if not token:
            raise MetaApiError(
                self.env._("Set the Conversions API token of %(name)s (a Meta access token).", name=self.name)
            )
        return MetaConversionsClient(root, version, token)
