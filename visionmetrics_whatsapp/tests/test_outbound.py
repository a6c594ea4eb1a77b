"""Replying (DESIGN §10): the queue, its retries, the 24-hour window, messages sent from the
business's phone, rights and lead assignment. Provider HTTP is mocked at the transport."""

import json
import threading
import time
from datetime import timedelta
from unittest.mock import patch

import requests
import responses
from responses import matchers

from odoo import api, fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged
from odoo.tests.common import _super_send

from ..models.vm_whatsapp_outbox import RETRY_DELAYS, SEND_MAX_ATTEMPTS, SENDING_LEASE
from ..providers.sandbox import SandboxProvider
from . import payloads
from .common import WhatsAppCase, WhatsAppHttpCase

GRAPH = "https://graph.facebook.com/v21.0"
PHONE_ID = "1234567890"
WA_ID = "5511987654321"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
_ADAPTER_SEND = requests.adapters.HTTPAdapter.send


class OutboundFixtures:
    """Provider HTTP goes to ``responses`` (which replaces the transport while it is active);
    Odoo's test guard still refuses any other request that leaves the machine."""

    @classmethod
    def _request_handler(cls, s, r, **kw):
        if requests.adapters.HTTPAdapter.send is not _ADAPTER_SEND:  # a responses mock is active
            return _super_send(s, r, **kw)
        return super()._request_handler(s, r, **kw)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.meta = cls._create_integration(
            "meta", state="connected", external_id=PHONE_ID, api_key="EAAG-secret-token", webhook_secret="app-secret"
        )
        cls.conversation = cls._create_conversation(cls.meta, identity=WA_ID, contact_phone="+" + WA_ID)
        cls.inbound = cls._create_message(
            cls.conversation, "wamid.IN1", direction="inbound", sent_at=fields.Datetime.now() - timedelta(hours=1)
        )
        cls.salesman = cls._create_user("vm_out_sales_a", cls.company_a, "sales_team.group_sale_salesman")
        cls.salesman_b = cls._create_user("vm_out_sales_b", cls.company_b, "sales_team.group_sale_salesman")
        cls.employee = cls._create_user("vm_out_employee", cls.company_a, "base.group_user")

    def _send_cron(self):
        with patch.object(self.env.cr, "commit"):
            self.env["vm.whatsapp.outbox"]._cron_send()

    def _meta_ok(self, wamid="wamid.OUT1", mock=responses, **kwargs):
        return mock.post(
            f"{GRAPH}/{PHONE_ID}/messages",
            json={"messaging_product": "whatsapp", "contacts": [{"wa_id": WA_ID}], "messages": [{"id": wamid}]},
            **kwargs,
        )


