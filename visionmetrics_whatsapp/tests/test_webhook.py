import json
from datetime import timedelta
from unittest.mock import patch

from odoo import fields
from odoo.tests import tagged
from odoo.tools import config, mute_logger

from ..models.vm_whatsapp_inbox import LANE_CRON
from . import payloads
from .common import WhatsAppHttpCase

CONTROLLER_LOGGER = "odoo.addons.visionmetrics_whatsapp.controllers.webhook"
INBOX_LOGGER = "odoo.addons.visionmetrics_whatsapp.models.vm_whatsapp_inbox"


@tagged("post_install", "-at_install")
class TestWebhookIngest(WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company_a.country_id = cls.env.ref("base.br")
        cls.sandbox = cls._create_integration("sandbox", external_id="sbx-session-a")
        cls.lead_token = cls.env["crm.lead"].create(
            {"name": "Ad click", "first_touch_token": "gads-7f3a9c", "company_id": cls.company_a.id}
        )

    def _message(self, sender, text, message_id=None, name="Maria"):
        body = self._sandbox_message(self.sandbox, sender, text, name=name, message_id=message_id)
        response = self._post_signed(self.sandbox, body)
        return response, self._last_log()

    def _conversation(self, identity):
        return self.env["vm.whatsapp.conversation"].search(
            [("integration_id", "=", self.sandbox.id), ("contact_identity", "=", identity)]
        )

    # ------------------------------------------------------------------ attribution

    def test_token_attribution(self):
        response, log = self._message("5511911112222", "Olá! Vi o anúncio vm_token:gads-7f3a9c", "sbx-1")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"status": "ok"})
        self.assertEqual((log.state, log.signature, log.integration_id), ("processed", "valid", self.sandbox))
        conversation = self._conversation("5511911112222")
        self.assertEqual(conversation.lead_id, self.lead_token)
        self.assertEqual(conversation.attribution, "token")
        self.assertEqual(conversation.vm_token, "gads-7f3a9c")
        message = conversation.message_ids
        self.assertEqual(
            (message.external_id, message.direction, message.vm_token), ("sbx-1", "inbound", "gads-7f3a9c")
        )
        self.assertEqual(message.webhook_log_id, log)
        self.assertEqual(self.lead_token.whatsapp_message_count, 1)
        self.assertEqual(self.sandbox.last_webhook_at, log.received_at)
        # The Settings page lists the integration from an unsaved form (new records).
        settings = self.env["res.config.settings"].new({"company_id": self.company_a.id})
        line = settings.vm_whatsapp_integration_ids.filtered(lambda i: i._origin == self.sandbox)
        self.assertEqual(line.last_webhook_at, log.received_at)

    def test_phone_attribution_brazilian_ninth_digit(self):
        lead13 = self.env["crm.lead"].create(
            {"name": "13 digits", "phone": "+55 11 98765-4321", "company_id": self.company_a.id}
        )
        lead12 = self.env["crm.lead"].create(
            {"name": "12 digits", "phone": "(64) 8123-4567", "company_id": self.company_a.id}
        )
        # The WhatsApp id has 12 digits (no ninth digit), the lead's phone 13: the same person.
        self._message("551187654321", "bom dia", "sbx-2")
        conversation = self._conversation("551187654321")
        self.assertEqual((conversation.lead_id, conversation.attribution), (lead13, "phone"))
        # And the other way round: a 13-digit id for a lead saved with 8 digits in a BR company.
        self._message("5564981234567", "oi", "sbx-3")
        self.assertEqual(self._conversation("5564981234567").lead_id, lead12)

    def test_phone_attribution_through_a_contact(self):
        partner = self.env["res.partner"].create({"name": "Joana Contato", "phone": "+55 21 99876-1234"})
        self._message("5521998761234", "oi", "sbx-4")
        conversation = self._conversation("5521998761234")
        self.assertEqual(conversation.attribution, "phone")
        self.assertEqual(conversation.lead_id.partner_id, partner)
        self.assertEqual(conversation.partner_id, partner)

    def test_anonymous_lead(self):
        self._message("5531977776666", "quero um orçamento", "sbx-5", name="Paulo Reis")
        conversation = self._conversation("5531977776666")
        lead = conversation.lead_id
        self.assertEqual(conversation.attribution, "anonymous")
        self.assertEqual(lead.name, "WhatsApp: Paulo Reis")
        self.assertEqual(lead.phone_sanitized, "+5531977776666")
        self.assertEqual(lead.company_id, self.company_a)
        self.assertEqual(lead.source_id, self.env.ref("visionmetrics_whatsapp.utm_source_whatsapp"))
        # A second message of the same contact reuses the conversation and its lead.
        self._message("5531977776666", "alô?", "sbx-6")
        self.assertEqual(len(conversation.message_ids), 2)
        self.assertEqual(self.env["crm.lead"].search_count([("phone_sanitized", "=", "+5531977776666")]), 1)

    def test_later_token_reattributes(self):
        self._message("5541966665555", "oi", "sbx-7")
        conversation = self._conversation("5541966665555")
        self.assertEqual(conversation.attribution, "anonymous")
        self._message("5541966665555", "meu código vm_token:gads-7f3a9c", "sbx-8")
        self.assertEqual((conversation.lead_id, conversation.attribution), (self.lead_token, "token"))
        # An unknown token changes nothing.
        self._message("5541966665555", "vm_token:unknown-1", "sbx-9")
        self.assertEqual(conversation.lead_id, self.lead_token)

    # ------------------------------------------------------------------ idempotency and errors

    def test_duplicate_delivery_stores_one_message(self):
        body = self._sandbox_message(self.sandbox, "5511955554444", "oi", message_id="sbx-dup")
        first = self._post_signed(self.sandbox, body)
        log = self._last_log()
        second = self._post_signed(self.sandbox, body)
        self.assertEqual((first.status_code, second.status_code), (200, 200))
        self.assertEqual(second.json(), {"status": "ok", "duplicate": True})
        self.assertEqual((self._last_log(), log.state, log.event_id), (log, "processed", "message:sbx-dup"))
        messages = self.env["vm.whatsapp.message"].search([("external_id", "=", "sbx-dup")])
        self.assertEqual(len(messages), 1)

    def test_bad_signature_is_rejected_and_kept(self):
        body = self._sandbox_message(self.sandbox, "5511944443333", "oi", message_id="sbx-bad")
        with mute_logger(CONTROLLER_LOGGER):
            response = self._post(self.sandbox, body, {"X-VM-Signature": "sha256=" + "0" * 64})
            missing = self._post(self.sandbox, body)
        self.assertEqual((response.status_code, missing.status_code), (401, 401))
        log = self.env["vm.whatsapp.webhook.log"].search([("payload", "=", body.decode())], order="id")
        self.assertEqual((log.signature, log.state, log.error), ("invalid", "rejected", "Signature invalid."))
        self.assertEqual(log.repeat_count, 1, "the second request of the address this minute is counted on it")
        self.assertFalse(self.env["vm.whatsapp.message"].search([("external_id", "=", "sbx-bad")]))

    def test_tampered_body_is_rejected(self):
        body = self._sandbox_message(self.sandbox, "5511944443333", "oi", message_id="sbx-tamper")
        headers = payloads.sign("sandbox", self.sandbox._get_secret("webhook_secret"), body)
        with mute_logger(CONTROLLER_LOGGER):
            response = self._post(self.sandbox, body.replace(b"oi", b"ol"), headers)
        self.assertEqual(response.status_code, 401)

    def test_unknown_token_and_provider_mismatch(self):
        body = self._sandbox_message(self.sandbox, "5511944443333", "oi")
        with mute_logger(CONTROLLER_LOGGER):
            unknown = self._post(self.sandbox, body, token="not-a-token")
            mismatch = self._post(self.sandbox, body, provider="meta")
        self.assertEqual((unknown.status_code, mismatch.status_code), (404, 404))
        log = self._last_log()
        self.assertEqual((log.state, log.error, log.repeat_count), ("rejected", "Unknown webhook token.", 1))
        self.assertFalse(log.integration_id, "an unknown token names no integration")

    def test_malformed_json_is_400_and_kept(self):
        body = b'{"event": "message", "message": {'
        with mute_logger(CONTROLLER_LOGGER):
            response = self._post_signed(self.sandbox, body)
        self.assertEqual(response.status_code, 400)
        log = self._last_log()
        self.assertEqual((log.state, log.signature, log.payload), ("rejected", "valid", body.decode()))
        self.assertIn("JSON", log.error)

    def test_oversized_body_is_413(self):
        self.env["ir.config_parameter"].set_param("visionmetrics_whatsapp.webhook_max_bytes", "2048")
        body = self._sandbox_message(self.sandbox, "5511944443333", "x" * 4000)
        response = self._post_signed(self.sandbox, body)
        self.assertEqual(response.status_code, 413)
        log = self._last_log()
        self.assertEqual(
            (log.state, log.payload, log.payload_size, log.payload_truncated), ("rejected", "", len(body), True)
        )

    def test_missing_key_answers_503_and_keeps_the_request(self):
        body = self._sandbox_message(self.sandbox, "5511933332222", "oi", message_id="sbx-nokey")
        headers = payloads.sign("sandbox", self.sandbox._get_secret("webhook_secret"), body)
        with patch.dict(config.options, {"integrations_key": ""}), mute_logger(CONTROLLER_LOGGER):
            response = self._post(self.sandbox, body, headers)
        self.assertEqual(response.status_code, 503)
        log = self._last_log()
        self.assertEqual((log.state, log.payload), ("failed", body.decode()))
        self.assertIn("integrations_key", log.error)
        self.assertNotIn(headers["X-VM-Signature"].split("=")[1], log.error)

    def test_secret_headers_are_redacted(self):
        evolution = self._create_integration("evolution", api_base_url="https://evo.example.com", external_id="loja-01")
        body = payloads.evolution_text("loja-01", "5511922221111@s.whatsapp.net", "oi", "3EB0-redact")
        secret = evolution._get_secret("webhook_secret")
        self.assertEqual(self._post_signed(evolution, body).status_code, 200)
        log = self._last_log()
        self.assertNotIn(secret, log.headers)
        self.assertEqual(json.loads(log.headers)["X-Vm-Webhook-Secret"], "[redacted]")

    def test_event_for_another_session_is_ignored(self):
        body = self.sandbox._get_provider().build_message_payload("other-session", "5511900001111", "oi")
        self.assertEqual(self._post_signed(self.sandbox, body).status_code, 200)
        log = self._last_log()
        self.assertEqual(log.state, "ignored")
        self.assertFalse(self._conversation("5511900001111"))

    def test_status_updates_converge_whatever_their_order(self):
        provider = self.sandbox._get_provider()
        payload = json.loads(provider.build_message_payload("sbx-session-a", "5511912340000", "ok", message_id="out-1"))
        payload["message"]["from_me"] = True  # typed on the business's own phone
        body = payloads.dump(payload)
        self._post_signed(self.sandbox, body)
        message = self.env["vm.whatsapp.message"].search([("external_id", "=", "out-1")])
        self.assertEqual((message.direction, message.status), ("outbound", "sent"))
        for status in ("read", "delivered", "sent"):
            self._post_signed(self.sandbox, provider.build_status_payload("sbx-session-a", "out-1", status))
        self.assertEqual(message.status, "read")

    def test_company_a_webhook_never_touches_company_b(self):
        integration_b = self._create_integration("sandbox", company=self.company_b, external_id="sbx-b")
        lead_b = self.env["crm.lead"].create(
            {
                "name": "B lead",
                "phone": "+55 11 97777-1111",
                "first_touch_token": "b-token",
                "company_id": self.company_b.id,
            }
        )
        leads_b_before = self.env["crm.lead"].search_count([("company_id", "=", self.company_b.id)])
        # Same phone and a token that both exist only in company B, sent to company A's integration.
        self._message("5511977771111", "vm_token:b-token", "sbx-cross")
        conversation = self._conversation("5511977771111")
        self.assertEqual(conversation.company_id, self.company_a)
        self.assertEqual(conversation.attribution, "anonymous")
        self.assertEqual(conversation.lead_id.company_id, self.company_a)
        self.assertNotEqual(conversation.lead_id, lead_b)
        self.assertEqual(self.env["crm.lead"].search_count([("company_id", "=", self.company_b.id)]), leads_b_before)
        self.assertFalse(self.env["vm.whatsapp.conversation"].search([("integration_id", "=", integration_b.id)]))
        # Company B's token in B's own webhook attributes to B's lead.
        body = integration_b._get_provider().build_message_payload("sbx-b", "5511900002222", "vm_token:b-token")
        self._post_signed(integration_b, body)
        conversation_b = self.env["vm.whatsapp.conversation"].search([("integration_id", "=", integration_b.id)])
        self.assertEqual(conversation_b.lead_id, lead_b)

    def test_reprocess_failed_request(self):
        body = self._sandbox_message(self.sandbox, "5511966660000", "oi", message_id="sbx-retry")
        with (
            patch.object(type(self.env["vm.whatsapp.conversation"]), "_attribute_all", side_effect=ValueError("boom")),
            mute_logger(INBOX_LOGGER),
        ):
            response = self._post_signed(self.sandbox, body)
        self.assertEqual(response.status_code, 200, "stored: the retry is ours, not the provider's")
        log = self._last_log()
        self.assertEqual(log.state, "failed")
        self.assertIn("boom", log.error)
        self.assertFalse(log.message_ids, "the failed processing left nothing half done")
        log.action_reprocess()
        self.assertEqual(log.state, "processed")
        self.assertEqual(log.message_ids.external_id, "sbx-retry")
        self.assertTrue(self._conversation("5511966660000").lead_id)

    def test_retry_cron_processes_failed_requests(self):
        body = self._sandbox_message(self.sandbox, "5511966661111", "oi", message_id="sbx-cron")
        with (
            patch.object(type(self.env["vm.whatsapp.conversation"]), "_attribute_all", side_effect=ValueError("boom")),
            mute_logger(INBOX_LOGGER),
        ):
            self._post_signed(self.sandbox, body)
        log = self._last_log()
        self.assertEqual(log.state, "failed")
        self.assertTrue(log.next_attempt_at, "a retry is scheduled")
        self.env["vm.whatsapp.inbox"]._cron_retry_failed()
        self.assertEqual(log.state, "failed", "not before its retry is due")
        log.next_attempt_at = fields.Datetime.now() - timedelta(seconds=1)
        self.env["vm.whatsapp.inbox"]._cron_retry_failed()
        self.assertEqual(log.state, "received", "queued again")
        self._process_inbox()
        self.assertEqual((log.state, log.attempt_count, log.next_attempt_at), ("processed", 2, False))

    def test_old_logs_are_vacuumed_but_deduplication_remains(self):
        body = self._sandbox_message(self.sandbox, "5511955550000", "oi", message_id="sbx-old")
        self._post_signed(self.sandbox, body)
        log = self._last_log()
        log.received_at = fields.Datetime.now() - timedelta(days=31)
        old = fields.Datetime.now() - timedelta(days=40)
        retrying = log.copy({"state": "failed", "received_at": old, "next_attempt_at": fields.Datetime.now()})
        self.env["vm.whatsapp.webhook.log"]._gc_old_logs()
        self.assertFalse(log.exists())
        self.assertTrue(retrying.exists(), "a failed request waiting for its retry is kept")
        message = self.env["vm.whatsapp.message"].search([("external_id", "=", "sbx-old")])
        self.assertTrue(message)
        self._post_signed(self.sandbox, body)
        self.assertEqual(self._last_log().state, "duplicate")
        self.assertEqual(self.env["vm.whatsapp.message"].search_count([("external_id", "=", "sbx-old")]), 1)


