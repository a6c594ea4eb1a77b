import base64
import json
from contextlib import contextmanager
from datetime import timedelta
from unittest.mock import patch

import responses

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, tagged
from odoo.tests.common import _super_send

from ..models.vm_whatsapp_session import _logger as session_logger
from ..models.vm_whatsapp_session import render_qr_png
from ..providers.sandbox import SandboxProvider
from .common import TEST_KEY, WhatsAppCase

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
EVO = "http://evolution.test"
META = "https://graph.facebook.com/v21.0"
D360 = "https://waba-v2.360dialog.io"


@contextmanager
def captured_logs():
    """The messages the session model logs (INFO and up) inside the block."""
    lines = []

    def record(level):
        def log(msg, *args, **kwargs):
            lines.append(f"{level}:{msg % args if args else msg}")

        return log

    with (
        patch.object(session_logger, "info", side_effect=record("INFO")),
        patch.object(session_logger, "warning", side_effect=record("WARNING")),
    ):
        yield lines


class MockedHttpMixin:
    """Every provider call goes to ``self.http`` (a ``responses`` mock): registered URLs answer,
    anything else fails as a connection error; nothing reaches the network."""

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        return _super_send(s, r, **kw)  # into the responses mock started in setUp

    def setUp(self):
        super().setUp()
        self.http = responses.RequestsMock(assert_all_requests_are_fired=False)
        self.http.start()
        self.addCleanup(self.http.stop)
        self.addCleanup(self.http.reset)