@tagged("post_install", "-at_install")
class TestReply(OutboundFixtures, WhatsAppCase):
    def test_reply_is_stored_pending_at_once_and_the_queue_is_woken(self):
        cron = self.env.ref("visionmetrics_whatsapp.ir_cron_outbox_send")
        triggers = self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)])
        with responses.RequestsMock():  # any request would fail the test: nothing is sent now
            message_id = self.conversation.with_user(self.salesman).action_send_message("  Olá, tudo bem?  ")
        message = self.env["vm.whatsapp.message"].browse(message_id)
        self.assertRecordValues(
            message,
            [
                {
                    "direction": "outbound",
                    "status": "pending",
                    "send_state": "queued",
                    "body": "Olá, tudo bem?",
                    "message_type": "text",
                    "author_id": self.salesman.id,
                    "conversation_id": self.conversation.id,
                }
            ],
        )
        self.assertTrue(message.external_id.startswith("local:"))
        self.assertEqual(message.create_uid, self.salesman)
        self.assertGreater(self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)]), triggers)

    @responses.activate
    def test_queue_sends_the_cloud_api_request_and_stores_the_wamid(self):
        call = self._meta_ok(
            match=[
                matchers.header_matcher({"Authorization": "Bearer EAAG-secret-token"}),
                matchers.json_params_matcher(
                    {
                        "messaging_product": "whatsapp",
                        "recipient_type": "individual",
                        "to": WA_ID,
                        "type": "text",
                        "text": {"body": "Oi", "preview_url": False},
                    }
                ),
            ]
        )
        message = self.env["vm.whatsapp.message"].browse(self.conversation.action_send_message("Oi"))
        self._send_cron()
        self.assertEqual(call.call_count, 1)
        self.assertRecordValues(
            message, [{"status": "sent", "external_id": "wamid.OUT1", "send_state": False, "attempt_count": 1}]
        )
        self._send_cron()
        self.assertEqual(call.call_count, 1, "a sent message is never sent again")

    def test_nothing_to_send_is_refused(self):
        for body in ("", "   ", None, "\x00\x01"):
            with self.assertRaisesRegex(UserError, "Write a message or attach a file"):
                self.conversation.action_send_message(body)
        with self.assertRaisesRegex(UserError, "at most 4096"):
            self.conversation.action_send_message("x" * 4097)

    @responses.activate
    def test_disconnected_integration_is_refused_before_any_call(self):
        self.meta.write({"state": "disconnected"})
        self.assertFalse(self.conversation.can_send_free_text)
        self.assertIn("not connected", self.conversation.send_window_message)
        with self.assertRaisesRegex(UserError, "not connected"):
            self.conversation.action_send_message("Oi")
        self.assertFalse(responses.calls)

    @responses.activate
    def test_24_hour_window_of_the_cloud_api(self):
        self.assertTrue(self.conversation.can_send_free_text)
        self.assertFalse(self.conversation.send_window_message)
        self.inbound.sent_at = fields.Datetime.now() - timedelta(hours=24, minutes=1)
        self.conversation.invalidate_recordset(["can_send_free_text", "send_window_message"])
        self.assertFalse(self.conversation.can_send_free_text)
        self.assertIn("More than 24 hours", self.conversation.send_window_message)
        with self.assertRaisesRegex(UserError, "More than 24 hours"):
            self.conversation.with_user(self.salesman).action_send_message("Oi")
        # an outbound message does not open the window; only the contact's does
        self._create_message(self.conversation, "wamid.OUT-OLD", direction="outbound", status="read")
        self.conversation.invalidate_recordset(["can_send_free_text"])
        self.assertFalse(self.conversation.can_send_free_text)
        other = self._create_conversation(self.meta, identity="5511900000000")
        self.assertIn("has not written", other.send_window_message)
        self.assertFalse(responses.calls, "refused before any API call")

    def test_providers_without_a_window_reply_at_any_time(self):
        sandbox = self._create_integration("sandbox", state="connected")
        conversation = self._create_conversation(sandbox, identity="5511955554444")
        self.assertTrue(conversation.can_send_free_text, "no inbound message needed outside the Cloud API")

    @responses.activate
    def test_window_closed_while_queued_fails_without_a_call(self):
        message = self.env["vm.whatsapp.message"].browse(self.conversation.action_send_message("Oi"))
        self.inbound.sent_at = fields.Datetime.now() - timedelta(days=2)
        self._send_cron()
        self.assertEqual(message.status, "failed")
        self.assertIn("More than 24 hours", message.failure_reason)
        self.assertFalse(responses.calls)


