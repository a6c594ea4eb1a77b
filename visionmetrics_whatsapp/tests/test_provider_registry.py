"""The provider registry as the addon reads it: the selections, the capability fields, the views,
the inbox handlers and the one adapter factory (vm.whatsapp.integration._get_provider)."""

import re
from unittest.mock import patch

from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models.vm_whatsapp_inbox import HANDLERS
from ..providers import CAPABILITIES, PROVIDERS, SIGNATURE_VALID
from ..providers.sandbox import SandboxProvider
from .common import WhatsAppCase, WhatsAppHttpCase

CONTROLLER_LOGGER = "odoo.addons.visionmetrics_whatsapp.controllers.webhook"
# a view modifier that names a provider: what the capability fields replace
PROVIDER_MODIFIER = re.compile(r"""provider\s*(==|!=|in\b|not in\b)""")


@tagged("post_install", "-at_install")
class TestProviderRegistry(WhatsAppCase):
    def _selection_values(self, model):
        return self.env[model]._fields["provider"].get_values(self.env)

    def test_selections_are_the_registry(self):
        for model in ("vm.whatsapp.integration", "vm.whatsapp.webhook.log"):
            self.assertEqual(set(self._selection_values(model)), set(PROVIDERS), model)
            rows = self.env["ir.model.fields.selection"].search(
                [("field_id.model", "=", model), ("field_id.name", "=", "provider")]
            )
            self.assertEqual(set(rows.mapped("value")), set(PROVIDERS), f"{model}: the stored selection")
        labels = dict(self.env["vm.whatsapp.integration"]._fields["provider"]._description_selection(self.env))
        self.assertEqual(labels["sandbox"], "Sandbox (no account needed)")

    def test_every_event_kind_has_a_handler(self):
        for code, provider_class in PROVIDERS.items():
            self.assertLessEqual(provider_class.event_kinds, set(HANDLERS) | {"unknown"}, code)
        for model, method in HANDLERS.values():
            self.assertTrue(callable(getattr(self.env[model], method, None)), f"{model}.{method}")

    def test_capability_fields_mirror_the_provider_classes(self):
        Integration = self.env["vm.whatsapp.integration"]
        fields = {name for name in Integration._fields if name.startswith("provider_")}
        self.assertEqual(fields, {f"provider_{name}" for name in CAPABILITIES})
        for code, provider_class in PROVIDERS.items():
            integration = self._create_integration(code, external_id="x", api_base_url="https://gw.example.com")
            values = {name: integration[f"provider_{name}"] for name in CAPABILITIES}
            self.assertEqual(values, provider_class.capabilities(), code)

    def test_changing_the_provider_changes_what_the_form_shows(self):
        integration = self._create_integration("sandbox")
        self.assertFalse(integration.provider_uses_api_key)
        self.assertTrue(integration.provider_simulates_messages)
        integration.provider = "meta"
        self.assertTrue(integration.provider_uses_api_key and integration.provider_requires_external_id)
        self.assertFalse(integration.provider_simulates_messages)

    def test_views_read_capabilities_not_provider_codes(self):
        for xmlid in (
            "visionmetrics_whatsapp.vm_whatsapp_integration_view_form",
            "visionmetrics_whatsapp.vm_whatsapp_connect_wizard_view_form",
        ):
            arch = self.env.ref(xmlid).arch_db
            self.assertFalse(PROVIDER_MODIFIER.search(arch), f"{xmlid} names a provider in a modifier")

    def test_a_parsing_adapter_decrypts_no_secret(self):
        integration = self._create_integration("sandbox", external_id="sbx-1")
        integration._ensure_webhook_secret()
        with patch.object(type(integration), "_get_keyring", side_effect=UserError("no key")):
            parser = integration._get_provider("parse")
            with self.assertRaises(UserError):
                integration._get_provider("webhook")
        self.assertEqual((parser.external_id, parser.webhook_secret), ("sbx-1", None))
        verifier = integration._get_provider("webhook")
        self.assertEqual(verifier.webhook_secret, integration._get_secret("webhook_secret"))
        self.assertIsNone(verifier.api_key)
        endpoint = integration._webhook_endpoint(integration.webhook_token)
        from_endpoint = integration._get_provider("webhook", endpoint=endpoint)
        self.assertEqual(from_endpoint.webhook_secret, verifier.webhook_secret)
        with self.assertRaises(ValueError):
            integration._get_provider("api", endpoint=endpoint)
        with self.assertRaises(ValueError):
            integration._get_provider("everything")

    def test_media_waits_for_a_download_only_when_the_provider_downloads(self):
        integration = self._create_integration("sandbox")
        conversation = self._create_conversation(integration)
        Message = self.env["vm.whatsapp.message"]

        class Event:
            message_id, from_me, message_type, text, timestamp = "m1", False, "image", "", None
            media = {"url": "https://example.com/x.jpg"}

        vals = Message._prepare_vals_from_event(conversation, Event, self.env["vm.whatsapp.webhook.log"])
        self.assertIn("x.jpg", vals["media_ref"])
        self.assertNotIn("media_state", vals, "the sandbox downloads nothing: no download is queued")
        meta = self._create_integration("meta", external_id="1")
        vals = Message._prepare_vals_from_event(self._create_conversation(meta), Event, Message.browse())
        self.assertEqual(vals["media_state"], "pending")


@tagged("post_install", "-at_install")
class TestProviderWebhooks(WhatsAppHttpCase):
    def test_every_provider_fails_closed(self):
        """Whatever the provider, a request without its credentials is refused before anything
        is parsed, also when the URL's query carries a guess."""
        for code in PROVIDERS:
            integration = self._create_integration(code, external_id="x", webhook_secret="s3cr3t-value")
            url = f"/vm_whatsapp/webhook/{code}/{integration.webhook_token}"
            with mute_logger(CONTROLLER_LOGGER):
                for query in ("", "?vm_secret=guess"):
                    response = self.url_open(url + query, data=b"{}", headers={"Content-Type": "application/json"})
                    self.assertEqual(response.status_code, 401, f"{code} {query}")
            self.assertEqual(self._last_log().state, "rejected")

    def test_the_query_parameters_reach_the_provider(self):
        integration = self._create_integration("sandbox", external_id="sbx-q")
        body = self._sandbox_message(integration, "+5511987650000", "oi")
        with patch.object(SandboxProvider, "verify_webhook", autospec=True, return_value=SIGNATURE_VALID) as verify:
            url = f"/vm_whatsapp/webhook/sandbox/{integration.webhook_token}?vm_secret=abc&x=1"
            response = self.url_open(url, data=body, headers={"Content-Type": "application/json"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(verify.call_args.kwargs["params"], {"vm_secret": "abc", "x": "1"})
        self.assertNotIn("abc", self._last_log().headers + (self._last_log().payload or ""))
