from unittest.mock import patch

import requests

from odoo.tests import tagged
from odoo.tools import mute_logger

from . import payloads
from .common import WhatsAppHttpCase

CONTROLLER_LOGGER = "odoo.addons.visionmetrics_whatsapp.controllers.webhook"
PHONE_ID = "106540352242922"


class FakeResponse:
    """What requests returns, for the provider HTTP mocked at the transport boundary."""

    def __init__(self, status_code=200, json_data=None, content=b"", headers=None):
        self.status_code = status_code
        self._json = json_data
        self.content = content if json_data is None else b"{}"
        self.headers = headers or {}
        self.text = ""
        self.reason = "OK"

    def json(self):
        if self._json is None:
            raise ValueError("not json")
        return self._json


@tagged("post_install", "-at_install")
class TestWebhookProviders(WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.meta = cls._create_integration(
            "meta", external_id=PHONE_ID, api_key="EAAG-token", webhook_secret="meta-app-secret"
        )

    def test_meta_handshake(self):
        url = f"/vm_whatsapp/webhook/meta/{self.meta.webhook_token}"
        ok = self.url_open(
            f"{url}?hub.mode=subscribe&hub.verify_token={self.meta.webhook_token}&hub.challenge=1158201444"
        )
        self.assertEqual((ok.status_code, ok.text), (200, "1158201444"))
        with mute_logger(CONTROLLER_LOGGER):
            wrong = self.url_open(f"{url}?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1")
        self.assertEqual(wrong.status_code, 403)

    def test_a_request_with_no_event_is_ignored_with_its_reason(self):
        body = payloads.dump({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": []}]})
        self.assertEqual(self._post_signed(self.meta, body).status_code, 200)
        log = self._last_log()
        self.assertEqual((log.state, log.event_type, log.error), ("ignored", "empty", "The request holds no event."))

    def test_meta_text_message_signed_with_the_app_secret(self):
        body = payloads.meta_text(PHONE_ID, "5511987650000", "Oi, quero saber o preço", "wamid.META1", name="Sheena")
        response = self._post_signed(self.meta, body)
        self.assertEqual(response.status_code, 200)
        message = self.env["vm.whatsapp.message"].search([("external_id", "=", "wamid.META1")])
        self.assertEqual(message.body, "Oi, quero saber o preço")
        self.assertEqual(message.conversation_id.contact_phone, "+5511987650000")
        self.assertEqual(message.conversation_id.contact_name, "Sheena")
        self.assertEqual(str(message.sent_at), "2025-06-08 20:59:43")

    def test_meta_payload_of_another_phone_number_is_ignored(self):
        body = payloads.meta_text("999999999", "5511987650000", "oi", "wamid.OTHER")
        self.assertEqual(self._post_signed(self.meta, body).status_code, 200)
        self.assertEqual(self._last_log().state, "ignored")
        self.assertFalse(self.env["vm.whatsapp.message"].search([("external_id", "=", "wamid.OTHER")]))

    def test_meta_status_out_of_order(self):
        body = payloads.meta_text(PHONE_ID, "5511987650001", "oi", "wamid.IN")
        self._post_signed(self.meta, body)
        conversation = self.env["vm.whatsapp.message"].search([("external_id", "=", "wamid.IN")]).conversation_id
        outbound = self._create_message(conversation, "wamid.OUT", direction="outbound", status="sent")
        for status in ("read", "sent", "delivered"):
            self._post_signed(self.meta, payloads.meta_status(PHONE_ID, "wamid.OUT", status))
        self.assertEqual(outbound.status, "read")

    def test_meta_image_is_stored_then_downloaded_by_the_cron(self):
        body = payloads.meta_image(PHONE_ID, "5511987650002", "wamid.IMG", caption="Foto do produto")
        self.assertEqual(self._post_signed(self.meta, body).status_code, 200)
        message = self.env["vm.whatsapp.message"].search([("external_id", "=", "wamid.IMG")])
        self.assertEqual(
            (message.message_type, message.body, message.media_state), ("image", "Foto do produto", "pending")
        )
        self.assertFalse(message.attachment_id, "media is never downloaded inside the webhook request")
        calls = []

        def fake_request(session, method, url, **kwargs):
            calls.append((method, url, kwargs["headers"].get("Authorization"), kwargs["timeout"]))
            if url.endswith("/1479537139650973"):
                return FakeResponse(
                    json_data={"url": "https://lookaside.fbsbx.com/whatsapp/media?id=1", "mime_type": "image/jpeg"}
                )
            return FakeResponse(content=b"\xff\xd8JPEGDATA", headers={"Content-Type": "image/jpeg"})

        with patch.object(requests.Session, "request", fake_request), patch.object(self.env.cr, "commit"):
            self.env["vm.whatsapp.message"]._cron_download_media()
        self.assertEqual(message.media_state, "done")
        self.assertEqual(message.attachment_id.raw, b"\xff\xd8JPEGDATA")
        self.assertEqual(message.attachment_id.mimetype, "image/jpeg")
        self.assertEqual(calls[0][2], "Bearer EAAG-token")
        self.assertTrue(all(call[3] for call in calls), "every provider call has a timeout")

    def test_media_download_failure_is_recorded(self):
        body = payloads.meta_image(PHONE_ID, "5511987650003", "wamid.IMG2")
        self._post_signed(self.meta, body)
        message = self.env["vm.whatsapp.message"].search([("external_id", "=", "wamid.IMG2")])
        with (
            patch.object(
                requests.Session, "request", return_value=FakeResponse(401, {"error": {"message": "bad token"}})
            ),
            patch.object(self.env.cr, "commit"),
            mute_logger("odoo.addons.visionmetrics_whatsapp.models.vm_whatsapp_message"),
        ):
            self.env["vm.whatsapp.message"]._cron_download_media()
        self.assertEqual(message.media_state, "failed")
        self.assertIn("bad token", message.media_error)

    def test_evolution_message_with_secret_header(self):
        evolution = self._create_integration("evolution", api_base_url="https://evo.example.com", external_id="loja-01")
        body = payloads.evolution_text("loja-01", "5511987654321@s.whatsapp.net", "Tem horário amanhã?", "3EB0A1")
        self.assertEqual(self._post_signed(evolution, body).status_code, 200)
        conversation = self.env["vm.whatsapp.conversation"].search([("integration_id", "=", evolution.id)])
        self.assertEqual(conversation.contact_phone, "+5511987654321")
        self.assertEqual(conversation.message_ids.body, "Tem horário amanhã?")
        with mute_logger(CONTROLLER_LOGGER):
            forged = self._post(evolution, body, {"X-VM-Webhook-Secret": "guess"})
        self.assertEqual(forged.status_code, 401)

    def test_waha_message_with_hmac(self):
        waha = self._create_integration("waha", api_base_url="https://waha.example.com", external_id="default")
        body = payloads.waha_text("default", "5521912345678@c.us", "Olá vm_token:none", "false_5521912345678@c.us_AAA")
        self.assertEqual(self._post_signed(waha, body).status_code, 200)
        message = self.env["vm.whatsapp.message"].search([("integration_id", "=", waha.id)])
        self.assertEqual(message.conversation_id.contact_phone, "+5521912345678")
        self.assertEqual(message.vm_token, "none")

    def test_dialog360_uses_the_cloud_api_shape(self):
        dialog = self._create_integration("dialog360", external_id="360-phone", api_key="d360-key")
        body = payloads.meta_text("360-phone", "5511987650009", "oi 360", "wamid.360")
        self.assertEqual(self._post_signed(dialog, body).status_code, 200)
        self.assertTrue(self.env["vm.whatsapp.message"].search([("external_id", "=", "wamid.360")]))


@tagged("post_install", "-at_install")
class TestConnectionWebhooks(WhatsAppHttpCase):
    """Connection and QR events delivered by webhook move the session and the integration."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.evolution = cls._create_integration(
            "evolution", api_base_url="https://evo.example.com", external_id="odoo-loja-01", api_key="global-key"
        )
        cls.session = cls.env["vm.whatsapp.session"].create(
            {"integration_id": cls.evolution.id, "external_id": "odoo-loja-01"}
        )

    def _evolution_event(self, event, data):
        return payloads.dump({"event": event, "instance": "odoo-loja-01", "data": data, "apikey": None})

    def test_qr_then_open_connects_the_session_and_the_integration(self):
        qr = self._evolution_event(
            "qrcode.updated",
            {
                "qrcode": {
                    "instance": "odoo-loja-01",
                    "pairingCode": "WZYEH1YY",
                    "code": "2@abc,def,ghi",
                    "base64": None,
                }
            },
        )
        self.assertEqual(self._post_signed(self.evolution, qr).status_code, 200)
        self.assertEqual(self._last_log().state, "processed")
        self.assertEqual(self.session.state, "qr_ready")
        self.assertEqual(self.session.pairing_code, "WZYEH1YY")
        self.assertTrue(self.session.qr_image, "the QR string is rendered as an image")
        opened = self._evolution_event(
            "connection.update",
            {"instance": "odoo-loja-01", "wuid": "5511900000000@s.whatsapp.net", "state": "open", "statusReason": 200},
        )
        self.assertEqual(self._post_signed(self.evolution, opened).status_code, 200)
        self.assertEqual(self.session.state, "connected")
        self.assertEqual((self.evolution.state, self.evolution.phone_number), ("connected", "+5511900000000"))

    def test_logged_out_disconnects(self):
        self.session._apply_connection_update("connected", phone="+5511900000000")
        closed = self._evolution_event(
            "connection.update", {"instance": "odoo-loja-01", "state": "close", "statusReason": 401}
        )
        self.assertEqual(self._post_signed(self.evolution, closed).status_code, 200)
        self.assertEqual(self.session.state, "closed")
        self.assertEqual(self.evolution.state, "disconnected")
        # Evolution keeps reconnecting after a logout (a real 2.3.6 server does): its late
        # connecting updates and QR codes do not reopen the ended attempt.
        connecting = self._evolution_event("connection.update", {"instance": "odoo-loja-01", "state": "connecting"})
        qr = self._evolution_event("qrcode.updated", {"qrcode": {"instance": "odoo-loja-01", "code": "2@late"}})
        for body in (connecting, qr):
            self.assertEqual(self._post_signed(self.evolution, body).status_code, 200)
            self.assertEqual(self._last_log().state, "ignored")
        self.assertEqual((self.session.state, self.evolution.state), ("closed", "disconnected"))

    def test_connection_event_of_another_instance_is_ignored(self):
        other = payloads.dump(
            {
                "event": "connection.update",
                "instance": "someone-else",
                "data": {"instance": "someone-else", "state": "open"},
            }
        )
        self.assertEqual(self._post_signed(self.evolution, other).status_code, 200)
        self.assertEqual(self._last_log().state, "ignored")
        self.assertEqual(self.session.state, "pending")