@tagged("post_install", "-at_install")
class TestQueue(OutboundFixtures, WhatsAppCase):
    def _queue(self, text="Oi"):
        return self.env["vm.whatsapp.message"].browse(self.conversation.action_send_message(text))

    def _make_due(self, message):
        message.next_attempt_at = fields.Datetime.now() - timedelta(seconds=1)

    @responses.activate
    def test_transient_failures_are_retried_with_a_growing_delay_then_fail(self):
        call = responses.post(f"{GRAPH}/{PHONE_ID}/messages", status=503, json={"error": {"message": "Service down"}})
        message = self._queue()
        delays = []
        for attempt in range(1, SEND_MAX_ATTEMPTS):
            before = fields.Datetime.now()
            self._send_cron()
            self.assertEqual(call.call_count, attempt)
            self.assertRecordValues(message, [{"status": "pending", "send_state": "queued", "attempt_count": attempt}])
            self.assertIn("HTTP 503", message.failure_reason)
            delays.append(round((message.next_attempt_at - before).total_seconds()))
            self._send_cron()
            self.assertEqual(call.call_count, attempt, "not sent again before its time")
            self._make_due(message)
        self.assertEqual(delays, [d for d in RETRY_DELAYS][: SEND_MAX_ATTEMPTS - 1])
        self._send_cron()
        self.assertEqual(call.call_count, SEND_MAX_ATTEMPTS)
        self.assertRecordValues(message, [{"status": "failed", "send_state": False}])
        self.assertIn(f"gave up after {SEND_MAX_ATTEMPTS} attempts", message.failure_reason)

    @responses.activate
    def test_429_and_connection_refused_are_retried(self):
        responses.post(f"{GRAPH}/{PHONE_ID}/messages", status=429, json={"error": {"message": "(#130429) Rate limit"}})
        message = self._queue()
        self._send_cron()
        self.assertEqual((message.status, message.send_state), ("pending", "queued"))
        responses.replace(
            responses.POST, f"{GRAPH}/{PHONE_ID}/messages", body=requests.ConnectTimeout("connect timed out")
        )
        self._make_due(message)
        self._send_cron()
        self.assertEqual((message.status, message.send_state, message.attempt_count), ("pending", "queued", 2))

    @responses.activate
    def test_permanent_error_fails_with_the_providers_reason(self):
        responses.post(
            f"{GRAPH}/{PHONE_ID}/messages",
            status=400,
            json={
                "error": {
                    "message": "(#131030) Recipient phone number not in allowed list",
                    "type": "OAuthException",
                    "code": 131030,
                    "error_data": {"messaging_product": "whatsapp", "details": "Add the number to the list\x00."},
                }
            },
        )
        message = self._queue()
        self._send_cron()
        self.assertEqual(message.status, "failed")
        self.assertIn("(#131030) Recipient phone number not in allowed list", message.failure_reason)
        self.assertIn("Add the number to the list.", message.failure_reason, "details kept, control bytes dropped")
        self.assertNotIn("EAAG-secret-token", message.failure_reason)
        self.assertEqual(len(responses.calls), 1)

    @responses.activate
    def test_unknown_outcome_is_never_sent_again_by_itself(self):
        call = responses.post(f"{GRAPH}/{PHONE_ID}/messages", body=requests.ReadTimeout("read timed out"))
        message = self._queue()
        self._send_cron()
        self.assertEqual(message.status, "failed")
        self.assertIn("may or may not have reached", message.failure_reason)
        self._send_cron()
        self.assertEqual(call.call_count, 1)

    @responses.activate
    def test_message_left_sending_by_a_dead_worker_fails_without_a_call(self):
        message = self._queue()
        message.write(
            {
                "send_state": "sending",
                "sending_started_at": fields.Datetime.now() - SENDING_LEASE - timedelta(minutes=1),
            }
        )
        recent = self._queue("second")
        recent.write({"send_state": "sending", "sending_started_at": fields.Datetime.now()})
        self._send_cron()
        self.assertEqual(message.status, "failed")
        self.assertIn("interrupted", message.failure_reason)
        self.assertEqual(recent.send_state, "sending", "a send in progress is left to its worker")
        self.assertFalse(responses.calls)

    @responses.activate
    def test_retry_puts_a_failed_message_back_in_the_queue(self):
        responses.post(f"{GRAPH}/{PHONE_ID}/messages", status=400, json={"error": {"message": "bad"}})
        message = self._queue()
        self._send_cron()
        self.assertEqual(message.status, "failed")
        with self.assertRaises(AccessError):
            message.with_user(self.salesman_b).action_retry()
        with self.assertRaises(AccessError):
            message.with_user(self.employee).action_retry()
        message.with_user(self.salesman).action_retry()
        self.assertRecordValues(
            message, [{"status": "pending", "send_state": "queued", "attempt_count": 0, "failure_reason": False}]
        )
        responses.replace(
            responses.POST,
            f"{GRAPH}/{PHONE_ID}/messages",
            json={"messages": [{"id": "wamid.RETRIED"}]},
        )
        self._send_cron()
        self.assertRecordValues(message, [{"status": "sent", "external_id": "wamid.RETRIED"}])
        with self.assertRaisesRegex(UserError, "Only failed outbound messages"):
            message.action_retry()
        with self.assertRaisesRegex(UserError, "Only failed outbound messages"):
            self.inbound.action_retry()

    def test_echo_stored_first_is_merged_into_the_reply(self):
        """The provider's echo of our own send (Evolution send.message) stored by the inbox before
        the queue recorded the id: one message remains, ours, with the furthest status."""
        evolution = self._create_integration(
            "evolution", state="connected", api_base_url="http://evo.test", external_id="inst", api_key="k"
        )
        conversation = self._create_conversation(evolution, identity="5511987654321@s.whatsapp.net")
        message = self.env["vm.whatsapp.message"].browse(conversation.action_send_message("Oi"))
        echo = self._create_message(conversation, "3EB0ECHO", direction="outbound", status="delivered", body="Oi")
        with responses.RequestsMock() as mock:
            mock.post("http://evo.test/message/sendText/inst", json={"key": {"id": "3EB0ECHO"}, "status": "PENDING"})
            self._send_cron()
        self.assertFalse(echo.exists())
        self.assertRecordValues(message, [{"external_id": "3EB0ECHO", "status": "delivered", "send_state": False}])