@tagged("post_install", "-at_install")
class TestConnectFlow(MockedHttpMixin, WhatsAppCase):
    def _expire(self, session):
        session.write({"qr_expires_at": fields.Datetime.now() - timedelta(seconds=1)})

    def test_action_connect_sandbox_shows_the_qr_of_the_scan_url(self):
        integration = self._create_integration("sandbox")
        action = integration.action_connect()
        self.assertEqual((action["res_model"], action["target"]), ("vm.whatsapp.connect.wizard", "new"))
        wizard = self.env["vm.whatsapp.connect.wizard"].browse(action["res_id"])
        session = wizard.session_id
        self.assertTrue(wizard.uses_qr)
        self.assertEqual(session.state, "qr_ready")
        self.assertGreaterEqual(len(session.external_id), 24, "the scan URL must be unguessable")
        self.assertEqual(
            session.qr_code, f"{integration.get_base_url()}/vm_whatsapp/sandbox/{session.external_id}/scan"
        )
        png = base64.b64decode(session.qr_image)
        self.assertTrue(png.startswith(b"\x89PNG"))
        self.assertEqual(png, render_qr_png(session.qr_code), "the QR image encodes the scan URL")
        self.assertGreater(session.qr_expires_at, fields.Datetime.now())
        self.assertEqual(integration.state, "connecting")
        # connecting again starts a new attempt with a new secret URL and closes the old one
        second = self.env["vm.whatsapp.connect.wizard"].browse(integration.action_connect()["res_id"]).session_id
        self.assertNotEqual(second.external_id, session.external_id)
        self.assertEqual(session.state, "closed")

    def test_settings_button_creates_the_company_integration(self):
        self.assertFalse(self.company_b.vm_whatsapp_integration_ids)
        settings = self.env["res.config.settings"].with_company(self.company_b).create({})
        action = settings.action_vm_whatsapp_connect()
        integration = self.company_b.vm_whatsapp_integration_ids
        self.assertEqual(len(integration), 1)
        self.assertEqual((integration.provider, integration.state), ("sandbox", "connecting"))
        wizard = self.env["vm.whatsapp.connect.wizard"].browse(action["res_id"])
        self.assertEqual(wizard.session_id.company_id, self.company_b)
        # the existing integration is reused
        settings.action_vm_whatsapp_connect()
        self.assertEqual(self.company_b.vm_whatsapp_integration_ids, integration)

    def test_poll_reports_qr_then_connected(self):
        integration = self._create_integration("sandbox")
        wizard = self.env["vm.whatsapp.connect.wizard"].browse(integration.action_connect()["res_id"])
        result = wizard.action_poll()
        self.assertEqual(result["state"], "qr_ready")
        self.assertTrue(result["qr_image"].startswith("data:image/png;base64,"))
        self.assertEqual(result["qr_code"], wizard.session_id.qr_code)
        self.assertFalse(result["can_retry"])
        with captured_logs() as logs:
            wizard.session_id._apply_connection_update("connected", phone="5511987654321")
            wizard.session_id._apply_connection_update("connected", phone="5511987654321")  # idempotent
        connected_lines = [line for line in logs if "WhatsApp connected" in line]
        self.assertEqual(len(connected_lines), 1)
        self.assertIn("+55119****4321", connected_lines[0])
        self.assertNotIn("5511987654321", "".join(logs))
        result = wizard.action_poll()
        self.assertEqual(result["state"], "connected")
        self.assertEqual(result["message"], "WhatsApp connected: +5511987654321")
        self.assertEqual(integration.state, "connected")
        self.assertEqual(integration.phone_number, "+5511987654321")
        self.assertEqual(integration.external_id, wizard.session_id.external_id)

    def test_expired_qr_is_refreshed_then_the_wizard_says_why(self):
        integration = self._create_integration("sandbox")
        wizard = self.env["vm.whatsapp.connect.wizard"].browse(integration.action_connect()["res_id"])
        seen = [wizard.session_id]
        for refresh in range(1, 5):
            self._expire(wizard.session_id)
            result = wizard.action_poll()
            self.assertEqual(result["state"], "qr_ready", f"refresh {refresh} shows a new QR")
            self.assertEqual(seen[-1].state, "expired")
            self.assertNotIn(wizard.session_id, seen)
            seen.append(wizard.session_id)
        self._expire(wizard.session_id)
        result = wizard.action_poll()
        self.assertEqual(result["state"], "expired")
        self.assertIn("expired 5 times without being scanned", result["message"])
        self.assertTrue(result["can_retry"])
        self.assertFalse(result["qr_image"])
        result = wizard.action_retry()
        self.assertEqual(result["state"], "qr_ready")
        self.assertFalse(result["can_retry"])
        self.assertEqual(wizard.refresh_count, 0)

    def test_evolution_connect_passes_the_provider_png_through_and_connects(self):
        data_url = "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()
        self.http.post(
            f"{EVO}/instance/create",
            json={
                "instance": {"instanceName": "shop", "status": "connecting"},
                "hash": "instance-token",
                "qrcode": {"pairingCode": "WZYEH1YY", "code": "2@abc,def", "base64": data_url, "count": 1},
            },
            status=201,
        )
        integration = self._create_integration("evolution", api_base_url=EVO, external_id="shop", api_key="k")
        wizard = self.env["vm.whatsapp.connect.wizard"].browse(integration.action_connect()["res_id"])
        session = wizard.session_id
        self.assertEqual(base64.b64decode(session.qr_image), PNG_1PX)
        self.assertEqual((session.pairing_code, session.external_id), ("WZYEH1YY", "shop"))
        sent = json.loads(self.http.calls[0].request.body)
        self.assertEqual(sent["webhook"]["url"], integration.webhook_url)
        self.http.get(f"{EVO}/instance/connectionState/shop", json={"instance": {"state": "open"}})
        self.http.get(f"{EVO}/instance/fetchInstances", json=[{"ownerJid": "5511987654321@s.whatsapp.net"}])
        session.last_checked_at = fields.Datetime.now() - timedelta(seconds=5)
        result = wizard.action_poll()
        self.assertEqual(result["state"], "connected")
        self.assertEqual(integration.phone_number, "+5511987654321")

    def test_meta_connect_validates_the_credentials_and_shows_the_webhook(self):
        self.http.get(
            f"{META}/106540352242922",
            json={"display_phone_number": "+55 11 98765-4321", "verified_name": "Loja", "id": "106540352242922"},
        )
        integration = self._create_integration(
            "meta", external_id="106540352242922", api_key="token", webhook_secret="app-secret"
        )
        wizard = self.env["vm.whatsapp.connect.wizard"].browse(integration.action_connect()["res_id"])
        self.assertFalse(wizard.uses_qr)
        self.assertEqual(wizard.state, "connected")
        self.assertEqual(wizard.webhook_url, integration.webhook_url)
        self.assertEqual(wizard.webhook_token, integration.webhook_token)
        self.assertEqual((integration.state, integration.phone_number), ("connected", "+5511987654321"))
        self.assertEqual(self.http.calls[0].request.headers["Authorization"], "Bearer token")

    def test_rejected_credentials_are_shown_to_the_user(self):
        self.http.get(f"{META}/106540352242922", json={"error": {"message": "Invalid OAuth access token"}}, status=401)
        integration = self._create_integration("meta", external_id="106540352242922", api_key="bad")
        with self.assertRaisesRegex(UserError, "rejected the credentials.*Invalid OAuth access token"):
            integration.action_connect()

    def test_dialog360_connect_registers_the_webhook(self):
        self.http.post(f"{D360}/v1/configs/webhook", json={"url": "ok"})
        integration = self._create_integration("dialog360", external_id="123", api_key="d360-key")
        integration.action_connect()
        request = self.http.calls[0].request
        body = json.loads(request.body)
        self.assertEqual(body["url"], integration.webhook_url)
        self.assertEqual(body["headers"]["X-VM-Webhook-Secret"], integration._get_secret("webhook_secret"))
        self.assertEqual(request.headers["D360-API-KEY"], "d360-key")
        self.assertEqual(integration.state, "connected")

    def test_disconnect_and_test_connection(self):
        integration = self._create_integration("evolution", api_base_url=EVO, external_id="shop", api_key="k")
        session = self.env["vm.whatsapp.session"].create({"integration_id": integration.id, "external_id": "shop"})
        session._apply_connection_update("connected", phone="+5511987654321")
        self.http.get(f"{EVO}/instance/connectionState/shop", json={"message": "boom"}, status=500)
        result = integration.action_test_connection()
        self.assertEqual(result["params"]["type"], "danger")
        self.assertIn("HTTP 500", result["params"]["message"])
        self.http.delete(f"{EVO}/instance/logout/shop", json={"status": "SUCCESS"})
        with captured_logs() as logs:
            integration.action_disconnect()
        self.assertEqual((session.state, integration.state), ("closed", "disconnected"))
        self.assertTrue(any("WhatsApp disconnected" in line and "+55119****4321" in line for line in logs))
        self.assertEqual(self.http.calls[-1].request.method, "DELETE")

    def test_send_test_message_posts_a_signed_webhook(self):
        integration = self._create_integration("sandbox")
        session = self.env["vm.whatsapp.session"].create({"integration_id": integration.id, "external_id": "sbx"})
        session._apply_connection_update("connected", phone="+5511999990000")

        class Answer:
            ok, status_code, text = True, 200, '{"status": "ok"}'

        with patch("requests.post", return_value=Answer()) as post:
            result = integration.action_send_test_message()
        url = post.call_args.args[0]
        body, headers = post.call_args.kwargs["data"], post.call_args.kwargs["headers"]
        self.assertEqual(url, integration.webhook_url)
        self.assertTrue(post.call_args.kwargs["timeout"])
        self.assertEqual(integration._get_provider().verify_webhook(body, headers), "valid")
        payload = json.loads(body)
        self.assertEqual((payload["event"], payload["session"]), ("message", "sbx"))
        self.assertIn("HTTP 200", result["params"]["message"])
        evolution = self._create_integration("evolution", api_base_url=EVO)
        with self.assertRaises(UserError):
            evolution.action_send_test_message()

    def test_only_managers_connect(self):
        integration = self._create_integration("sandbox")
        user = self._create_user("wa_reader", self.company_a, "visionmetrics_whatsapp.group_whatsapp_user")
        with self.assertRaises(AccessError):
            integration.with_user(user).action_connect()
        manager = self._create_user("wa_manager", self.company_a, "visionmetrics_whatsapp.group_whatsapp_manager")
        action = integration.with_user(manager).action_connect()
        self.assertEqual(self.env["vm.whatsapp.connect.wizard"].browse(action["res_id"]).session_id.state, "qr_ready")


