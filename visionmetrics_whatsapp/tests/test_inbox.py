"""The inbox under hostile input (DESIGN §12): whatever a signed request holds, it ends with a
state and a readable error, and the valid requests of every company around it are applied in
the same pass of the lanes."""

import json
import secrets
import select
import time
from datetime import datetime, timedelta
from unittest.mock import patch

import psycopg2
from psycopg2 import errors as pg_errors

from odoo import fields, sql_db
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models.bulk import insert_records
from ..models.vm_whatsapp_inbox import HANDLERS, LANES, CronBell
from ..models.vm_whatsapp_webhook_log import MAX_ATTEMPTS
from ..providers import events
from . import payloads
from .common import WhatsAppHttpCase

INBOX_LOGGER = "odoo.addons.visionmetrics_whatsapp.models.vm_whatsapp_inbox"
CONTROLLER_LOGGER = "odoo.addons.visionmetrics_whatsapp.controllers.webhook"
LONG = "9" * 3000
NUL = "a\x00b"
SURROGATE = "a\ud800b\udfffc"


def sandbox_payload(session, sender, text="oi", message_id=None, name="Ana", event="message"):
    message = {"id": message_id or secrets.token_hex(8), "from": sender, "name": name, "text": text, "type": "text"}
    return {"event": event, "session": session, "message": message}


def encode(payload):
    """JSON with \\u escapes: a NUL or a lone surrogate travels as a provider would send it."""
    return json.dumps(payload, ensure_ascii=True).encode()