@tagged("post_install", "-at_install")
class TestReplyFiles(OutboundFixtures, WhatsAppCase):
    def _attachment(self, name, mimetype, raw=PNG, user=None, **vals):
        Attachment = self.env["ir.attachment"].with_user(user or self.salesman)
        return Attachment.create({"name": name, "mimetype": mimetype, "raw": raw, **vals})

    @responses.activate
    def test_image_is_uploaded_then_sent_by_id_with_the_caption(self):
        image = self._attachment("photo.png", "image/png")
        message_id = self.conversation.with_user(self.salesman).action_send_message("Veja", [image.id])
        message = self.env["vm.whatsapp.message"].browse(message_id)
        self.assertRecordValues(message, [{"message_type": "image", "body": "Veja", "attachment_id": image.id}])
        self.assertEqual((image.res_model, image.res_id), ("vm.whatsapp.message", message.id))
        upload = responses.post(f"{GRAPH}/{PHONE_ID}/media", json={"id": "MEDIA-1"})
        send = self._meta_ok(
            match=[
                matchers.json_params_matcher(
                    {
                        "messaging_product": "whatsapp",
                        "recipient_type": "individual",
                        "to": WA_ID,
                        "type": "image",
                        "image": {"id": "MEDIA-1", "caption": "Veja"},
                    }
                )
            ]
        )
        self._send_cron()
        self.assertEqual((upload.call_count, send.call_count), (1, 1))
        form = responses.calls[0].request
        self.assertIn(b'name="messaging_product"', form.body)
        self.assertIn(PNG, form.body)
        self.assertIn("multipart/form-data", form.headers["Content-Type"])
        self.assertEqual(message.status, "sent")

    def test_audio_carries_no_caption_so_the_text_is_its_own_message(self):
        audio = self._attachment("voice.ogg", "audio/ogg")
        pdf = self._attachment("price.pdf", "application/pdf")
        first = self.conversation.action_send_message("Segue", [audio.id, pdf.id])
        messages = self.conversation.message_ids.filtered(lambda m: m.direction == "outbound").sorted("id")
        self.assertEqual(messages.mapped("message_type"), ["audio", "document"])
        self.assertEqual(messages.mapped("body"), [False, "Segue"], "the document takes the caption")
        self.assertEqual(first, messages[0].id)
        only_audio = self._attachment("voice2.ogg", "audio/ogg")
        self.conversation.action_send_message("Ouça", [only_audio.id])
        latest = self.conversation.message_ids.filtered(lambda m: m.direction == "outbound").sorted("id")[-2:]
        self.assertEqual(latest.mapped("message_type"), ["text", "audio"])
        self.assertEqual(latest.mapped("body"), ["Ouça", False])

    def _set_size(self, attachment, size):
        """Pretend a file has ``size`` bytes (ir.attachment computes the size from the content)."""
        self.env.flush_all()
        self.env.cr.execute("UPDATE ir_attachment SET file_size = %s WHERE id = %s", [size, attachment.id])
        attachment.invalidate_recordset(["file_size"])

    def test_big_picture_goes_as_a_document_and_huge_files_are_refused(self):
        big = self._attachment("big.png", "image/png")
        self._set_size(big, 6 * 1024 * 1024)
        message = self.env["vm.whatsapp.message"].browse(self.conversation.action_send_message("", [big.id]))
        self.assertEqual(message.message_type, "document")
        huge = self._attachment("huge.bin", "application/octet-stream")
        self._set_size(huge, 101 * 1024 * 1024)
        with self.assertRaisesRegex(UserError, "too large"):
            self.conversation.action_send_message("", [huge.id])

    def test_files_the_user_cannot_open_are_refused(self):
        lead_b = self.env["crm.lead"].create({"name": "B lead", "company_id": self.company_b.id})
        foreign = self.env["ir.attachment"].create(
            {"name": "b.pdf", "raw": b"%PDF", "res_model": "crm.lead", "res_id": lead_b.id}
        )
        with self.assertRaises(AccessError):
            self.conversation.with_user(self.salesman).action_send_message("x", [foreign.id])
        with self.assertRaisesRegex(UserError, "no longer exists"):
            self.conversation.with_user(self.salesman).action_send_message("x", [999999999])
        with self.assertRaisesRegex(UserError, "by their ids"):
            self.conversation.action_send_message("x", ["1"])

    def test_a_file_of_another_record_is_copied_not_moved(self):
        lead = self.env["crm.lead"].create({"name": "A lead"})
        brochure = self.env["ir.attachment"].create(
            {"name": "brochure.pdf", "raw": b"%PDF-1.4", "mimetype": "application/pdf", "res_model": "crm.lead",
             "res_id": lead.id}
        )  # fmt: skip
        message = self.env["vm.whatsapp.message"].browse(self.conversation.action_send_message("", [brochure.id]))
        self.assertEqual((brochure.res_model, brochure.res_id), ("crm.lead", lead.id))
        self.assertNotEqual(message.attachment_id, brochure)
        self.assertEqual(message.attachment_id.raw, b"%PDF-1.4")


