"""Attacks on a running server's webhook route (issue 11), replayed as tests: what a request
may make us store, replays of signed requests, and floods of unauthenticated ones."""

import json
import select
import socket
import time
from unittest.mock import patch

from odoo.tests import tagged
from odoo.tools import mute_logger

from . import payloads
from .common import WhatsAppHttpCase

CONTROLLER_LOGGER = "odoo.addons.visionmetrics_whatsapp.controllers.webhook"
INBOX_LOGGER = "odoo.addons.visionmetrics_whatsapp.models.vm_whatsapp_inbox"
INSTANCE_TOKEN = "B6D711FCDE4D4FD5936544120E713976"  # an Evolution instance token (its ``hash``)
DAY_MS = 86_400_000


def now_ms():
    return int(time.time() * 1000)


@tagged("post_install", "-at_install")
class TestWebhookAttacks(WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Log = cls.env["vm.whatsapp.webhook.log"]
        cls.evolution = cls._create_integration(
            "evolution", api_base_url="https://evo.example.com", external_id="loja-attack", api_key="global-key"
        )
        cls.waha = cls._create_integration("waha", api_base_url="https://waha.example.com", external_id="default")
        cls.sandbox = cls._create_integration("sandbox", external_id="sbx-attack")
        for integration in (cls.evolution, cls.waha):
            session = cls.env["vm.whatsapp.session"].create(
                {"integration_id": integration.id, "external_id": integration.external_id}
            )
            session._apply_connection_update("connected", phone="+5511900000000")

    def _logs(self):
        return self.Log.search([], order="id")

    # ------------------------------------------------------------------ what is stored

    def test_credentials_of_a_request_are_not_stored(self):
        """Evolution puts its instance token in every body; senders and proxies add headers of
        their own. Nothing credential-like reaches the log, and the inbox (and Reprocess) still
        parse the stored body."""
        body = payloads.evolution_text(
            "loja-attack", "5511987650000@s.whatsapp.net", "Tem horário?", "3EB0-CRED", apikey=INSTANCE_TOKEN
        )
        secret = self.evolution._get_secret("webhook_secret")
        headers = {
            **payloads.sign("evolution", secret, body),
            "Apikey": INSTANCE_TOKEN,
            "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.jwt-credential",
            "X-Custom-Token": "custom-token-credential",
            "X-Evolution-Session": "session-credential",
            "Cookie": "session_id=cookie-credential",
            "X-Forwarded-For": "203.0.113.7",
            "User-Agent": "axios/1.7.7",
        }
        Conversation = type(self.env["vm.whatsapp.conversation"])
        with (
            patch.object(Conversation, "_attribute_all", side_effect=ValueError("boom")),
            mute_logger(INBOX_LOGGER),
        ):
            self.assertEqual(self._post(self.evolution, body, headers).status_code, 200)
        log = self._last_log()
        dump = json.dumps(self._raw_row(log), default=str)
        for credential in (
            secret,
            INSTANCE_TOKEN,
            "jwt-credential",
            "custom-token-credential",
            "session-credential",
            "cookie-credential",
        ):
            self.assertNotIn(credential, dump)
        kept = json.loads(log.headers)
        self.assertEqual(
            (kept["X-Forwarded-For"], kept["User-Agent"], kept["Content-Type"]),
            ("203.0.113.7", "axios/1.7.7", "application/json"),
        )
        for name in ("X-Vm-Webhook-Secret", "Apikey", "Authorization", "X-Custom-Token", "Cookie"):
            self.assertEqual(kept[name], "[redacted]", name)
        stored = json.loads(log.payload)
        self.assertEqual(stored["apikey"], "[redacted]")
        self.assertEqual(stored["data"]["message"]["conversation"], "Tem horário?", "the rest as received")
        # Reprocess works from the stored body: no signature is checked again.
        self.assertEqual(log.state, "failed")
        log.action_reprocess()
        self.assertEqual(log.state, "processed")
        self.assertEqual(log.message_ids.body, "Tem horário?")

    def test_a_body_that_is_not_json_keeps_no_credential(self):
        body = b'{"event": "messages.upsert", "apikey": "' + INSTANCE_TOKEN.encode() + b'", "data": {'
        with mute_logger(CONTROLLER_LOGGER):
            self.assertEqual(self._post_signed(self.evolution, body).status_code, 400)
        log = self._last_log()
        self.assertEqual(log.state, "rejected")
        self.assertNotIn(INSTANCE_TOKEN, log.payload)
        self.assertIn('"apikey": "[redacted]"', log.payload)

    # ------------------------------------------------------------------ replays

    def test_an_old_signed_waha_request_is_refused_whatever_its_timestamp_header(self):
        """A captured session.status STOPPED, two days old, replayed without X-Webhook-Timestamp
        (which WAHA does not sign) or with a fresh one: its signed body says when it was sent."""
        body = payloads.waha_session_status("default", "STOPPED", "evt_01jz0replay0000000000000", now_ms() - 2 * DAY_MS)
        signed = payloads.sign("waha", self.waha._get_secret("webhook_secret"), body)
        with mute_logger(CONTROLLER_LOGGER):
            self.assertEqual(self._post(self.waha, body, signed).status_code, 401)
            log = self._last_log()
            rewritten = {**signed, "X-Webhook-Timestamp": str(now_ms())}
            self.assertEqual(self._post(self.waha, body, rewritten).status_code, 401)
        self.assertEqual((log.state, log.integration_id), ("rejected", self.waha))
        self.assertIn("replay", log.error.lower())
        self.assertIn("old", log.error.lower())
        self.assertEqual(self.waha.state, "connected")
        # From the future, or undated: refused as well.
        for stamp in (now_ms() + DAY_MS, None):
            payload = json.loads(payloads.waha_session_status("default", "STOPPED", "evt_01jz0future00000000000", 0))
            payload["timestamp"] = stamp
            late = payloads.dump(payload)
            with mute_logger(CONTROLLER_LOGGER):
                response = self._post(
                    self.waha, late, payloads.sign("waha", self.waha._get_secret("webhook_secret"), late)
                )
            self.assertEqual(response.status_code, 401, stamp)
        self.assertEqual(self.waha.state, "connected")
        # Sent now (and a little skew either way): applied.
        fresh = payloads.waha_session_status("default", "STOPPED", "evt_01jz0fresh000000000000", now_ms() + 3000)
        self.assertEqual(self._post_signed(self.waha, fresh).status_code, 200)
        self.assertEqual(self.waha.state, "disconnected")

    def test_a_waha_event_replayed_verbatim_is_applied_once(self):
        stopped = payloads.waha_session_status("default", "STOPPED", "evt_01jz0stopped00000000000", now_ms())
        working = payloads.waha_session_status("default", "WORKING", "evt_01jz0working00000000000", now_ms())
        self.assertEqual(self._post_signed(self.waha, stopped).status_code, 200)
        self.assertEqual(self.waha.state, "disconnected")
        self.assertEqual(self._post_signed(self.waha, working).status_code, 200)
        self.assertEqual(self.waha.state, "connected")
        logs = self._logs()
        replay = self._post_signed(self.waha, stopped)
        self.assertEqual((replay.status_code, replay.json()), (200, {"status": "ok", "duplicate": True}))
        self.assertEqual(self.waha.state, "connected", "the replay changed nothing")
        self.assertEqual(self._logs(), logs, "and was not stored again")
        self.assertEqual(logs[-2].event_id, "evt_01jz0stopped00000000000")

    def test_an_evolution_connection_update_replayed_verbatim_is_applied_once(self):
        closed = payloads.evolution_connection("loja-attack", "close", "2026-12-01T10:00:00.123Z", status_reason=401)
        opened = payloads.evolution_connection("loja-attack", "open", "2026-12-01T10:05:00.456Z")
        self._post_signed(self.evolution, closed)
        self.assertEqual(self.evolution.state, "disconnected")
        self._post_signed(self.evolution, opened)
        self.assertEqual(self.evolution.state, "connected")
        logs = self._logs()
        replay = self._post_signed(self.evolution, closed)
        self.assertEqual((replay.status_code, replay.json()), (200, {"status": "ok", "duplicate": True}))
        self.assertEqual(self.evolution.state, "connected")
        self.assertEqual(self._logs(), logs)
        # A new close (another time) is a new event.
        self._post_signed(
            self.evolution,
            payloads.evolution_connection("loja-attack", "close", "2026-12-01T10:09:00.789Z", status_reason=401),
        )
        self.assertEqual(self.evolution.state, "disconnected")

    def test_a_meta_status_replayed_is_not_stored_again(self):
        meta = self._create_integration("meta", external_id="106540352242922", webhook_secret="meta-app-secret")
        self._post_signed(meta, payloads.meta_text("106540352242922", "5511987650001", "oi", "wamid.IN-REPLAY"))
        conversation = self.env["vm.whatsapp.message"].search([("external_id", "=", "wamid.IN-REPLAY")]).conversation_id
        outbound = self._create_message(conversation, "wamid.OUT-REPLAY", direction="outbound", status="sent")
        delivered = payloads.meta_status("106540352242922", "wamid.OUT-REPLAY", "delivered")
        self._post_signed(meta, delivered)
        self._post_signed(meta, payloads.meta_status("106540352242922", "wamid.OUT-REPLAY", "read"))
        logs = self._logs()
        self.assertEqual(self._post_signed(meta, delivered).json(), {"status": "ok", "duplicate": True})
        self.assertEqual(self._logs(), logs)
        self.assertEqual(outbound.status, "read")
        # Messages as well: a redelivered message is answered at once, stored once.
        again = self._post_signed(meta, payloads.meta_text("106540352242922", "5511987650001", "oi", "wamid.IN-REPLAY"))
        self.assertEqual(again.json(), {"status": "ok", "duplicate": True})
        self.assertEqual(self._logs(), logs)

    # ------------------------------------------------------------------ unauthenticated requests

    def test_unauthenticated_requests_are_metadata_counted_per_address_and_minute(self):
        """Requests nobody authenticated: 40 posts of 100 kB to an unknown token make one row of
        metadata and at most 2 kB of body; past the limit per minute they are answered 429."""
        self.env["ir.config_parameter"].set_param("visionmetrics_whatsapp.webhook_unauthenticated_per_minute", "30")
        body = b'{"event": "message", "filler": "' + b"a" * 100_000 + b'"}'
        before = self._logs()
        with mute_logger(CONTROLLER_LOGGER):
            answers = [
                self._post(self.sandbox, body, token="unknownTOKEN0123456789", process=False) for _i in range(40)
            ]
        self.assertEqual([r.status_code for r in answers], [404] * 30 + [429] * 10)
        self.assertTrue(answers[-1].headers.get("Retry-After"))
        log = self._logs() - before
        self.assertEqual(len(log), 1, "one row per address and minute")
        no_integration = self.env["vm.whatsapp.integration"]
        self.assertEqual((log.state, log.integration_id, log.remote_addr), ("rejected", no_integration, "127.0.0.1"))
        self.assertEqual((log.repeat_count, log.payload_size, log.payload_truncated), (39, len(body), True))
        self.assertLessEqual(len(log.payload.encode()), 2048)
        self.assertTrue(body.decode().startswith(log.payload))
        self.assertLess(len(log.payload) + len(log.headers), 4096)

    def test_a_bad_signature_is_metadata_counted_with_the_others(self):
        body = self._sandbox_message(self.sandbox, "5511944443333", "x" * 50_000, message_id="sbx-forged")
        before = self._logs()
        with mute_logger(CONTROLLER_LOGGER):
            forged = self._post(self.sandbox, body, {"X-VM-Signature": "sha256=" + "0" * 64})
            unknown = self._post(self.sandbox, body, token="unknownTOKEN0123456789")
            mismatch = self._post(self.sandbox, body, provider="meta")
        self.assertEqual([forged.status_code, unknown.status_code, mismatch.status_code], [401, 404, 404])
        log = self._logs() - before
        self.assertEqual(len(log), 1)
        self.assertEqual((log.integration_id, log.signature, log.state), (self.sandbox, "invalid", "rejected"))
        self.assertEqual((log.repeat_count, log.payload_size, log.payload_truncated), (2, len(body), True))
        self.assertLessEqual(len(log.payload.encode()), 2048)
        self.assertFalse(self.env["vm.whatsapp.message"].search([("external_id", "=", "sbx-forged")]))

    def test_an_authenticated_request_is_never_rate_limited(self):
        self.env["ir.config_parameter"].set_param("visionmetrics_whatsapp.webhook_unauthenticated_per_minute", "1")
        with mute_logger(CONTROLLER_LOGGER):
            for _i in range(3):
                self._post(self.sandbox, b"{}", token="unknownTOKEN0123456789")
        body = self._sandbox_message(self.sandbox, "5511944440000", "oi", message_id="sbx-after-flood")
        self.assertEqual(self._post_signed(self.sandbox, body).status_code, 200)
        self.assertEqual(self._last_log().state, "processed")

    # ------------------------------------------------------------------ body size

    def _post_chunked(self, path, content_type, total, chunk_size=64 * 1024):
        """POST ``total`` bytes with Transfer-Encoding: chunked and stop sending as soon as an
        answer arrives. Returns (status line, bytes sent)."""
        sock = socket.create_connection(("127.0.0.1", self.http_port()), timeout=10)
        try:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"%x\r\n%s\r\n" % (chunk_size, b"a" * chunk_size)
            sent = 0
            while sent < total and not select.select([sock], [], [], 0)[0]:
                try:
                    sock.sendall(chunk)
                except OSError:  # the server answered and closed the connection
                    break
                sent += chunk_size
            if sent >= total:
                sock.sendall(b"0\r\n\r\n")
            answer = b""
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
            return answer.split(b"\r\n")[0].decode(), sent
        finally:
            sock.close()

    def _post_framed(self, body, framed):
        """POST ``framed`` (``body`` in chunked framing, well-formed or not) as a signed sandbox
        webhook with Transfer-Encoding: chunked; (status line, whole answer)."""
        headers = payloads.sign("sandbox", self.sandbox._get_secret("webhook_secret"), body)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        path = f"/vm_whatsapp/webhook/sandbox/{self.sandbox.webhook_token}"
        sock = socket.create_connection(("127.0.0.1", self.http_port()), timeout=10)
        try:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{head}"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
                + framed
            )
            answer = b""
            while data := sock.recv(4096):
                answer += data
        finally:
            sock.close()
        return answer.split(b"\r\n")[0].decode(), answer

    def test_a_chunked_body_within_the_limit_is_read_whole(self):
        """A provider may send its body chunked (no Content-Length): read chunk by chunk, in
        pieces smaller than a read, up to the limit's last byte."""
        text = "chunked " + "é" * 2000
        body = self._sandbox_message(self.sandbox, "5511944441111", text, message_id="sbx-chunked")
        self.env["ir.config_parameter"].set_param("visionmetrics_whatsapp.webhook_max_bytes", str(len(body)))
        chunks = [body[start : start + 97] for start in range(0, len(body), 97)]
        framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
        status, _answer = self._post_framed(body, framed)
        self.assertIn(" 200 ", status)
        self._process_inbox()
        log = self._last_log()
        self.assertEqual((log.state, log.payload_size), ("processed", len(body)))
        message = self.env["vm.whatsapp.message"].search([("external_id", "=", "sbx-chunked")])
        self.assertEqual(message.body, text)

    def test_a_chunked_body_whose_framing_is_malformed_is_refused_400(self):
        body = self._sandbox_message(self.sandbox, "5511944442222", "oi", message_id="sbx-bad-chunk")
        framings = {
            "size not hexadecimal": b"zz\r\n" + body + b"\r\n0\r\n\r\n",
            "negative size": b"-5\r\n" + body + b"\r\n0\r\n\r\n",
            "chunk extension": b"%x;ext=1\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        }
        for name, framing in framings.items():
            with self.subTest(name), mute_logger(CONTROLLER_LOGGER):
                status, answer = self._post_framed(body, framing)
                self.assertIn(" 400 ", status)
                self.assertNotIn(b"Traceback", answer)
                log = self._last_log()
                self.assertEqual((log.state, log.signature), ("rejected", False))
                self.assertIn("could not be read", log.error)
        self.assertFalse(self.env["vm.whatsapp.message"].search([("external_id", "=", "sbx-bad-chunk")]))

    def test_a_chunked_body_over_the_limit_is_refused_without_reading_it(self):
        self.env["ir.config_parameter"].set_param("visionmetrics_whatsapp.webhook_max_bytes", "65536")
        total = 32 * 1024 * 1024
        path = f"/vm_whatsapp/webhook/sandbox/{self.sandbox.webhook_token}"
        for content_type in ("application/json", "application/x-www-form-urlencoded"):
            with self.subTest(content_type), mute_logger(CONTROLLER_LOGGER):
                status, sent = self._post_chunked(path, content_type, total)
                self.assertIn(" 413 ", status)
                self.assertLess(sent, total, "answered before the client had sent its body")
                log = self._last_log()
                self.assertEqual((log.state, log.payload, log.payload_truncated), ("rejected", "", True))
