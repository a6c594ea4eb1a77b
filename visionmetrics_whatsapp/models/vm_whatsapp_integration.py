import logging
import secrets
from collections import namedtuple

import requests

from odoo import api, fields, models, tools
from odoo.exceptions import UserError

from .. import providers
from ..providers import WhatsAppProviderError
from ..tools import crypto
from . import access

_logger = logging.getLogger(__name__)

WebhookEndpoint = namedtuple("WebhookEndpoint", "id company_id provider external_id secret_envelope")

SANDBOX_TEST_SENDER = "+5511999990001"
TEST_MESSAGE_TIMEOUT = 10  # seconds for "Send test message" to reach our own webhook

# What an adapter built by _get_provider() is for; see there.
PROVIDER_PURPOSES = ("api", "webhook", "parse")


def _capability_field(string):
    """A field ``provider_<capability>``: that capability of the integration's provider class
    (providers.CAPABILITIES), for the views and the code that depend on what a provider does."""
    return fields.Boolean(string, compute="_compute_provider_capabilities")


class VmWhatsappIntegration(models.Model):
    _name = "vm.whatsapp.integration"
    _inherit = ["vm.whatsapp.company.guard"]
    _description = "WhatsApp Integration"
    _order = "company_id, name, id"
    _check_company_auto = True

    # Write-only secrets: the clear value is never stored; `<field>_encrypted` holds the
    # AES-256-GCM envelope bound to (model, field, record, company).
    _SECRET_FIELDS = ("api_key", "webhook_secret")
    # fields that _webhook_endpoint caches for the webhook route: writing one clears the cache
    _WEBHOOK_ENDPOINT_FIELDS = frozenset(
        {"webhook_token", "active", "provider", "company_id", "external_id", "webhook_secret_encrypted"}
    )

    name = fields.Char(required=True, default=lambda self: self.env._("WhatsApp"))
    active = fields.Boolean(default=True)
    company_id = fields.Many2one("res.company", required=True, index=True, default=lambda self: self.env.company)
    # The registered providers (providers/__init__.py), read when this module is imported: every
    # provider module is imported by then. A list rather than a callable, so that Odoo checks
    # the values written and translates the labels.
    provider = fields.Selection(providers.selection(), required=True, default="sandbox")
    state = fields.Selection(
        [
            ("draft", "Draft"),
            ("connecting", "Connecting"),
            ("connected", "Connected"),
            ("disconnected", "Disconnected"),
            ("error", "Error"),
        ],
        required=True,
        default="draft",
        readonly=True,
        copy=False,
        index=True,
    )
    api_base_url = fields.Char(
        "API URL", help="Server URL (Evolution API, WAHA) or API root (Meta, 360dialog; empty = default)."
    )
    # For administrators: a sandbox integration's is its first session's, in the QR's scan URL.
    external_id = fields.Char(
        "Instance / Session / Phone Number ID",
        copy=False,
        groups="visionmetrics_whatsapp.group_whatsapp_manager",
        help="Evolution instance name, WAHA session name, or Meta / 360dialog phone number id.",
    )
    phone_number = fields.Char("Connected Number", readonly=True, copy=False, help="E.164")
    webhook_token = fields.Char(
        required=True,
        readonly=True,
        copy=False,
        default=lambda self: secrets.token_urlsafe(32),
        groups="visionmetrics_whatsapp.group_whatsapp_manager",
        help="Random token in the webhook URL that identifies this integration (and so its company).",
    )
    webhook_url = fields.Char(compute="_compute_webhook_url", groups="visionmetrics_whatsapp.group_whatsapp_manager")
    api_key = fields.Char(
        "API Key / Access Token",
        compute="_compute_secrets",
        inverse="_inverse_secrets",
        groups="base.group_system",
        copy=False,
        help="Write-only: stored encrypted, never shown again.",
    )
    api_key_encrypted = fields.Char(groups="base.group_system", copy=False, readonly=True)
    api_key_set = fields.Boolean("API Key Set", compute="_compute_secrets_set", compute_sudo=True)
    webhook_secret = fields.Char(
        compute="_compute_secrets",
        inverse="_inverse_secrets",
        groups="base.group_system",
        copy=False,
        help="Write-only: the secret that authenticates the provider's webhooks (Meta: the App Secret). "
        "Generated automatically for the other providers when left empty.",
    )
    webhook_secret_encrypted = fields.Char(groups="base.group_system", copy=False, readonly=True)
    webhook_secret_set = fields.Boolean(compute="_compute_secrets_set", compute_sudo=True)
    last_webhook_at = fields.Datetime(
        "Last Webhook",
        compute="_compute_last_webhook_at",
        help="When the provider last sent an authentic webhook (read from the webhook logs, so that "
        "receiving never writes to the integration).",
    )
    last_error = fields.Text(readonly=True, copy=False)
    # Given to the leads this number's conversations create (crm.lead._vm_whatsapp_create_leads).
    team_id = fields.Many2one(
        "crm.team",
        "Sales Team",
        check_company=True,
        help="Sales team of the new leads of this number's conversations.",
    )
    user_id = fields.Many2one(
        "res.users",
        "Salesperson",
        check_company=True,
        domain="[('share', '=', False)]",
        help="Salesperson of the new leads of this number's conversations. Leave it empty to let the sales "
        "team's assignment rules (CRM > Configuration > Settings > Rule-Based Assignment) choose one.",
    )
    session_ids = fields.One2many("vm.whatsapp.session", "integration_id", string="Sessions")
    conversation_ids = fields.One2many("vm.whatsapp.conversation", "integration_id", string="Conversations")
    conversation_count = fields.Integer(compute="_compute_conversation_count")
    failed_webhook_count = fields.Integer(
        "Failed Requests",
        compute="_compute_failed_webhook_count",
        groups="visionmetrics_whatsapp.group_whatsapp_manager",
        help="Webhook requests of this number that could not be applied (retried, then kept with their reason).",
    )

    # What the provider does (one field per providers.CAPABILITIES, read from its class).
    provider_uses_qr = _capability_field("Connects by QR Code")
    provider_uses_pairing_code = _capability_field("Offers a Pairing Code")
    provider_uses_api_url = _capability_field("Uses an API URL")
    provider_requires_api_url = _capability_field("Requires an API URL")
    provider_uses_api_key = _capability_field("Uses an API Key")
    provider_uses_external_id = _capability_field("Uses an Instance / Session / Phone Number ID")
    provider_requires_external_id = _capability_field("Requires an Instance / Session / Phone Number ID")
    provider_uses_verify_token = _capability_field("Verifies the Webhook URL with a Token")
    provider_generates_webhook_secret = _capability_field("Generates the Webhook Secret")
    provider_registers_webhook = _capability_field("Registers the Webhook")
    provider_polls_status = _capability_field("Polls the Session State")
    provider_downloads_media = _capability_field("Downloads Media")
    provider_sends_media = _capability_field("Sends Media")
    provider_simulates_messages = _capability_field("Simulates Messages")

    _sql_constraints = [
        ("webhook_token_uniq", "UNIQUE(webhook_token)", "The webhook token must be unique."),
    ]

    # ------------------------------------------------------------------ compute

    @api.depends("webhook_token", "provider")
    def _compute_webhook_url(self):
        base_url = self[:1].get_base_url() if self else ""
        for integration in self:
            integration.webhook_url = (
                f"{base_url}/vm_whatsapp/webhook/{integration.provider}/{integration.webhook_token}"
                if integration.webhook_token and integration.provider
                else False
            )

    @api.depends("provider")
    def _compute_provider_capabilities(self):
        for integration in self:
            provider_class = providers.PROVIDERS.get(integration.provider)
            capabilities = provider_class.capabilities() if provider_class else {}
            for name in providers.CAPABILITIES:
                integration[f"provider_{name}"] = capabilities.get(name, False)

    # The secret fields (_SECRET_FIELDS): ``<name>`` is write-only (computed empty, its inverse
    # stores it encrypted in ``<name>_encrypted``), ``<name>_set`` says whether one is stored.

    def _compute_secrets(self):
        # Write-only: reading never returns the secret.
        for integration in self:
            for field_name in self._SECRET_FIELDS:
                integration[field_name] = False

    def _inverse_secrets(self):
        for integration in self:
            for field_name in self._SECRET_FIELDS:
                if integration[field_name]:
                    integration._set_secret(field_name, integration[field_name])

    @api.depends(lambda self: [f"{field_name}_encrypted" for field_name in self._SECRET_FIELDS])
    def _compute_secrets_set(self):
        for integration in self:
            for field_name in self._SECRET_FIELDS:
                integration[f"{field_name}_set"] = bool(integration[f"{field_name}_encrypted"])

    def _compute_last_webhook_at(self):
        # _origin: inside an unsaved form (e.g. the Settings list) the records are new-id copies
        last = dict(
            self.env["vm.whatsapp.webhook.log"]
            .sudo()
            ._read_group(
                [("integration_id", "in", self._origin.ids), ("signature", "=", "valid")],
                ["integration_id"],
                ["received_at:max"],
            )
        )
        for integration in self:
            integration.last_webhook_at = last.get(integration._origin, False)

    def _compute_failed_webhook_count(self):
        counts = dict(
            self.env["vm.whatsapp.webhook.log"]
            .sudo()
            ._read_group(
                [("integration_id", "in", self._origin.ids), ("state", "=", "failed")], ["integration_id"], ["__count"]
            )
        )
        for integration in self:
            integration.failed_webhook_count = counts.get(integration._origin, 0)

    def _compute_conversation_count(self):
        counts = dict(
            self.env["vm.whatsapp.conversation"]._read_group(
                [("integration_id", "in", self._origin.ids)], ["integration_id"], ["__count"]
            )
        )
        for integration in self:
            integration.conversation_count = counts.get(integration._origin, 0)

    # ------------------------------------------------------------------ CRUD

    @api.model_create_multi
    def create(self, vals_list):
        integrations = super().create(vals_list)
        for integration in integrations:
            try:
                integration._ensure_webhook_secret()
            except UserError:
                # No encryption key yet: the secret is generated when the integration connects,
                # where the missing key is reported to the user.
                _logger.info("Integration %s created without a webhook secret (no encryption key)", integration.id)
        self.env.registry.clear_cache()  # _webhook_endpoint
        return integrations

    def write(self, vals):
        if self._WEBHOOK_ENDPOINT_FIELDS.intersection(vals):
            self.env.registry.clear_cache()  # _webhook_endpoint
        if "company_id" not in vals:
            return super().write(vals)
        # The company is part of each ciphertext's associated data: re-encrypt across the move.
        clear = {integration: {f: integration._get_secret(f) for f in self._SECRET_FIELDS} for integration in self}
        result = super().write(vals)
        for integration, values in clear.items():
            for field_name, value in values.items():
                if value:
                    integration._set_secret(field_name, value)
        return result

    def unlink(self):
        self.env.registry.clear_cache()  # _webhook_endpoint
        self.env["vm.whatsapp.webhook.log"].sudo()._detach_integrations(self.ids)
        return super().unlink()

    @api.model
    @tools.ormcache("token")
    def _webhook_endpoint(self, token):
        """What the webhook route needs to know of the active integration whose webhook token is
        ``token`` (None when there is none): a WebhookEndpoint with its webhook secret still
        encrypted. Cached: every webhook asks, and integrations rarely change (writing a field
        it holds clears the cache, in every worker)."""
        integration = self.sudo().search([("webhook_token", "=", token)], limit=1) if token else None
        if not integration:
            return None
        return WebhookEndpoint(
            integration.id,
            integration.company_id.id,
            integration.provider,
            integration.external_id or None,
            integration.webhook_secret_encrypted or None,
        )

    # ------------------------------------------------------------------ secrets

    @api.model
    def _get_keyring(self):
        """The encryption keys from the configuration; a UserError that says how to fix a missing
        or malformed key."""
        try:
            return crypto.Keyring.from_config(tools.config.options)
        except crypto.EncryptionKeyError as e:
            raise UserError(str(e)) from None

    def _secret_aad(self, field_name):
        self.ensure_one()
        return crypto.associated_data(self._name, field_name, self.id, self.company_id.id)

    def _set_secret(self, field_name, value):
        self.ensure_one()
        envelope = self._get_keyring().encrypt(value, self._secret_aad(field_name)) if value else False
        self.sudo().write({f"{field_name}_encrypted": envelope})

    def _get_secret(self, field_name):
        """The clear value of a secret (for provider calls only; never log or return it to a client)."""
        self.ensure_one()
        envelope = self.sudo()[f"{field_name}_encrypted"]
        if not envelope:
            return None
        try:
            return self._get_keyring().decrypt(envelope, self._secret_aad(field_name))
        except crypto.DecryptionError as e:
            raise UserError(
                self.env._(
                    "Cannot read the %(field)s of %(name)s: %(error)s", field=field_name, name=self.name, error=e
                )
            ) from None

    def _ensure_webhook_secret(self):
        """Generate the webhook secret of providers that take it from us (all but Meta, whose
        App Secret the administrator enters)."""
        self.ensure_one()
        if self.provider_generates_webhook_secret and not self.sudo().webhook_secret_encrypted:
            self._set_secret("webhook_secret", secrets.token_urlsafe(32))

    @api.model
    def _reencrypt_all_secrets(self):
        """Re-encrypt every secret made with a previous key using the current key. A secret no
        configured key can read is left as it is. Returns (how many were re-encrypted, the
        integrations whose secrets could not be read)."""
        keyring = self._get_keyring()
        count, unreadable = 0, self.browse()
        for integration in self.sudo().with_context(active_test=False).search([]):  # pylint: disable=no-search-all
            for field_name in self._SECRET_FIELDS:
                envelope = integration[f"{field_name}_encrypted"]
                if not (envelope and keyring.needs_rotation(envelope)):
                    continue
                try:
                    integration._set_secret(field_name, integration._get_secret(field_name))
                    count += 1
                except UserError:
                    unreadable |= integration
        _logger.info(
            "Re-encrypted %s WhatsApp integration secrets with key %s; %s integrations with unreadable secrets",
            count,
            keyring.current_id,
            len(unreadable),
        )
        return count, unreadable

    # ------------------------------------------------------------------ provider

    def _get_provider(self, purpose="api", endpoint=None):
        """The provider adapter of this integration: the one way the addon builds an adapter
        (its class comes from the provider registry, providers.get_provider_class).

        ``purpose`` says what the adapter is for, and so which settings it is given; only the
        secrets it needs are decrypted:

        - ``"api"``: calling the provider (connect, state, disconnect, send, download media):
          the API URL, API key, external id, webhook secret and URL, and the server's URL;
        - ``"webhook"``: authenticating and parsing a webhook request: the external id and the
          webhook secret;
        - ``"parse"``: parsing stored webhook bodies (the inbox) and answering a provider's GET
          handshake: the external id, no secret.

        ``endpoint``, a WebhookEndpoint of :meth:`_webhook_endpoint`, gives the settings of the
        "webhook" and "parse" purposes instead of a record: the webhook route reads no
        integration row. Raises UserError when a secret cannot be decrypted (no or wrong
        encryption key)."""
        if purpose not in PROVIDER_PURPOSES:
            raise ValueError(f"Unknown provider adapter purpose {purpose!r}")
        if endpoint is None:
            self.ensure_one()
            provider_class = providers.get_provider_class(self.provider)
        else:
            if purpose == "api":
                raise ValueError("An adapter that calls the provider is built from the integration, not an endpoint.")
            provider_class = providers.get_provider_class(endpoint.provider)
        if purpose == "api":
            return provider_class(
                api_base_url=self.api_base_url,
                api_key=self._get_secret("api_key"),
                external_id=self.external_id,
                webhook_secret=self._get_secret("webhook_secret"),
                webhook_url=self.sudo().webhook_url,
                base_url=self.get_base_url(),
            )
        external_id = endpoint.external_id if endpoint else self.external_id or None
        secret = None
        if purpose == "webhook":
            secret = self._endpoint_secret(endpoint) if endpoint else self._get_secret("webhook_secret")
        return provider_class(external_id=external_id, webhook_secret=secret)

    @api.model
    def _endpoint_secret(self, endpoint):
        """The clear webhook secret of a WebhookEndpoint (None when it has none)."""
        if not endpoint.secret_envelope:
            return None
        aad = crypto.associated_data(self._name, "webhook_secret", endpoint.id, endpoint.company_id)
        try:
            return crypto.decrypt_cached(self._get_keyring(), endpoint.secret_envelope, aad)
        except crypto.DecryptionError as e:
            error = self.env._(
                "Cannot read the webhook secret of integration %(id)s: %(error)s", id=endpoint.id, error=e
            )
            raise UserError(error) from None

    # ------------------------------------------------------------------ actions

    def action_view_conversations(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_conversation_action")
        action["domain"] = [("integration_id", "=", self.id)]
        action["context"] = {"default_integration_id": self.id}
        return action

    def action_view_failed_webhooks(self):
        self.ensure_one()
        access.check_manager(self.env)
        action = self.env["ir.actions.act_window"]._for_xml_id("visionmetrics_whatsapp.vm_whatsapp_webhook_log_action")
        action["domain"] = [("integration_id", "=", self.id), ("state", "=", "failed")]
        return action

    def action_connect(self):
        """Start a new session with the provider and open the wizard that shows it: the QR (and
        pairing code) for QR providers; for official providers the credentials are validated, the
        webhook registered where the API allows, and the webhook URL shown to copy."""
        self._check_manage_access()
        self.ensure_one()
        self._ensure_webhook_secret()
        self.session_ids.filtered(lambda s: s.state in ("pending", "qr_ready")).write(
            {"state": "closed", "closed_at": fields.Datetime.now()}
        )
        session = self._start_session()
        wizard = self.env["vm.whatsapp.connect.wizard"].create({"integration_id": self.id, "session_id": session.id})
        return wizard._get_action()

    def action_disconnect(self):
        """Log the number out at the provider and close its sessions."""
        self._check_manage_access()
        self.ensure_one()
        open_sessions = self.session_ids.filtered(lambda s: s.state in ("pending", "qr_ready", "connected"))
        try:
            for external_id in set(open_sessions.mapped("external_id")) or {self.external_id}:
                self._get_provider().close_session(external_id or None)
        except WhatsAppProviderError as e:
            raise UserError(
                self.env._("%(provider)s could not disconnect: %(error)s", provider=self._provider_label(), error=e)
            ) from None
        reason = self.env._("Disconnected by %(user)s", user=self.env.user.name)
        for session in open_sessions:
            session._apply_connection_update("closed", reason=reason)
        self.write({"state": "disconnected"})
        return self._notify_user(self.env._("%(name)s is disconnected.", name=self.name))

    def action_test_connection(self):
        """Check that the provider is reachable and accepts the credentials (changes nothing)."""
        self._check_manage_access()  # the provider is called with the integration's credentials
        self.ensure_one()
        try:
            description = self._get_provider().check_connection()
        except WhatsAppProviderError as e:
            return self._notify_user(
                self.env._("Connection test failed: %(error)s", error=e), notification_type="danger", sticky=True
            )
        return self._notify_user(description)

    def action_send_test_message(self, sender=None, text=None, name=None, referral=None):
        """Sandbox: post a signed inbound-message webhook to this integration's own webhook URL, as
        the provider would, and say what the route answered. The button sends a greeting from a
        test number; over RPC (``make demo``, scripts/sandbox_message.py) ``sender`` (a phone
        number), ``text`` and ``name`` say who writes what, and ``referral`` (a dict in the Cloud
        API's shape) makes it the first message after a click on an ad."""
        self._check_manage_access()
        self.ensure_one()
        if not self.provider_simulates_messages:
            raise UserError(self.env._("Test messages can only be simulated with the Sandbox provider."))
        for value in (sender, text, name):
            if value is not None and not isinstance(value, str):
                raise UserError(self.env._("The sender, text and name of a test message are texts."))
        if referral is not None and not isinstance(referral, dict):
            raise UserError(self.env._("The referral of a test message is an object (source_id, source_url...)."))
        self._ensure_webhook_secret()
        provider = self._get_provider()  # with the secret just generated, if any
        body = provider.build_message_payload(
            self.external_id or "sandbox",
            sender or SANDBOX_TEST_SENDER,
            text if text is not None else self.env._("Hello! This is a test message from the WhatsApp sandbox."),
            name=name or self.env._("Sandbox Tester"),
            referral=referral,
        )
        url = self.sudo().webhook_url
        try:
            response = requests.post(url, data=body, headers=provider.sign(body), timeout=TEST_MESSAGE_TIMEOUT)
        except requests.RequestException as e:
            return self._notify_user(
                self.env._("The webhook could not be reached at %(url)s: %(error)s", url=url, error=type(e).__name__),
                notification_type="danger",
                sticky=True,
            )
        if response.ok:
            return self._notify_user(
                self.env._(
                    "Test message received: the webhook answered HTTP %(status)s. It appears in the "
                    "conversations within a few seconds.",
                    status=response.status_code,
                )
            )
        return self._notify_user(
            self.env._(
                "The webhook answered HTTP %(status)s: %(body)s", status=response.status_code, body=response.text[:200]
            ),
            notification_type="danger",
            sticky=True,
        )

    # ------------------------------------------------------------------ connection helpers

    def _check_manage_access(self):
        """Connecting, disconnecting and testing are for the WhatsApp administrators of the
        integrations' companies; an AccessError that names none of them otherwise."""
        access.check_manager(self.env)
        access.check_records(self)

    def _start_session(self):
        """Ask the provider for a new session and record it; a UserError with the provider's
        message when it fails."""
        self.ensure_one()
        try:
            info = self._get_provider().create_session()
        except WhatsAppProviderError as e:
            _logger.warning("WhatsApp integration %s: cannot start a session: %s", self.id, e)
            raise UserError(
                self.env._(
                    "%(provider)s could not start a session: %(error)s", provider=self._provider_label(), error=e
                )
            ) from None
        if not self.external_id and info.external_id:  # remember the instance the provider created
            self.external_id = info.external_id
        return self.env["vm.whatsapp.session"]._create_from_info(self, info)

    def _provider_label(self):
        return dict(self._fields["provider"]._description_selection(self.env)).get(self.provider, self.provider)

    def _notify_user(self, message, notification_type="success", sticky=False):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": message, "type": notification_type, "sticky": sticky},
        }