@tagged("post_install", "-at_install")
class TestReplyRights(OutboundFixtures, WhatsAppCase):
    def test_salesperson_of_another_company_cannot_reply(self):
        with self.assertRaises(AccessError):
            self.conversation.with_user(self.salesman_b).action_send_message("Oi")
        integration_b = self._create_integration("sandbox", company=self.company_b, state="connected")
        conversation_b = self._create_conversation(integration_b, identity="5511944443333")
        with self.assertRaises(AccessError):
            conversation_b.with_user(self.salesman).action_send_message("Oi")
        conversation_b.with_user(self.salesman_b).action_send_message("Oi")  # their own company's

    def test_user_who_cannot_read_conversations_cannot_reply(self):
        with self.assertRaises(AccessError):
            self.conversation.with_user(self.employee).action_send_message("Oi")
        self.assertFalse(self.conversation.message_ids.filtered(lambda m: m.direction == "outbound"))

    def test_no_credential_reaches_the_browser(self):
        """Everything a salesperson's web client can read of the integration, the conversation
        and a message holds no credential, clear or encrypted."""
        message_id = self.conversation.action_send_message("Oi")
        secrets = ["EAAG-secret-token", "app-secret", self.meta.sudo().api_key_encrypted]
        for record in (self.meta, self.conversation, self.env["vm.whatsapp.message"].browse(message_id)):
            as_salesman = record.with_user(self.salesman)
            values = as_salesman.read(list(as_salesman.fields_get()))
            dumped = json.dumps(values, default=str)
            for secret in secrets:
                self.assertNotIn(secret, dumped, f"{record._name} leaks a credential")