@tagged("post_install", "-at_install")
class TestInboxIsolation(WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sandbox_a = cls._create_integration("sandbox", external_id="sbx-iso-a")
        cls.sandbox_b = cls._create_integration("sandbox", company=cls.company_b, external_id="sbx-iso-b")
        cls.Log = cls.env["vm.whatsapp.webhook.log"]
        cls.Message = cls.env["vm.whatsapp.message"]

    def _send(self, integration, payload):
        body = encode(payload)
        headers = payloads.sign("sandbox", integration._get_secret("webhook_secret"), body)
        response = self._post(integration, body, headers, process=False)
        return response, self._last_log()

    def _one_pass(self):
        """Each lane's cron runs one batch, as the cron workers would on their next wake-up."""
        for lane in range(LANES):
            self.env["vm.whatsapp.inbox"]._cron_process(lane)

    def _assert_poison_isolated(self, payload, expected_state):
        """The poison, then valid messages of company A and company B: one pass applies the valid
        ones, and the poison ends in ``expected_state`` with a readable error when failed."""
        response, poison = self._send(self.sandbox_a, payload)
        self.assertEqual(response.status_code, 200, "authenticated and parsable: stored")
        message_a = secrets.token_hex(6)
        message_b = secrets.token_hex(6)
        valid_a = self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", "5511922220001", message_id=message_a))[1]
        valid_b = self._send(self.sandbox_b, sandbox_payload("sbx-iso-b", "5511922220002", message_id=message_b))[1]
        with mute_logger(INBOX_LOGGER):
            self._one_pass()
        self.assertEqual((valid_a.state, valid_b.state), ("processed", "processed"))
        self.assertEqual(len(self.Message.search([("external_id", "in", [message_a, message_b])])), 2)
        self.assertEqual(poison.state, expected_state, poison.error)
        self.assertFalse(self.Log.search_count([("state", "=", "received")]))
        for text in (poison.error or "", poison.event_type or ""):
            self.assertNotIn("\x00", text)
            text.encode("utf-8")  # no lone surrogate
        return poison

    def test_a_batch_of_large_bodies_holds_few_of_them(self):
        sender = "5511922220009"  # one contact: one lane
        big = [self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", sender, text="x" * 60_000))[1] for _ in range(4)]
        small = self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", sender))[1]
        Inbox = self.env["vm.whatsapp.inbox"]
        lane = big[0].lane
        claimed = Inbox._claim(lane, 100, max_bytes=100_000)
        self.assertEqual(claimed, big[0] | big[1], "the bodies before the second exceed no budget: two")
        self.assertEqual(Inbox._claim(lane, 100, max_bytes=10), big[0], "always the oldest one, however large")
        self.assertEqual(Inbox._claim(lane, 100), self.Log.browse([log.id for log in big] + [small.id]))
        self._one_pass()
        self.assertEqual(set((small | self.Log.browse([log.id for log in big])).mapped("state")), {"processed"})

    def test_poison_values_of_a_message_are_cleaned_and_the_message_kept(self):
        cases = {
            "oversized id": {"message_id": LONG},
            "oversized sender": {"sender": "55" + LONG},
            "NUL in id": {"message_id": NUL},
            "NUL in sender": {"sender": "55119" + NUL},
            "NUL in name": {"name": NUL},
            "NUL in text": {"text": "oi\x00 tudo bem"},
            "surrogate in id": {"message_id": SURROGATE},
            "surrogate in sender": {"sender": "55119" + SURROGATE},
            "surrogate in name": {"name": SURROGATE},
            "surrogate in text": {"text": "oi " + SURROGATE},
            "huge text": {"text": "x" * 200_000},
        }
        for name, values in cases.items():
            with self.subTest(name):
                values.setdefault("sender", "5511922229999")
                poison = self._assert_poison_isolated(sandbox_payload("sbx-iso-a", **values), "processed")
                message = poison.message_ids
                self.assertEqual(len(message), 1, "the message itself is kept")
                for value in (message.external_id, message.conversation_id.contact_identity, message.body or ""):
                    self.assertNotIn("\x00", value)
                    value.encode("utf-8")
                self.assertLessEqual(len(message.external_id), 255)
                self.assertLessEqual(len(message.conversation_id.contact_identity), 255)

    def test_a_nul_in_the_text_is_stored_cleaned(self):
        _response, log = self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", "5511922223333", text="bom\x00 dia"))
        self._one_pass()
        self.assertEqual(log.message_ids.body, "bom dia")

    def test_two_long_ids_sharing_a_prefix_stay_two_messages(self):
        self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", "5511922224444", message_id=LONG + "1"))
        self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", "5511922224444", message_id=LONG + "2"))
        again = self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", "5511922224444", message_id=LONG + "1"))[0]
        self._one_pass()
        conversation = self.env["vm.whatsapp.conversation"].search([("contact_identity", "=", "5511922224444")])
        self.assertEqual(len(conversation.message_ids), 2)
        self.assertEqual(again.json().get("duplicate"), True, "the bounded id is deterministic: deduplication holds")

    def test_poison_session_and_event_type_end_ignored(self):
        cases = {
            "oversized session": sandbox_payload(LONG, "5511922225555"),
            "NUL in session": sandbox_payload("sbx" + NUL, "5511922225555"),
            "surrogate in session": sandbox_payload("sbx" + SURROGATE, "5511922225555"),
            "NUL in event type": sandbox_payload("sbx-iso-a", "5511922225555", event="mess" + NUL),
            "surrogate in event type": sandbox_payload("sbx-iso-a", "5511922225555", event="mess" + SURROGATE),
            "oversized event type": sandbox_payload("sbx-iso-a", "5511922225555", event=LONG),
        }
        for name, payload in cases.items():
            with self.subTest(name):
                poison = self._assert_poison_isolated(payload, "ignored")
                self.assertTrue(poison.error)
                self.assertLess(len(poison.error), 3000)

    def test_a_database_error_fails_one_request_not_the_inbox(self):
        """A value PostgreSQL refuses (here a real index row over its size limit) fails that one
        request with its reason; it is not mistaken for a transient error retried for ever."""
        Message = type(self.Message)
        prepare = Message._prepare_vals_from_event

        def oversized(message_model, conversation, event, log):
            vals = prepare(message_model, conversation, event, log)
            if event.message_id == "poison-index":
                vals["external_id"] = secrets.token_hex(6000)  # incompressible: over the index row limit
            return vals

        poison = self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", "5511922226666", message_id="poison-index"))[1]
        _response, good = self._send(self.sandbox_b, sandbox_payload("sbx-iso-b", "5511922226667"))
        with patch.object(Message, "_prepare_vals_from_event", oversized), mute_logger(INBOX_LOGGER, "odoo.sql_db"):
            self._one_pass()
        self.assertEqual((poison.state, good.state), ("failed", "processed"))
        self.assertIn("ProgramLimitExceeded", poison.error)
        self.assertTrue(poison.next_attempt_at, "retried later, a bounded number of times")

    def test_a_transient_error_gives_the_batch_back_to_the_cron(self):
        _response, log = self._send(self.sandbox_a, sandbox_payload("sbx-iso-a", "5511922227777"))
        Conversation = type(self.env["vm.whatsapp.conversation"])
        with (
            patch.object(Conversation, "_get_or_create_for_events", side_effect=pg_errors.SerializationFailure()),
            self.assertRaises(pg_errors.SerializationFailure),
        ):
            self.env["vm.whatsapp.inbox"]._cron_process(log.lane)
        self.assertEqual(log.state, "received", "applied by the cron's next run")

    def test_odd_bytes_in_urls(self):
        token = self.sandbox_a.webhook_token
        before = self.Log.search_count([])
        for counted, path in enumerate(
            (
                "/vm_whatsapp/webhook/sandbox/%00",
                f"/vm_whatsapp/webhook/sandbox/{token}%00",
                f"/vm_whatsapp/webhook/sand%00box/{token}",
                "/vm_whatsapp/webhook/sandbox/%FF%FE" + "a" * 20,
                "/vm_whatsapp/webhook/%ED%A0%80/" + "a" * 20,
            ),
            start=1,
        ):
            with self.subTest(path), mute_logger(CONTROLLER_LOGGER):
                response = self.url_open(path, data=b"{}", headers={"Content-Type": "application/json"})
                self.assertIn(response.status_code, (400, 404))
                # one row for the address and minute, every request counted on it
                self.assertEqual(self.Log.search_count([]), before + 1, "a log row for the webhook route")
                log = self._last_log()
                self.assertEqual((log.state, log.repeat_count + 1), ("rejected", counted))
        for path in (
            "/vm_whatsapp/sandbox/%00/scan",
            "/vm_whatsapp/sandbox/scan/%00",  # no route: Odoo's fallback looked the URL up
            "/web/content/%00",
            "/vm_whatsapp/sandbox/%FF/scan",
            f"/vm_whatsapp/sandbox/{LONG}/scan",
        ):
            with self.subTest(path):
                self.assertEqual(self.url_open(path).status_code, 404)


@tagged("post_install", "-at_install")
class TestInboxRetries(WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sandbox = cls._create_integration("sandbox", external_id="sbx-retry")
        cls.Log = cls.env["vm.whatsapp.webhook.log"]
        cls.Inbox = cls.env["vm.whatsapp.inbox"]

    def _store(self, message_id):
        body = self._sandbox_message(self.sandbox, "5511933330000", "oi", message_id=message_id)
        self._post_signed(self.sandbox, body, process=False)
        return self._last_log()

    def _retry_now(self, log):
        log.next_attempt_at = fields.Datetime.now() - timedelta(seconds=1)
        self.Inbox._cron_retry_failed()
        self._process_inbox()

    def test_retries_are_spaced_out_and_bounded(self):
        log = self._store("retry-bounded")
        Conversation = type(self.env["vm.whatsapp.conversation"])
        delays = []
        with patch.object(Conversation, "_attribute_all", side_effect=ValueError("boom")), mute_logger(INBOX_LOGGER):
            self._process_inbox()
            while log.next_attempt_at and len(delays) < 20:
                delays.append(round((log.next_attempt_at - log.processed_at).total_seconds() / 60))
                self._retry_now(log)
        self.assertEqual(delays, [2**i for i in range(MAX_ATTEMPTS - 1)], "1, 2, 4, ... minutes")
        self.assertEqual((log.state, log.attempt_count), ("failed", MAX_ATTEMPTS))
        self.assertIn("boom", log.error)
        self.assertIn(str(MAX_ATTEMPTS), log.error, "says it gave up")
        self.assertEqual(self.sandbox.failed_webhook_count, 1, "counted on the integration")
        settings = self.env["res.config.settings"].create({})
        self.assertEqual(settings.vm_whatsapp_failed_webhook_count, 1, "and in Settings")
        self.Inbox._cron_retry_failed()
        self.assertEqual(log.state, "failed", "no retry after the last one")

    def test_a_retry_that_succeeds_ends_processed_with_its_attempts_counted(self):
        log = self._store("retry-then-ok")
        Conversation = type(self.env["vm.whatsapp.conversation"])
        with patch.object(Conversation, "_attribute_all", side_effect=ValueError("once")), mute_logger(INBOX_LOGGER):
            self._process_inbox()
        self.assertEqual((log.state, log.attempt_count), ("failed", 1))
        self.assertTrue(log.next_attempt_at and log.error)
        failed_at = log.processed_at
        self._retry_now(log)
        self.assertEqual((log.state, log.attempt_count, log.error, log.next_attempt_at), ("processed", 2, False, False))
        self.assertGreaterEqual(log.processed_at, failed_at)
        self.assertTrue(log.message_ids, "its message stored")
        self.assertEqual(self.sandbox.failed_webhook_count, 0, "no longer counted as failed")

    def test_a_batch_meeting_a_concurrent_creation_is_applied_again_whole_at_once(self):
        """Two cron workers apply new contacts of one new ad: the first batch to commit creates
        the ad's campaign, the other one's INSERT of it then raises (the row is invisible to its
        transaction). That batch is undone and stays received, to be applied whole by its lane's
        next run, not failed request by request and retried a minute later."""
        referral = {"source_id": "ad-concurrent", "source_type": "ad", "source_url": "https://fb.me/ad"}
        logs = self.Log
        for i, phone in enumerate(["5511933331111", "5511933332222", "5511933333333"]):
            body = self._sandbox_message(
                self.sandbox, phone, "Vi o anúncio", message_id=f"conc-{i}", referral=referral if i == 0 else None
            )
            self._post_signed(self.sandbox, body, process=False)
            logs |= self._last_log()
        Campaign = type(self.env["utm.campaign"])
        with (
            patch.object(Campaign, "create", autospec=True, side_effect=pg_errors.UniqueViolation()),
            patch.object(type(self.Inbox), "_wake_up") as wake_up,
        ):
            self.Inbox._apply(logs)
        self.assertEqual(logs.mapped("state"), ["received"] * 3, "the whole batch, none failed")
        self.assertEqual(logs.mapped("attempt_count"), [1, 1, 1])
        self.assertIn("concurrent", logs[0].error)
        self.assertFalse(logs.message_ids, "undone")
        wake_up.assert_called_once_with(set(logs.mapped("lane")))
        self.Inbox._apply(logs)  # the lane's next run: a new transaction sees the campaign
        self.assertEqual(logs.mapped("state"), ["processed"] * 3)
        self.assertEqual((logs.mapped("attempt_count"), logs.mapped("error")), ([2, 2, 2], [False] * 3))
        self.assertEqual(logs[0].message_ids.conversation_id.lead_id.campaign_id.whatsapp_ad_id, "ad-concurrent")

    def test_a_creation_conflict_met_again_in_a_new_transaction_fails_its_request_alone(self):
        """Met again by the batch applied again, the conflict is not a concurrent creation: the
        batch is applied in parts, the request that causes it fails, the others are applied."""
        referral = {"source_id": "ad-for-ever", "source_type": "ad", "source_url": "https://fb.me/ad"}
        logs = self.Log
        for i, phone in enumerate(["5511933334444", "5511933335555"]):
            body = self._sandbox_message(
                self.sandbox, phone, "oi", message_id=f"conc-ever-{i}", referral=referral if i == 0 else None
            )
            self._post_signed(self.sandbox, body, process=False)
            logs |= self._last_log()
        with (
            patch.object(type(self.env["utm.campaign"]), "create", side_effect=pg_errors.UniqueViolation()),
            mute_logger(INBOX_LOGGER),
        ):
            self.Inbox._apply(logs)
            self.assertEqual(logs.mapped("state"), ["received"] * 2)
            self.Inbox._apply(logs)
        self.assertEqual(logs.mapped("state"), ["failed", "processed"])
        self.assertEqual(logs.mapped("attempt_count"), [2, 2])
        self.assertIn("concurrent", logs[0].error)
        self.assertTrue(logs[0].next_attempt_at, "retried later, as any failure")

    def test_a_deleted_integration_is_not_retried(self):
        doomed = self._create_integration("sandbox", external_id="sbx-doomed-retry")
        body = self._sandbox_message(doomed, "5511933331111", "oi", message_id="retry-doomed")
        self._post_signed(doomed, body, process=False)
        log = self._last_log()
        doomed.unlink()
        self._process_inbox()
        self.assertEqual((log.state, log.next_attempt_at, log.attempt_count), ("failed", False, 1))
        self.Inbox._cron_retry_failed()
        self._process_inbox()
        self.assertEqual(log.attempt_count, 1, "never applied again")

    def test_failed_requests_are_vacuumed_after_the_retention(self):
        log = self._store("retry-vacuum")
        with patch.object(type(self.env["vm.whatsapp.conversation"]), "_attribute_all", side_effect=ValueError("x")):
            with mute_logger(INBOX_LOGGER):
                self._process_inbox()
        self.assertEqual(log.state, "failed")
        old = fields.Datetime.now() - timedelta(days=40)
        waiting = log.copy({"state": "failed", "received_at": old, "next_attempt_at": log.next_attempt_at})
        given_up = log.copy({"state": "failed", "received_at": old, "next_attempt_at": False})
        recent = log.copy({"state": "failed", "next_attempt_at": False})
        self.Log._gc_old_logs()
        self.assertEqual((waiting.exists(), given_up.exists(), recent.exists()), (waiting, self.Log, recent))


@tagged("post_install", "-at_install")
class TestInboxFloods(WhatsAppHttpCase):
    """A gateway in a reconnect loop posts the same connection update twice a second, for ever
    (a real Evolution API 2.3.6 whose instance cannot reach WhatsApp)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.evolution = cls._create_integration(
            "evolution", api_base_url="https://evo.example.com", external_id="odoo-loop", api_key="global-key"
        )
        cls.session = cls.env["vm.whatsapp.session"].create(
            {"integration_id": cls.evolution.id, "external_id": "odoo-loop", "state": "qr_ready"}
        )
        cls.Log = cls.env["vm.whatsapp.webhook.log"]

    def _connection_update(self, state, second):
        return payloads.evolution_connection("odoo-loop", state, f"2026-12-01T10:00:{second:02d}.000Z")

    def test_identical_connection_updates_are_stored_once_per_change_of_state(self):
        before = self.Log.search_count([])
        for second in range(40):
            response = self._post_signed(self.evolution, self._connection_update("connecting", second))
            self.assertEqual(response.status_code, 200)
        self.assertEqual(self.Log.search_count([]), before + 1, "40 identical updates, one row")
        log = self._last_log()
        self.assertEqual((log.repeat_count, log.state), (39, "processed"))
        self.assertTrue(log.last_repeat_at)
        # A change of state is stored and applied, then its repeats are counted again.
        self._post_signed(self.evolution, self._connection_update("open", 41))
        self._post_signed(self.evolution, self._connection_update("open", 42))
        self.assertEqual(self.Log.search_count([]), before + 2)
        self.assertEqual((self.session.state, self._last_log().repeat_count), ("connected", 1))
        self._post_signed(self.evolution, self._connection_update("connecting", 43))
        self.assertEqual(self.Log.search_count([]), before + 3, "connecting again after open is a change")

    def test_a_state_ignored_before_its_session_existed_is_tried_again(self):
        early = self._create_integration(
            "evolution", api_base_url="https://evo.example.com", external_id="odoo-early", api_key="k"
        )
        body = payloads.evolution_connection("odoo-early", "open", "2026-12-01T10:00:00.000Z")
        self._post_signed(early, body)
        self.assertEqual(self._last_log().state, "ignored", "no session yet")
        self._post_signed(early, payloads.evolution_connection("odoo-early", "open", "2026-12-01T10:00:01.000Z"))
        self.assertEqual(self._last_log().repeat_count, 1, "still no session: counted")
        session = self.env["vm.whatsapp.session"].create({"integration_id": early.id, "external_id": "odoo-early"})
        ignored = self._last_log()
        ignored.received_at = fields.Datetime.now() - timedelta(seconds=31)
        self._post_signed(early, payloads.evolution_connection("odoo-early", "open", "2026-12-01T10:00:02.000Z"))
        self.assertNotEqual(self._last_log(), ignored, "an ignored state is tried again after 30 s")
        self.assertEqual(self._last_log().state, "processed", "stored again and applied")
        self.assertEqual(session.state, "connected")

    def test_messages_are_never_collapsed(self):
        before = self.Log.search_count([])
        for i in range(3):
            body = payloads.evolution_text("odoo-loop", "5511987650000@s.whatsapp.net", "oi", f"LOOP-{i}")
            self._post_signed(self.evolution, body)
        self.assertEqual(self.Log.search_count([]), before + 3)


@tagged("post_install", "-at_install")
class TestInboxHandlers(WhatsAppHttpCase):
    def test_every_event_kind_has_one_handler_on_the_model_it_changes(self):
        kinds = {cls.kind for cls in events.WebhookEvent.__subclasses__()} - {"unknown"}
        self.assertEqual(kinds, set(HANDLERS), "a new kind of event is an event class and a handler")
        for model, method in HANDLERS.values():
            self.assertTrue(callable(getattr(self.env[model], method, None)), f"{model}.{method}")


class TestInboxWakeUp(WhatsAppHttpCase):
    def test_the_bell_wakes_the_cron_workers_on_one_kept_connection(self):
        """What the cron workers LISTEN to (cron_trigger on the postgres database) arrives, from one
        connection kept for every ring, and a connection that was lost is opened again."""
        _dbname, params = sql_db.connection_info_for("postgres")
        listener = psycopg2.connect(**params)
        listener.autocommit = True
        bell = CronBell()
        try:
            with listener.cursor() as cr:
                cr.execute("LISTEN cron_trigger")
            bell.ring(self.env.cr.dbname)
            first = bell._connection
            bell.ring(self.env.cr.dbname)
            self.assertIs(bell._connection, first, "no new connection for each ring")
            first.close()  # e.g. PostgreSQL restarted
            bell.ring("another_db")
            self.assertIsNot(bell._connection, first)
            payloads_ = []
            deadline = time.monotonic() + 5
            while len(payloads_) < 3 and time.monotonic() < deadline:
                select.select([listener], [], [], 0.1)
                listener.poll()
                payloads_ += [notify.payload for notify in listener.notifies if notify.channel == "cron_trigger"]
                listener.notifies.clear()
            self.assertEqual(payloads_, [self.env.cr.dbname, self.env.cr.dbname, "another_db"])
        finally:
            bell._close()
            listener.close()


class TestInboxBulkInsert(WhatsAppHttpCase):
    def test_fields_not_given_are_cached_as_the_database_holds_them(self):
        """insert_records caches the stored fields it was not given as create() does: a read of one
        of them costs no query, and gives what the database holds."""
        partner = self.env["res.partner"].create({"name": "Bulk"})
        Mail = self.env["mail.message"].sudo()
        given = {"model": "res.partner", "res_id": partner.id, "message_type": "comment", "body": "<p>x</p>"}
        record = insert_records(Mail, [given, dict(given, subject="second")])[0]
        not_given = ["subject", "parent_id", "mail_server_id", "author_guest_id", "pinned_at", "reply_to"]
        with self.assertQueryCount(0):
            cached = {name: record[name] for name in not_given}
        record.invalidate_recordset()
        self.assertEqual(cached, {name: record[name] for name in not_given})
        self.assertFalse(any(cached.values()), cached)

    def test_returning_contacts_of_a_batch_each_get_their_own_message_times(self):
        """The conversations a batch updates are written once per set of values: each one still
        gets the first and last times of its own messages, and its contact's name."""
        integration = self._create_integration(name="Times", external_id="sbx-times", state="connected")
        day = datetime(2026, 11, 2, 12, 0, 0)
        contacts = {"5511900001111": "Ana", "5511900002222": "Bia", "5511900003333": None}
        for phone in contacts:
            self._post_signed(integration, self._sandbox_message(integration, phone, "oi", timestamp=day))
        later = {  # phone -> times of its new messages, out of order; two contacts share their last
            "5511900001111": [day + timedelta(minutes=5), day + timedelta(minutes=9)],
            "5511900002222": [day + timedelta(minutes=7)],
            "5511900003333": [day + timedelta(minutes=9), day - timedelta(minutes=1)],
        }
        for phone, times in later.items():
            for at in times:
                name = contacts[phone] or "Caio"
                body = self._sandbox_message(integration, phone, "de novo", name=name, timestamp=at)
                self._post_signed(integration, body, process=False)
        received = self.env["vm.whatsapp.webhook.log"].search([("state", "=", "received")])
        self.assertEqual(len(received), 5)
        self.env["vm.whatsapp.inbox"]._apply(received)  # one batch, whatever their lanes
        self.assertEqual(set(received.mapped("state")), {"processed"})
        conversations = {c.contact_identity: c for c in integration.conversation_ids}
        got = {
            phone: (c.first_message_at, c.last_message_at, c.contact_name)
            for phone, c in ((p, conversations[p]) for p in contacts)
        }
        self.assertEqual(
            got,
            {
                "5511900001111": (day, day + timedelta(minutes=9), "Ana"),
                "5511900002222": (day, day + timedelta(minutes=7), "Bia"),
                "5511900003333": (day - timedelta(minutes=1), day + timedelta(minutes=9), "Caio"),
            },
        )