@tagged("post_install", "-at_install")
class TestWebhookInbox(WhatsAppHttpCase):
    """The route only stores a request; the inbox cron applies it, in batches."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sandbox = cls._create_integration("sandbox", external_id="sbx-inbox")
        cls.Log = cls.env["vm.whatsapp.webhook.log"]

    def _store(self, sender, text, message_id, **kwargs):
        body = self._sandbox_message(self.sandbox, sender, text, message_id=message_id, **kwargs)
        self.assertEqual(self._post_signed(self.sandbox, body, process=False).status_code, 200)
        return self._last_log()

    def _messages(self, *external_ids):
        return self.env["vm.whatsapp.message"].search([("external_id", "in", external_ids)])

    def test_request_waits_in_the_inbox_until_the_cron_runs(self):
        log = self._store("5511911110000", "oi", "inbox-1")
        self.assertEqual((log.state, log.signature, log.event_type), ("received", "valid", "message"))
        self.assertFalse(self._messages("inbox-1"))
        self._process_inbox()
        self.assertEqual((log.state, log.attempt_count), ("processed", 1))
        self.assertEqual(self._messages("inbox-1").webhook_log_id, log)

    def test_one_batch_applies_its_requests_in_order(self):
        provider = self.sandbox._get_provider()
        payload = provider.build_message_payload("sbx-inbox", "5511911112222", "ok", message_id="inbox-out")
        outbound = json.loads(payload)
        outbound["message"]["from_me"] = True
        logs = self.Log
        logs |= self._store("5511911112222", "primeira", "inbox-a")
        logs |= self._store("5511911112222", "primeira", "inbox-a")  # redelivered: not stored again
        logs |= self._store("5511911112222", "segunda", "inbox-b")
        body = payloads.dump(outbound)
        self._post_signed(self.sandbox, body, process=False)
        status = provider.build_status_payload("sbx-inbox", "inbox-out", "delivered", recipient="5511911112222")
        self._post_signed(self.sandbox, status, process=False)
        logs |= self.Log.search([("state", "=", "received")], order="id desc", limit=2).sorted("id")
        self._process_inbox()
        self.assertEqual(logs.mapped("state"), ["processed"] * 4)
        conversations = self.env["vm.whatsapp.conversation"].search([("integration_id", "=", self.sandbox.id)])
        self.assertEqual(len(conversations), 1, "two new messages of one contact in a batch: one conversation")
        self.assertEqual(len(conversations.lead_id), 1)
        self.assertEqual(len(self._messages("inbox-a", "inbox-b", "inbox-out")), 3)
        self.assertEqual(self._messages("inbox-out").status, "delivered", "the status follows its message")

    def test_one_bad_request_does_not_hold_up_its_batch(self):
        good = self._store("5511911113333", "oi", "inbox-good")
        bad = self._store("5511911114444", "oi", "inbox-bad")
        Conversation = type(self.env["vm.whatsapp.conversation"])
        register = Conversation._register_messages

        def fail_for_bad(conversation, stored, **kwargs):
            if any(message.external_id == "inbox-bad" for _conversation, message, _event in stored):
                raise ValueError("poison")
            return register(conversation, stored, **kwargs)

        with (
            patch.object(Conversation, "_register_messages", fail_for_bad),
            mute_logger(INBOX_LOGGER),
        ):
            self._process_inbox()
        self.assertEqual((good.state, bad.state), ("processed", "failed"))
        self.assertIn("poison", bad.error)
        self.assertEqual(len(self._messages("inbox-good", "inbox-bad")), 1)

    def test_one_bad_request_among_many_is_found_in_parts_not_one_by_one(self):
        logs = [self._store(f"55119111{i:05d}", "oi", f"inbox-many-{i}") for i in range(40)]
        Conversation = type(self.env["vm.whatsapp.conversation"])
        Inbox = type(self.env["vm.whatsapp.inbox"])
        register, apply_batch, sizes = Conversation._register_messages, Inbox._apply_batch, []

        def fail_for_bad(conversation, stored, **kwargs):
            if any(message.external_id == "inbox-many-17" for _conversation, message, _event in stored):
                raise ValueError("poison")
            return register(conversation, stored, **kwargs)

        def counting(inbox, batch):
            sizes.append(len(batch))
            return apply_batch(inbox, batch)

        with (
            patch.object(Conversation, "_register_messages", fail_for_bad),
            patch.object(Inbox, "_apply_batch", counting),
            mute_logger(INBOX_LOGGER),
        ):
            self.env["vm.whatsapp.inbox"]._apply(self.env["vm.whatsapp.webhook.log"].browse([log.id for log in logs]))
        self.assertEqual([log.state for log in logs], ["processed"] * 17 + ["failed"] + ["processed"] * 22)
        self.assertEqual(sizes, [40, 4, 4, 4, 4, 4, 1, 1, 1, 1, 4, 4, 4, 4, 4], "ten parts, then the bad part's")
        self.assertEqual(len(self._messages(*(f"inbox-many-{i}" for i in range(40)))), 39)

    def test_a_message_stored_concurrently_makes_the_batch_fall_back(self):
        first = self._store("5511911117777", "oi", "inbox-race")
        self._process_inbox()
        first.event_id = False  # as once its log is vacuumed: the same message is stored again
        again = self._store("5511911117777", "oi", "inbox-race")
        other = self._store("5511911117777", "tudo bem?", "inbox-race-2")
        Message = type(self.env["vm.whatsapp.message"])
        # The batch does not see the stored message (as when a concurrent transaction stored it
        # after the batch's snapshot): its INSERT fails on the unique key.
        with patch.object(Message, "search_fetch", lambda self, *args, **kwargs: self.browse()):
            self._process_inbox()
        self.assertEqual((first.state, again.state, other.state), ("processed", "duplicate", "processed"))
        self.assertEqual(len(self._messages("inbox-race", "inbox-race-2")), 2)

    def test_a_request_stored_for_an_integration_deleted_meanwhile(self):
        doomed = self._create_integration("sandbox", external_id="sbx-doomed")
        endpoint = self.env["vm.whatsapp.integration"]._webhook_endpoint(doomed.webhook_token)
        body = self._sandbox_message(doomed, "5511911118888", "oi", message_id="inbox-doomed")
        doomed.unlink()
        # A request that found the integration just before its deletion committed stores a log
        # naming it (the column has no foreign key).
        stale = self.Log._receive(endpoint, "sandbox", body, {}, "127.0.0.1", signature="valid", event_type="message")
        good = self._store("5511911118888", "oi", "inbox-alive")
        self._process_inbox()
        self.assertEqual((stale.state, stale.integration_id, stale.next_attempt_at), ("failed", doomed.browse(), False))
        self.assertIn(self.Log._no_integration_error(), stale.error, "permanent: not retried")
        self.assertEqual(good.state, "processed")
        self.assertFalse(self._messages("inbox-doomed"))

    def test_the_cron_reports_what_remains(self):
        for i in range(3):
            self._store("5511911115555", f"msg {i}", f"inbox-p{i}")
        lane = self._last_log().lane
        received = self.Log.search([("state", "=", "received")])
        self.assertEqual(received.mapped("lane"), [lane] * 3, "one contact, one lane")
        cron = self.env.ref(LANE_CRON % lane)
        cron, progress = cron._add_progress()
        self.env["vm.whatsapp.inbox"].with_context(**cron.env.context)._cron_process(lane, batch_size=2)
        self.assertEqual((progress.done, progress.remaining), (2, 1))
        self.assertEqual(self.Log.search_count([("state", "=", "received")]), 1)

    def test_a_new_webhook_secret_is_used_at_once(self):
        old_secret = self.sandbox._get_secret("webhook_secret")
        body = self._sandbox_message(self.sandbox, "5511911116666", "oi", message_id="inbox-secret")
        old_headers = payloads.sign("sandbox", old_secret, body)
        self.assertEqual(self._post(self.sandbox, body, old_headers).status_code, 200)
        self.sandbox.webhook_secret = "a-new-secret-of-the-administrator"
        with mute_logger(CONTROLLER_LOGGER):
            self.assertEqual(self._post(self.sandbox, body, old_headers).status_code, 401)
        self.assertEqual(self._post_signed(self.sandbox, body).status_code, 200)
