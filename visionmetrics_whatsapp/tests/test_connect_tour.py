from unittest.mock import patch

from odoo.tests import HttpCase, tagged
from odoo.tools import config

from .common import TEST_KEY


@tagged("post_install", "-at_install")
class TestConnectTour(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # the HTTP server runs in this process: it sees the patched key too
        cls.startClassPatcher(patch.dict(config.options, {"integrations_key": TEST_KEY}))

    def test_connect_sandbox_from_settings(self):
        company = self.env.ref("base.user_admin").company_id
        self.env["vm.whatsapp.integration"].search([("company_id", "=", company.id)]).unlink()
        integration = self.env["vm.whatsapp.integration"].create(
            {"name": "Tour sandbox", "provider": "sandbox", "company_id": company.id}
        )
        self.start_tour("/odoo/settings", "vm_whatsapp_connect_tour", login="admin")
        self.assertEqual(integration.state, "connected")
        self.assertTrue(integration.phone_number.startswith("+55119999"))
        session = integration.session_ids.filtered(lambda s: s.state == "connected")
        self.assertEqual(len(session), 1)
        self.assertEqual(integration.external_id, session.external_id)