@tagged("post_install", "-at_install")
class TestLeadAssignment(OutboundFixtures, WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.seller = cls._create_user("vm_out_seller", cls.company_a, "sales_team.group_sale_salesman")
        cls.team = cls.env["crm.team"].create({"name": "WhatsApp Team", "company_id": cls.company_a.id})
        cls.sandbox = cls._create_integration("sandbox", external_id="sbx-assign", state="connected")

    def _new_lead(self, sender):
        body = self._sandbox_message(self.sandbox, sender, "Oi, quero um orçamento")
        self.assertEqual(self._post_signed(self.sandbox, body).status_code, 200)
        conversation = self.env["vm.whatsapp.conversation"].search([("contact_identity", "=", sender)])
        self.assertEqual(conversation.attribution, "anonymous")
        return conversation.lead_id

    def test_new_leads_get_the_integrations_team_and_salesperson(self):
        self.sandbox.write({"team_id": self.team.id, "user_id": self.seller.id})
        lead = self._new_lead("5511911110001")
        self.assertEqual((lead.team_id, lead.user_id), (self.team, self.seller))

    def test_without_salesperson_the_teams_assignment_rules_assign(self):
        self.env["crm.team.member"].create(
            {"crm_team_id": self.team.id, "user_id": self.seller.id, "assignment_max": 30}
        )
        self.env["ir.config_parameter"].set_param("crm.lead.auto.assignment", True)
        cron = self.env.ref("crm.ir_cron_crm_lead_assign")
        cron.active = True
        self.sandbox.write({"team_id": self.team.id, "user_id": False})
        triggers = self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)])
        lead = self._new_lead("5511911110002")
        self.assertEqual((lead.team_id, lead.user_id), (self.team, self.env["res.users"]))
        self.assertGreater(self.env["ir.cron.trigger"].search_count([("cron_id", "=", cron.id)]), triggers)
        self.env["crm.team"]._cron_assign_leads()
        self.assertEqual(lead.user_id, self.seller, "Odoo's assignment gave the lead to the team member")

    def test_without_team_nor_salesperson_the_lead_is_unassigned(self):
        lead = self._new_lead("5511911110003")
        self.assertFalse(lead.user_id)
        self.assertFalse(lead.team_id)

    def test_merging_leads_keeps_their_conversations(self):
        lead = self._new_lead("5511911110004")
        other = self.env["crm.lead"].create({"name": "Same person", "phone": "+5511911110004"})
        merged = (lead | other)._merge_opportunity(max_length=0)
        conversation = self.env["vm.whatsapp.conversation"].search([("contact_identity", "=", "5511911110004")])
        self.assertEqual(conversation.lead_id, merged)