@tagged("post_install", "-at_install")
class TestSandboxScanRoute(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from odoo.tools import config

        cls.startClassPatcher(patch.dict(config.options, {"integrations_key": TEST_KEY}))

    def _connect(self, provider="sandbox", **vals):
        integration = self.env["vm.whatsapp.integration"].create({"provider": provider, **vals})
        if provider != "sandbox":
            info = SandboxProvider(base_url="x").create_session()  # a session row with a sandbox-like id
            return self.env["vm.whatsapp.session"].create(
                {"integration_id": integration.id, "external_id": info.external_id, "state": "qr_ready"}
            )
        return self.env["vm.whatsapp.connect.wizard"].browse(integration.action_connect()["res_id"]).session_id

    def test_scan_connects_a_sandbox_session(self):
        session = self._connect()
        response = self.url_open(f"/vm_whatsapp/sandbox/{session.external_id}/scan")
        self.assertEqual(response.status_code, 200)
        self.assertIn("WhatsApp connected", response.text)
        self.assertEqual(session.state, "connected")
        self.assertEqual(session.integration_id.state, "connected")
        self.assertTrue(session.integration_id.phone_number.startswith("+55119999"))

    def test_scan_refuses_unknown_expired_and_non_sandbox_sessions(self):
        self.assertEqual(self.url_open("/vm_whatsapp/sandbox/not-a-session/scan").status_code, 404)
        other = self._connect("evolution", api_base_url=EVO)
        self.assertEqual(self.url_open(f"/vm_whatsapp/sandbox/{other.external_id}/scan").status_code, 404)
        self.assertEqual(other.state, "qr_ready")
        expired = self._connect()
        expired.write({"qr_expires_at": fields.Datetime.now() - timedelta(seconds=1)})
        response = self.url_open(f"/vm_whatsapp/sandbox/{expired.external_id}/scan")
        self.assertEqual(response.status_code, 410)
        self.assertEqual(expired.state, "expired")
