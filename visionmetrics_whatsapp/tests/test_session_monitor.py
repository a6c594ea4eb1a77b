import base64
from datetime import timedelta

import requests

from odoo import fields
from odoo.tests import tagged

from ..models.vm_whatsapp_session import render_qr_png
from ..providers.events import SessionInfo
from .common import WhatsAppCase
from .test_connect_flow import MockedHttpMixin, captured_logs

EVO_A = "http://evolution-a.test"
WAHA_B = "http://waha-b.test"
EVO_C = "http://evolution-c.test"


@tagged("post_install", "-at_install")
class TestSessionMonitor(MockedHttpMixin, WhatsAppCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Session = cls.env["vm.whatsapp.session"]

    def _open_session(self, integration, external_id, state="qr_ready"):
        """A session waiting for a scan, with a QR valid for another minute."""
        session = self.Session.create({"integration_id": integration.id, "external_id": external_id})
        session.write({"state": state, "qr_expires_at": fields.Datetime.now() + timedelta(seconds=60)})
        integration.state = "connecting"
        return session

    def _calls_to(self, base):
        return [c for c in self.http.calls if c.request.url.startswith(base)]

    def _run_cron(self):
        self.env.ref("visionmetrics_whatsapp.ir_cron_monitor_sessions").method_direct_trigger()

    def test_a_qr_given_only_as_an_image_is_replaced_only_when_it_changes(self):
        integration = self._create_integration("evolution", api_base_url=EVO_A, external_id="a", api_key="k")
        session = self._open_session(integration, "a", state="pending")
        first, second = (
            SessionInfo(
                "a", "qr_ready", qr_image=f"data:image/png;base64,{base64.b64encode(render_qr_png(v)).decode()}"
            )
            for v in ("first", "second")
        )
        session._apply_session_info(first)
        shown_until = fields.Datetime.now() + timedelta(seconds=7)
        session.qr_expires_at = shown_until
        session._apply_session_info(first)
        self.assertEqual(session.qr_expires_at, shown_until, "the same QR polled again keeps its expiry")
        session._apply_session_info(second)
        self.assertNotEqual(session.qr_expires_at, shown_until)
        self.assertEqual(base64.b64decode(session.qr_image), render_qr_png("second"))

    def test_a_timeout_does_not_stop_the_others(self):
        evo_a = self._create_integration("evolution", api_base_url=EVO_A, external_id="a", api_key="k")
        waha_b = self._create_integration("waha", api_base_url=WAHA_B, external_id="b", api_key="k")
        sandbox = self._create_integration("sandbox")
        session_a = self._open_session(evo_a, "a")
        session_b = self._open_session(waha_b, "b")
        session_s = self._open_session(sandbox, "s")
        session_s.qr_expires_at = fields.Datetime.now() - timedelta(seconds=1)
        self.http.get(f"{EVO_A}/instance/connectionState/a", body=requests.Timeout("read timeout"))
        self.http.get(
            f"{WAHA_B}/api/sessions/b",
            json={"name": "b", "status": "WORKING", "me": {"id": "5511987654321@c.us", "pushName": "Loja"}},
        )
        with captured_logs() as logs:
            self._run_cron()
        self.assertEqual(session_b.state, "connected")
        self.assertEqual((waha_b.state, waha_b.phone_number), ("connected", "+5511987654321"))
        self.assertEqual(session_a.state, "qr_ready", "a timeout is not a verdict on the session")
        self.assertIn("did not answer", session_a.error_message)
        self.assertEqual(session_a.failure_count, 1)
        self.assertIn("did not answer", evo_a.last_error)
        self.assertEqual(len(self._calls_to(EVO_A)), 1, "the monitor does not retry within a run")
        self.assertEqual(session_s.state, "expired")
        self.assertTrue(any("WhatsApp connected" in line for line in logs))
        # the next run backs off the failing provider but still serves the others
        evo_c = self._create_integration("evolution", api_base_url=EVO_C, external_id="c", api_key="k")
        session_c = self._open_session(evo_c, "c")
        self.http.get(f"{EVO_C}/instance/connectionState/c", json={"instance": {"state": "open"}})
        self.http.get(f"{EVO_C}/instance/fetchInstances", json=[{"ownerJid": "5521998761234@s.whatsapp.net"}])
        self._run_cron()
        self.assertEqual(len(self._calls_to(EVO_A)), 1, "backing off: not asked again so soon")
        self.assertEqual(session_c.state, "connected")
        # once the backoff has passed it is checked again
        session_a.last_checked_at = fields.Datetime.now() - timedelta(minutes=3)
        self._run_cron()
        self.assertEqual(len(self._calls_to(EVO_A)), 2)
        self.assertEqual(session_a.failure_count, 2)

    def test_500_and_rejected_credentials(self):
        evo_a = self._create_integration("evolution", api_base_url=EVO_A, external_id="a", api_key="k")
        evo_c = self._create_integration("evolution", api_base_url=EVO_C, external_id="c", api_key="bad")
        session_a = self._open_session(evo_a, "a")
        session_c = self._open_session(evo_c, "c")
        self.http.get(f"{EVO_A}/instance/connectionState/a", json={"message": "Internal"}, status=500)
        self.http.get(f"{EVO_C}/instance/connectionState/c", json={"message": "Unauthorized"}, status=401)
        self._run_cron()
        self.assertEqual((session_a.state, session_a.failure_count), ("qr_ready", 1))
        self.assertIn("HTTP 500", session_a.error_message)
        self.assertEqual(session_c.state, "failed")
        self.assertEqual(evo_c.state, "error")
        self.assertIn("rejected the credentials", evo_c.last_error)

    def test_backoff_grows_and_is_capped(self):
        integration = self._create_integration("waha", api_base_url=WAHA_B, api_key="k")
        session = self._open_session(integration, "default")
        now = fields.Datetime.now()
        session.write({"failure_count": 3, "last_checked_at": now - timedelta(minutes=7)})
        self.assertFalse(session._is_due(now), "3 failures: wait 8 minutes")
        session.last_checked_at = now - timedelta(minutes=9)
        self.assertTrue(session._is_due(now))
        session.write({"failure_count": 10, "last_checked_at": now - timedelta(minutes=29)})
        self.assertFalse(session._is_due(now))
        session.last_checked_at = now - timedelta(minutes=31)
        self.assertTrue(session._is_due(now), "the backoff is capped at 30 minutes")

    def test_connected_health_is_checked_less_often(self):
        integration = self._create_integration("waha", api_base_url=WAHA_B, external_id="b", api_key="k")
        session = self.Session.create({"integration_id": integration.id, "external_id": "b"})
        session._apply_connection_update("connected", phone="+5511987654321")
        self.http.get(f"{WAHA_B}/api/sessions/b", json={"name": "b", "status": "STOPPED"})
        session.last_checked_at = fields.Datetime.now() - timedelta(minutes=5)
        self._run_cron()
        self.assertFalse(self.http.calls, "checked 5 minutes ago: not yet")
        session.last_checked_at = fields.Datetime.now() - timedelta(minutes=20)
        with captured_logs() as logs:
            self._run_cron()
        self.assertEqual(len(self.http.calls), 1)
        self.assertEqual((session.state, integration.state), ("closed", "disconnected"))
        self.assertTrue(any("WhatsApp disconnected" in line for line in logs))

    def test_stale_sessions_expire(self):
        integration = self._create_integration("waha", api_base_url=WAHA_B, external_id="b", api_key="k")
        session = self._open_session(integration, "b")
        session.write({"qr_code": "2@same", "qr_expires_at": fields.Datetime.now() - timedelta(seconds=5)})
        self.http.get(f"{WAHA_B}/api/sessions/b", json={"name": "b", "status": "SCAN_QR_CODE"})
        self.http.get(f"{WAHA_B}/api/b/auth/qr", json={"value": "2@same"})
        self._run_cron()
        self.assertEqual(session.state, "expired", "the provider still shows the expired QR")
        fresh = self._open_session(integration, "b2")
        self.http.get(f"{WAHA_B}/api/sessions/b2", json={"name": "b2", "status": "SCAN_QR_CODE"})
        self.http.get(f"{WAHA_B}/api/b2/auth/qr", json={"value": "2@new"})
        fresh.qr_expires_at = fields.Datetime.now() - timedelta(seconds=5)
        with captured_logs() as logs:
            self._run_cron()
        self.assertEqual(fresh.state, "qr_ready", "a new QR from the provider refreshes the session")
        self.assertEqual(base64.b64decode(fresh.qr_image), render_qr_png("2@new"))
        self.assertTrue(any("QR ready" in line or "QR refreshed" in line for line in logs))

    def test_connection_and_qr_updates_from_webhooks(self):
        integration = self._create_integration("evolution", api_base_url=EVO_A, external_id="a", api_key="k")
        session = self.Session.create({"integration_id": integration.id, "external_id": "a"})
        with captured_logs() as logs:
            session._apply_qr_update(qr_code="2@first")
            session._apply_qr_update(qr_code="2@second", pairing_code="ABCD1234")
        self.assertTrue(any("QR refreshed" in line for line in logs))
        self.assertEqual((session.state, session.pairing_code), ("qr_ready", "ABCD1234"))
        self.assertEqual(base64.b64decode(session.qr_image), render_qr_png("2@second"))
        self.assertEqual(integration.state, "connecting")
        session._apply_connection_update("connected", phone="5511987654321")
        connected_at = session.connected_at
        session._apply_connection_update("connected", phone="5511987654321")
        self.assertEqual(session.connected_at, connected_at)
        self.assertEqual((integration.state, integration.phone_number), ("connected", "+5511987654321"))
        session._apply_connection_update("closed", reason="logged out on the phone")
        self.assertEqual((session.state, integration.state), ("closed", "disconnected"))
        self.assertEqual(session.error_message, "logged out on the phone")
        self.assertTrue(session.closed_at)