@tagged("post_install", "-at_install")
class TestFromMe(OutboundFixtures, WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.evolution = cls._create_integration(
            "evolution", external_id="vm-fromme", api_base_url="http://evo.test", state="connected"
        )

    def test_message_typed_on_the_phone_is_outbound_once(self):
        jid = "5511987650000@s.whatsapp.net"
        body = payloads.evolution_text("vm-fromme", jid, "Bom dia!", "3EB0PHONE1", from_me=True)
        for _repeat in range(2):
            self.assertEqual(self._post_signed(self.evolution, body).status_code, 200)
        messages = self.env["vm.whatsapp.message"].search([("external_id", "=", "3EB0PHONE1")])
        self.assertRecordValues(messages, [{"direction": "outbound", "status": "sent", "body": "Bom dia!"}])
        self.assertFalse(messages.conversation_id.contact_name, "our own name is not the contact's")

    def test_echo_of_our_own_send_is_not_a_second_message(self):
        conversation = self._create_conversation(self.evolution, identity="5511987650001@s.whatsapp.net")
        message = self.env["vm.whatsapp.message"].browse(conversation.action_send_message("Oi"))
        with responses.RequestsMock() as mock:
            mock.post("http://evo.test/message/sendText/vm-fromme", json={"key": {"id": "3EB0SENT1"}})
            with patch.object(self.env.cr, "commit"):
                self.env["vm.whatsapp.outbox"]._cron_send()
        echo = payloads.evolution_text(
            "vm-fromme", "5511987650001@s.whatsapp.net", "Oi", "3EB0SENT1", from_me=True
        ).replace(b'"messages.upsert"', b'"send.message"')
        self.assertEqual(self._post_signed(self.evolution, echo).status_code, 200)
        self.assertEqual(self._last_log().state, "duplicate")
        self.assertEqual(conversation.message_ids.filtered(lambda m: m.direction == "outbound"), message)


@tagged("post_install", "-at_install")
class TestStatusesOfAReply(OutboundFixtures, WhatsAppHttpCase):
    def test_meta_reply_reaches_read_from_status_webhooks(self):
        with responses.RequestsMock() as mock:
            self._meta_ok(wamid="wamid.HBgNTEST", mock=mock)
            message = self.env["vm.whatsapp.message"].browse(self.conversation.action_send_message("Oi"))
            self._send_cron()
            self.assertEqual(mock.calls[0].request.url, f"{GRAPH}/{PHONE_ID}/messages")
        for status in ("delivered", "sent", "read"):  # out of order: read still wins
            body = payloads.meta_status(PHONE_ID, "wamid.HBgNTEST", status, recipient=WA_ID)
            self.assertEqual(self._post_signed(self.meta, body).status_code, 200)
        self.assertEqual(message.status, "read")
        failed = payloads.meta_status(PHONE_ID, "wamid.HBgNTEST", "failed", recipient=WA_ID)
        self._post_signed(self.meta, failed)
        self.assertEqual(message.status, "read", "read is final")


@tagged("post_install", "-at_install")
class TestConcurrentClaimers(WhatsAppCase):
    """Two cron workers (or two servers) running the outbox at once, on committed data, in real
    transactions: every message is sent exactly once."""

    COUNT = 12

    def setUp(self):
        super().setUp()
        with self.registry.cursor() as cr:
            env = api.Environment(cr, self.env.uid, {})
            integration = env["vm.whatsapp.integration"].create(
                {"name": "concurrency", "provider": "sandbox", "state": "connected", "company_id": self.company_a.id}
            )
            conversation = env["vm.whatsapp.conversation"].create(
                {"integration_id": integration.id, "contact_identity": "5511933332222"}
            )
            for i in range(self.COUNT):
                conversation.action_send_message(f"message {i}")
            self.integration_id = integration.id

        def cleanup():
            with self.registry.cursor() as cr:
                api.Environment(cr, self.env.uid, {})["vm.whatsapp.integration"].browse(self.integration_id).unlink()

        self.addCleanup(cleanup)

    def test_two_workers_never_send_a_message_twice(self):
        sent, lock = [], threading.Lock()

        def send_text(adapter, to, text):
            time.sleep(0.05)  # the request takes a while: the other worker runs meanwhile
            with lock:
                sent.append(text)
            return SandboxProvider.new_message_id()

        errors = []

        def worker():
            try:
                with self.registry.cursor() as cr:
                    # the registry's lock is the test runner's: give the transaction its registry
                    cr.transaction = api.Transaction(self.registry)
                    api.Environment(cr, self.env.uid, {})["vm.whatsapp.outbox"]._cron_send()
            except Exception as e:  # reported by the assertion below
                errors.append(e)

        with (
            patch.object(SandboxProvider, "send_text", send_text),
            patch.object(SandboxProvider, "status_webhooks", lambda *args, **kwargs: []),
        ):
            threads = [threading.Thread(target=worker) for _i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        self.assertFalse([thread for thread in threads if thread.is_alive()], "the workers finished")
        self.assertFalse(errors)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, self.env.uid, {})
            states = env["vm.whatsapp.message"].search([("integration_id", "=", self.integration_id)])
            states = states.read(["status", "send_state", "failure_reason"])
        self.assertEqual(sorted(sent), sorted(f"message {i}" for i in range(self.COUNT)), states)
        self.assertEqual(sorted(sent), sorted(f"message {i}" for i in range(self.COUNT)))
        with self.registry.cursor() as cr:
            env = api.Environment(cr, self.env.uid, {})
            messages = env["vm.whatsapp.message"].search([("integration_id", "=", self.integration_id)])
            self.assertEqual(set(messages.mapped("status")), {"sent"})
            self.assertEqual(len(set(messages.mapped("external_id"))), self.COUNT)
