"""Z-API in the addon: connecting registers webhook URLs that carry the secret, and webhooks
authenticated by that secret go through the real route to conversations."""

import base64
import json

from odoo import fields
from odoo.tests import tagged
from odoo.tools import mute_logger

from . import payloads
from .common import WhatsAppCase, WhatsAppHttpCase
from .test_connect_flow import PNG_1PX, MockedHttpMixin

CONTROLLER_LOGGER = "odoo.addons.visionmetrics_whatsapp.controllers.webhook"
INSTANCE = "A20DA9C0183A2D35A260F53F5D2B9244"
BASE = f"https://api.z-api.io/instances/{INSTANCE}/token/INSTANCE-TOKEN"


@tagged("post_install", "-at_install")
class TestZapiConnect(MockedHttpMixin, WhatsAppCase):
    def test_connect_registers_the_secret_url_and_shows_the_qr_until_connected(self):
        self.env["ir.config_parameter"].set_param("web.base.url", "https://odoo.example.com")
        integration = self._create_integration("zapi", external_id=INSTANCE, api_key="INSTANCE-TOKEN:CLIENT-TOKEN")
        for kind in ("received-delivery", "message-status", "connected", "disconnected"):
            self.http.put(f"{BASE}/update-webhook-{kind}", json={"value": True})
        self.http.get(f"{BASE}/status", json={"connected": False, "error": "You are not connected."})
        self.http.get(
            f"{BASE}/qr-code/image", json={"value": "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()}
        )
        wizard = self.env["vm.whatsapp.connect.wizard"].browse(integration.action_connect()["res_id"])
        self.assertTrue(wizard.uses_qr)
        self.assertEqual((wizard.session_id.state, base64.b64decode(wizard.session_id.qr_image)), ("qr_ready", PNG_1PX))
        secret = integration._get_secret("webhook_secret")
        registered = {json.loads(c.request.body)["value"] for c in self.http.calls if c.request.method == "PUT"}
        self.assertEqual(registered, {f"{integration.webhook_url}?vm_secret={secret}"})
        self.assertTrue(all(c.request.headers["Client-Token"] == "CLIENT-TOKEN" for c in self.http.calls))
        self.http.replace(self.http.GET, f"{BASE}/status", json={"connected": True, "smartphoneConnected": True})
        wizard.session_id.last_checked_at = fields.Datetime.now().replace(year=2000)
        self.assertEqual(wizard.action_poll()["state"], "connected")
        self.assertEqual(integration.state, "connected")


@tagged("post_install", "-at_install")
class TestZapiWebhooks(WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.zapi = cls._create_integration("zapi", external_id=INSTANCE, api_key="INSTANCE-TOKEN")

    def _post_with_secret(self, body, headers=None):
        url = f"/vm_whatsapp/webhook/zapi/{self.zapi.webhook_token}?vm_secret={self.zapi._get_secret('webhook_secret')}"
        response = self.url_open(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
        self._process_inbox()
        return response

    def test_a_message_authenticated_by_the_secret_in_the_url(self):
        secret = self.zapi._get_secret("webhook_secret")
        body = payloads.zapi_received(INSTANCE, "5544999999999", "Oi, vi o anúncio", "3EB0ZAPI1")
        response = self._post_with_secret(body, {"z-api-token": "INSTANCE-TOKEN"})
        self.assertEqual(response.status_code, 200)
        message = self.env["vm.whatsapp.message"].search([("external_id", "=", "3EB0ZAPI1")])
        self.assertEqual((message.body, message.direction), ("Oi, vi o anúncio", "inbound"))
        self.assertEqual(message.conversation_id.contact_phone, "+5544999999999")
        log = self._last_log()
        self.assertEqual((log.provider, log.signature, log.state), ("zapi", "valid", "processed"))
        self.assertNotIn(secret, log.headers + log.payload, "the secret in the URL is not stored")

    def test_a_wrong_or_missing_secret_is_refused(self):
        body = payloads.zapi_received(INSTANCE, "5544999999999", "oi", "3EB0ZAPI2")
        url = f"/vm_whatsapp/webhook/zapi/{self.zapi.webhook_token}"
        with mute_logger(CONTROLLER_LOGGER):
            for query in ("?vm_secret=guess", ""):
                response = self.url_open(url + query, data=body, headers={"Content-Type": "application/json"})
                self.assertEqual(response.status_code, 401, query)
        self.assertFalse(self.env["vm.whatsapp.message"].search([("external_id", "=", "3EB0ZAPI2")]))

    def test_connected_then_disconnected_by_webhook(self):
        session = self.env["vm.whatsapp.session"].create({"integration_id": self.zapi.id, "external_id": INSTANCE})
        connected = {"type": "ConnectedCallback", "connected": True, "phone": "5544999999999", "instanceId": INSTANCE}
        self.assertEqual(self._post_with_secret(payloads.dump(connected)).status_code, 200)
        self.assertEqual(
            (session.state, self.zapi.state, self.zapi.phone_number), ("connected", "connected", "+5544999999999")
        )
        disconnected = {"type": "DisconnectedCallback", "error": "Device has been disconnected", "instanceId": INSTANCE}
        self.assertEqual(self._post_with_secret(payloads.dump(disconnected)).status_code, 200)
        self.assertEqual((session.state, self.zapi.state), ("closed", "disconnected"))
        self.assertEqual(session.error_message, "Device has been disconnected")
