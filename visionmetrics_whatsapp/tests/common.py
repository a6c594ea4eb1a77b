import base64
import os
from unittest.mock import patch

from odoo.tests import HttpCase, TransactionCase, new_test_user
from odoo.tools import config

from ..models.vm_whatsapp_inbox import LANES
from . import payloads

# Fixed test keys (32 bytes each), never used outside tests.
TEST_KEY = base64.b64encode(b"k" * 32).decode()
TEST_KEY_PREVIOUS = "70" * 32  # hex form


def process_inbox(env, batch_size=100):
    """Run every lane's inbox cron until no request is received (bounded)."""
    Inbox, Log = env["vm.whatsapp.inbox"], env["vm.whatsapp.webhook.log"]
    for _round in range(100):
        for lane in range(LANES):
            Inbox._cron_process(lane, batch_size=batch_size)
        if not Log.search_count([("state", "=", "received")]):
            return


class WhatsAppCase(TransactionCase):
    """Base of the addon's Odoo tests: a known encryption key, two companies, factories."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.startClassPatcher(patch.dict(config.options, {"integrations_key": TEST_KEY}))
        cls.startClassPatcher(patch.dict(os.environ, {}, clear=False))
        os.environ.pop("INTEGRATIONS_KEY", None)
        cls.company_a = cls.env.company
        cls.company_b = cls.env["res.company"].create({"name": "WhatsApp Company B"})

    @classmethod
    def _create_integration(cls, provider="sandbox", company=None, **vals):
        return cls.env["vm.whatsapp.integration"].create(
            {
                "name": vals.pop("name", f"{provider} integration"),
                "provider": provider,
                "company_id": (company or cls.company_a).id,
                **vals,
            }
        )

    @classmethod
    def _create_conversation(cls, integration, identity="5511987654321@s.whatsapp.net", **vals):
        return cls.env["vm.whatsapp.conversation"].create(
            {"integration_id": integration.id, "contact_identity": identity, **vals}
        )

    @classmethod
    def _create_message(cls, conversation, external_id="MSG-1", **vals):
        return cls.env["vm.whatsapp.message"].create(
            {"conversation_id": conversation.id, "external_id": external_id, "body": "hello", **vals}
        )

    @classmethod
    def _create_user(cls, login, company, groups):
        return new_test_user(cls.env, login=login, groups=groups, company_id=company.id, company_ids=[company.id])

    def _raw_row(self, record):
        """All columns of a record's row, read with SQL (what a database dump would show)."""
        self.env.flush_all()
        self.env.cr.execute(f"SELECT * FROM {record._table} WHERE id = %s", [record.id])  # noqa: S608
        return dict(zip([d.name for d in self.env.cr.description], self.env.cr.fetchone(), strict=True))


class WhatsAppHttpCase(HttpCase, WhatsAppCase):
    """Webhooks posted over HTTP to the test server, signed like the providers sign them."""

    def _post(self, integration, body, headers=None, provider=None, token=None, process=True):
        """POST a webhook; then, unless ``process`` is false, run the inbox cron as the cron
        worker would right after (the test server never commits, so it is not woken up)."""
        url = f"/vm_whatsapp/webhook/{provider or integration.provider}/{token or integration.webhook_token}"
        response = self.url_open(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
        if process:
            self._process_inbox()
        return response

    def _process_inbox(self):
        """Apply every received request, lane by lane, as the cron workers would."""
        process_inbox(self.env)

    def _post_signed(self, integration, body, **kwargs):
        secret = integration._get_secret("webhook_secret")
        return self._post(integration, body, payloads.sign(integration.provider, secret, body), **kwargs)

    def _last_log(self):
        return self.env["vm.whatsapp.webhook.log"].search([], order="id desc", limit=1)

    def _sandbox_message(self, integration, sender, text, **kwargs):
        return integration._get_provider().build_message_payload(integration.external_id, sender, text, **kwargs)
