from unittest.mock import patch

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged
from odoo.tools import config, mute_logger

from .common import TEST_KEY, TEST_KEY_PREVIOUS, WhatsAppCase

API_KEY = "EAAG-very-secret-access-token-1234567890"
APP_SECRET = "meta-app-secret-abcdef"


@tagged("post_install", "-at_install")
class TestIntegrationSecrets(WhatsAppCase):
    def test_secrets_are_encrypted_at_rest_and_round_trip(self):
        integration = self._create_integration(
            "meta", external_id="1234567890", api_key=API_KEY, webhook_secret=APP_SECRET
        )
        row = self._raw_row(integration)
        dump = repr(row)
        self.assertNotIn(API_KEY, dump)
        self.assertNotIn(APP_SECRET, dump)
        self.assertTrue(row["api_key_encrypted"].startswith("vmenc1:"))
        self.assertEqual(integration._get_secret("api_key"), API_KEY)
        self.assertEqual(integration._get_secret("webhook_secret"), APP_SECRET)
        provider = integration._get_provider()
        self.assertEqual((provider.api_key, provider.webhook_secret), (API_KEY, APP_SECRET))

    def test_each_encryption_uses_a_new_nonce(self):
        first = self._create_integration("meta", external_id="1", api_key=API_KEY)
        second = self._create_integration("meta", external_id="2", api_key=API_KEY)
        self.assertNotEqual(first.sudo().api_key_encrypted, second.sudo().api_key_encrypted)

    def test_secrets_are_write_only(self):
        integration = self._create_integration("meta", external_id="1", api_key=API_KEY, webhook_secret=APP_SECRET)
        integration.invalidate_recordset()
        values = integration.read(["api_key", "webhook_secret", "api_key_set", "webhook_secret_set"])[0]
        self.assertFalse(values["api_key"])
        self.assertFalse(values["webhook_secret"])
        self.assertTrue(values["api_key_set"])
        self.assertTrue(values["webhook_secret_set"])
        # web_read (what the form view calls) returns no secret either
        form_values = integration.web_read({"api_key": {}, "webhook_secret": {}, "api_key_encrypted": {}})[0]
        self.assertNotIn(API_KEY, repr(form_values))

    def test_manager_without_settings_rights_cannot_read_ciphertexts(self):
        integration = self._create_integration("meta", external_id="1", api_key=API_KEY)
        manager = self._create_user(
            "wa_manager_secret", self.company_a, "visionmetrics_whatsapp.group_whatsapp_manager"
        )
        record = integration.with_user(manager)
        self.assertTrue(record.api_key_set)
        with self.assertRaises(AccessError):  # a field restricted to Settings administrators
            record.read(["api_key_encrypted"])

    def test_sandbox_gets_a_generated_webhook_secret(self):
        integration = self._create_integration("sandbox")
        self.assertTrue(integration.webhook_secret_set)
        self.assertGreaterEqual(len(integration._get_secret("webhook_secret")), 32)
        meta = self._create_integration("meta", external_id="1")
        self.assertFalse(meta.webhook_secret_set, "Meta's App Secret comes from the administrator")

    def test_ciphertext_copied_to_another_record_fails(self):
        first = self._create_integration("meta", external_id="1", api_key=API_KEY)
        second = self._create_integration("meta", external_id="2", api_key="other")
        second.sudo().api_key_encrypted = first.sudo().api_key_encrypted
        with self.assertRaisesRegex(UserError, "altered or copied"):
            second._get_secret("api_key")

    def test_moving_to_another_company_keeps_secrets_readable(self):
        integration = self._create_integration("meta", external_id="1", api_key=API_KEY)
        integration.company_id = self.company_b
        self.assertEqual(integration._get_secret("api_key"), API_KEY)

    def test_missing_key_is_a_clear_user_error(self):
        integration = self._create_integration("meta", external_id="1", api_key=API_KEY)
        with patch.dict(config.options, {"integrations_key": ""}):
            with self.assertRaisesRegex(UserError, "integrations_key") as caught:
                integration._get_secret("api_key")
            self.assertIn("os.urandom(32)", str(caught.exception), "the message says how to generate a key")
            with self.assertRaisesRegex(UserError, "integrations_key"):
                integration.write({"api_key": "new"})

    def test_malformed_key_is_a_clear_user_error(self):
        with patch.dict(config.options, {"integrations_key": "too-short"}):
            with self.assertRaisesRegex(UserError, "'integrations_key' must be 32 bytes"):
                self._create_integration("meta", external_id="1", api_key=API_KEY)

    def test_integration_without_key_is_created_and_reports_later(self):
        with (
            patch.dict(config.options, {"integrations_key": ""}),
            mute_logger("odoo.addons.visionmetrics_whatsapp.models.vm_whatsapp_integration"),
        ):
            integration = self._create_integration("sandbox")
        self.assertFalse(integration.webhook_secret_set)
        integration._ensure_webhook_secret()
        self.assertTrue(integration.webhook_secret_set)

    def test_key_rotation_reencrypts_with_the_current_key(self):
        with patch.dict(config.options, {"integrations_key": TEST_KEY_PREVIOUS}):
            integration = self._create_integration("meta", external_id="1", api_key=API_KEY)
            old_envelope = integration.sudo().api_key_encrypted
        # New key only: the old ciphertext cannot be read, with an explanation.
        with self.assertRaisesRegex(UserError, "integrations_key_previous"):
            integration._get_secret("api_key")
        with patch.dict(config.options, {"integrations_key": TEST_KEY, "integrations_key_previous": TEST_KEY_PREVIOUS}):
            self.assertEqual(integration._get_secret("api_key"), API_KEY)
            count, unreadable = self.env["vm.whatsapp.integration"]._reencrypt_all_secrets()
            self.assertGreaterEqual(count, 1)
            self.assertNotIn(integration, unreadable)
        new_envelope = integration.sudo().api_key_encrypted
        self.assertNotEqual(old_envelope.split(":")[1], new_envelope.split(":")[1])
        self.assertEqual(integration._get_secret("api_key"), API_KEY)

    def test_rotation_skips_and_reports_unreadable_secrets(self):
        third_key = "ab" * 32
        with patch.dict(config.options, {"integrations_key": third_key}):
            lost = self._create_integration("meta", name="Lost key", external_id="9", api_key=API_KEY)
        with patch.dict(config.options, {"integrations_key": TEST_KEY_PREVIOUS}):
            readable = self._create_integration("meta", name="Readable", external_id="8", api_key=API_KEY)
        with patch.dict(config.options, {"integrations_key": TEST_KEY, "integrations_key_previous": TEST_KEY_PREVIOUS}):
            action = self.env["res.config.settings"].create({}).action_vm_whatsapp_reencrypt()
            self.assertEqual(readable._get_secret("api_key"), API_KEY)
        self.assertEqual(action["params"]["type"], "warning")
        self.assertIn("Lost key", action["params"]["message"])
        self.assertNotIn("Readable", action["params"]["message"])
        self.assertTrue(lost.api_key_set, "an unreadable secret is left untouched, not erased")

    def test_settings_show_key_state_and_self_test(self):
        settings = self.env["res.config.settings"].create({})
        self.assertIn("Configured", settings.vm_whatsapp_key_status)
        action = settings.action_vm_whatsapp_test_key()
        self.assertEqual(action["params"]["type"], "success")
        with patch.dict(config.options, {"integrations_key": ""}):
            settings = self.env["res.config.settings"].create({})
            self.assertIn("integrations_key", settings.vm_whatsapp_key_status)
