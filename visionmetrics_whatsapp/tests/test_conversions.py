"""Conversions sent back to Meta (Conversions API for Business Messaging): what queues an event,
what is posted to the Graph API (mocked at the transport), retries, access and companies."""

import json
from datetime import timedelta
from unittest.mock import patch

import requests
from freezegun import freeze_time
from psycopg2.errors import UniqueViolation

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..models.vm_whatsapp_conversion import MAX_ATTEMPTS, retry_delay
from .common import WhatsAppCase
from .test_connect_flow import MockedHttpMixin

GRAPH = "https://graph.facebook.com/v21.0"
DATASET, WABA = "880011223344", "102290129340398"
CLID = "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4"
OK = {"events_received": 1, "messages": [], "fbtrace_id": "AbCdEf"}


@tagged("post_install", "-at_install")
class TestConversions(MockedHttpMixin, WhatsAppCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.salesman = cls._create_user("vm_conv_sales", cls.company_a, "sales_team.group_sale_salesman")
        cls.manager = cls._create_user(
            "vm_conv_admin",
            cls.company_a,
            "sales_team.group_sale_salesman,visionmetrics_whatsapp.group_whatsapp_manager",
        )
        cls.integration = cls._create_integration(
            "meta",
            external_id="106540352242922",
            api_key="EAAG-meta-token",
            meta_dataset_id=DATASET,
            meta_waba_id=WABA,
        )
        cls.team = cls.env["crm.team"].create({"name": "CTWA team", "company_id": cls.company_a.id})
        Stage = cls.env["crm.stage"]
        cls.stages = Stage.search(
            ["|", ("team_id", "=", False), ("team_id", "=", cls.team.id), ("fold", "=", False)], order="sequence, id"
        )
        cls.first_stage = cls.stages[0]
        cls.second_stage = cls.stages.filtered(lambda s: not s.is_won)[1]
        cls.third_stage = cls.stages.filtered(lambda s: not s.is_won)[2]

    def _lead(self, clid=CLID, integration=None, company=None, identity=None, **vals):
        company = company or self.company_a
        lead = self.env["crm.lead"].create(
            {
                "name": vals.pop("name", "CTWA lead"),
                "type": "opportunity",
                "user_id": self.salesman.id if company == self.company_a else False,
                "team_id": self.team.id if company == self.company_a else False,
                "company_id": company.id,
                "expected_revenue": 1234.5,
                "stage_id": self.first_stage.id,
                **vals,
            }
        )
        identity = identity or f"55119{lead.id:08d}"
        self._create_conversation(integration or self.integration, identity, lead_id=lead.id, ctwa_clid=clid)
        return lead

    def _conversions(self, lead):
        return self.env["vm.whatsapp.conversion"].search([("lead_id", "=", lead.id)], order="id")

    def _send(self):
        with patch.object(self.env.cr, "commit"):
            self.env["vm.whatsapp.conversion"]._cron_send()

    def _answer(self, dataset=DATASET, status=200, body=None, **kwargs):
        return self.http.add("POST", f"{GRAPH}/{dataset}/events", json=OK if body is None else body, status=status)

    def _posted(self):
        return [(call.request, json.loads(call.request.body)) for call in self.http.calls]

    # ------------------------------------------------------------------ what queues an event

    def test_winning_as_a_salesperson_sends_one_purchase_with_the_expected_revenue(self):
        lead = self._lead()
        self._answer()
        lead.with_user(self.salesman).action_set_won()
        conversions = self._conversions(lead)
        purchase = conversions.filtered(lambda c: c.event_name == "Purchase")
        self.assertEqual(len(purchase), 1)
        self.assertEqual(
            (purchase.state, purchase.value, purchase.currency_id), ("queued", 1234.5, lead.company_currency)
        )
        self.assertEqual(purchase.ctwa_clid, CLID)
        self._send()
        self.assertEqual(set(conversions.mapped("state")), {"sent"})
        requests_by_event = {body["data"][0]["event_name"]: (request, body) for request, body in self._posted()}
        request, body = requests_by_event["Purchase"]
        self.assertEqual(request.url, f"{GRAPH}/{DATASET}/events")
        self.assertEqual(request.headers["Authorization"], "Bearer EAAG-meta-token")
        event = body["data"][0]
        self.assertEqual(
            {k: v for k, v in event.items() if k != "event_time"},
            {
                "event_name": "Purchase",
                "event_id": f"vm-lead-{lead.id}-Purchase",
                "action_source": "business_messaging",
                "messaging_channel": "whatsapp",
                "user_data": {"whatsapp_business_account_id": WABA, "ctwa_clid": CLID},
                "custom_data": {"value": 1234.5, "currency": lead.company_currency.name},
            },
        )
        self.assertAlmostEqual(event["event_time"], fields.Datetime.now().timestamp(), delta=120)
        self.assertEqual(json.loads(purchase.request_payload), body)
        self.assertEqual(json.loads(purchase.response), OK)
        self.assertTrue(purchase.sent_at)
        self.assertNotIn("EAAG-meta-token", purchase.request_payload + purchase.response)

        # won again (reopened, then won): nothing more is queued or posted
        lead.write({"stage_id": self.second_stage.id, "probability": 50})
        lead.with_user(self.salesman).action_set_won()
        self._send()
        self.assertEqual(self._conversions(lead), conversions)
        self.assertEqual(len(self.http.calls), len(conversions))

    def test_a_lead_won_from_the_first_stage_is_also_qualified(self):
        lead = self._lead()
        lead.action_set_won()
        self.assertEqual(sorted(self._conversions(lead).mapped("event_name")), ["LeadSubmitted", "Purchase"])

    def test_leaving_the_first_stage_sends_lead_submitted_once(self):
        lead = self._lead()
        lead.with_user(self.salesman).write({"stage_id": self.second_stage.id})
        conversion = self._conversions(lead)
        self.assertEqual(conversion.mapped("event_name"), ["LeadSubmitted"])
        self.assertFalse(conversion.value)
        self._answer()
        self._send()
        ((_request, body),) = self._posted()
        self.assertNotIn("custom_data", body["data"][0])
        self.assertEqual(body["data"][0]["event_name"], "LeadSubmitted")
        # back to the first stage and out again, or further on: still one
        lead.write({"stage_id": self.first_stage.id})
        lead.write({"stage_id": self.third_stage.id})
        self.assertEqual(self._conversions(lead), conversion)

    def test_moves_that_do_not_leave_the_first_stage_send_nothing(self):
        lead = self._lead(stage_id=self.second_stage.id)
        lead.write({"stage_id": self.third_stage.id})
        lead.write({"name": "renamed", "probability": 40})
        self.assertFalse(self._conversions(lead))

    def test_only_conversations_with_a_click_id_send(self):
        lead = self._lead(clid=False)
        lead.action_set_won()
        self.assertFalse(self._conversions(lead), "a lead without a click-to-WhatsApp click sends nothing")

    def test_integrations_without_a_dataset_or_with_the_event_off_send_nothing(self):
        no_dataset = self._create_integration("meta", external_id="1", name="no dataset")
        lead = self._lead(integration=no_dataset)
        lead.action_set_won()
        self.assertFalse(self._conversions(lead))

        self.integration.write({"meta_send_purchase": False})
        lead = self._lead()
        lead.action_set_won()
        self.assertEqual(self._conversions(lead).mapped("event_name"), ["LeadSubmitted"])

    def test_the_oldest_ctwa_conversation_of_the_lead_is_attributed(self):
        lead = self._lead()
        lead.whatsapp_conversation_ids.first_message_at = fields.Datetime.now()
        other = self._create_integration("meta", external_id="2", meta_dataset_id="42", name="second number")
        newer = self._create_conversation(other, "5511900000042", lead_id=lead.id, ctwa_clid="NEWER")
        newer.first_message_at = fields.Datetime.now() + timedelta(hours=1)
        lead.action_set_won()
        self.assertEqual(set(self._conversions(lead).mapped("ctwa_clid")), {CLID})
        self.assertEqual(set(self._conversions(lead).integration_id.ids), {self.integration.id})

    def test_one_row_per_lead_and_event_even_when_queued_twice(self):
        lead = self._lead()
        Conversion = self.env["vm.whatsapp.conversion"].sudo()
        first = Conversion._enqueue({"Purchase": lead})
        self.assertEqual(len(first), 1)
        self.assertFalse(Conversion._enqueue({"Purchase": lead}))
        with self.assertRaises(UniqueViolation), mute_logger("odoo.sql_db"), self.env.cr.savepoint():
            Conversion.create({**first.copy_data()[0], "lead_id": lead.id})
            self.env.flush_all()

    def test_queueing_is_set_based(self):
        """What a lead write adds to queue its events costs the same queries for 2 leads as for 20."""
        Lead = type(self.env["crm.lead"])
        original = Lead._vm_queue_conversions
        counts = []

        def counting(leads, before):
            start = leads.env.cr.sql_log_count
            original(leads, before)
            leads.env.flush_all()
            counts.append(leads.env.cr.sql_log_count - start)

        for count in (1, 2, 20):  # the first one warms the caches up (xmlids of the cron, the stages)
            leads = self.env["crm.lead"].union(*(self._lead(name=f"lead {i}") for i in range(count)))
            self.env.invalidate_all()
            with patch.object(Lead, "_vm_queue_conversions", counting):
                leads.action_set_won()
            self.assertEqual(len(self.env["vm.whatsapp.conversion"].search([("lead_id", "in", leads.ids)])), 2 * count)
        self.assertEqual(counts[1], counts[2], f"queries to queue the events of 1, 2 and 20 leads: {counts}")

    # ------------------------------------------------------------------ sending

    def test_transient_errors_are_retried_with_a_growing_delay(self):
        lead = self._lead()
        self.integration.meta_send_lead_submitted = False
        lead.action_set_won()
        conversion = self._conversions(lead)
        self.http.add("POST", f"{GRAPH}/{DATASET}/events", json={"error": {"message": "down", "code": 2}}, status=503)
        self.http.add("POST", f"{GRAPH}/{DATASET}/events", status=429, json={"error": {"message": "slow", "code": 4}})
        self.http.add("POST", f"{GRAPH}/{DATASET}/events", body=requests.Timeout())
        self.http.add(
            "POST", f"{GRAPH}/{DATASET}/events", status=400, json={"error": {"message": "rate", "code": 80004}}
        )
        self._answer()
        start = fields.Datetime.now()
        for attempt in range(1, 5):
            with freeze_time(start + timedelta(hours=attempt)):
                self._send()
                self.assertEqual((conversion.state, conversion.attempt_count), ("queued", attempt))
                self.assertEqual(conversion.next_attempt_at, fields.Datetime.now() + retry_delay(attempt))
                self._send()  # not due yet: not posted again
                self.assertEqual(len(self.http.calls), attempt)
        self.assertIn("HTTP 400", conversion.error)
        self.assertIn("80004", conversion.response)
        with freeze_time(start + timedelta(hours=6)):
            self._send()
        self.assertEqual((conversion.state, conversion.attempt_count, conversion.next_attempt_at), ("sent", 5, False))
        self.assertEqual([retry_delay(n) for n in (1, 2, 3)], [timedelta(minutes=m) for m in (1, 2, 4)])
        self.assertEqual(retry_delay(30), timedelta(hours=6))

    def test_permanent_errors_fail_at_once_and_retry_queues_again(self):
        lead = self._lead()
        self.integration.meta_send_lead_submitted = False
        lead.action_set_won()
        conversion = self._conversions(lead)
        error = {
            "error": {"message": "Invalid parameter", "type": "OAuthException", "code": 100, "error_subcode": 2804066}
        }
        self.http.add("POST", f"{GRAPH}/{DATASET}/events", status=400, json=error)
        self._send()
        self.assertEqual((conversion.state, conversion.attempt_count, conversion.next_attempt_at), ("failed", 1, False))
        self.assertIn("Invalid parameter", conversion.error)
        self.assertEqual(json.loads(conversion.response), error)
        with self.assertRaises(AccessError):
            conversion.with_user(self.salesman).action_retry()
        conversion.with_user(self.manager).action_retry()
        self.assertEqual((conversion.state, conversion.attempt_count), ("queued", 0))
        self.http.replace("POST", f"{GRAPH}/{DATASET}/events", json=OK)
        self._send()
        self.assertEqual(conversion.state, "sent")

    def test_retries_stop_after_the_last_attempt(self):
        lead = self._lead()
        self.integration.meta_send_lead_submitted = False
        lead.action_set_won()
        conversion = self._conversions(lead)
        conversion.sudo().attempt_count = MAX_ATTEMPTS - 1
        self.http.add("POST", f"{GRAPH}/{DATASET}/events", status=500, json={"error": {"message": "boom"}})
        self._send()
        self.assertEqual((conversion.state, conversion.attempt_count), ("failed", MAX_ATTEMPTS))

    def test_a_cron_run_stops_when_meta_keeps_failing(self):
        leads = self._lead(name="a") | self._lead(name="b") | self._lead(name="c") | self._lead(name="d")
        leads.write({"stage_id": self.second_stage.id})
        self.http.add("POST", f"{GRAPH}/{DATASET}/events", status=503, json={"error": {"message": "down"}})
        self._send()
        self.assertEqual(len(self.http.calls), 3, "3 transient failures in a row end the run")
        states = self.env["vm.whatsapp.conversion"].search([("lead_id", "in", leads.ids)]).mapped("attempt_count")
        self.assertEqual(sorted(states), [0, 1, 1, 1])

    def test_an_answer_without_events_received_is_not_sent(self):
        lead = self._lead()
        self.integration.meta_send_lead_submitted = False
        lead.action_set_won()
        self._answer(body={"events_received": 0, "messages": ["dropped"]})
        self._send()
        conversion = self._conversions(lead)
        self.assertEqual(conversion.state, "failed")
        self.assertIn("dropped", conversion.response)

    def test_test_event_code_and_missing_dataset(self):
        self.integration.meta_test_event_code = "TEST123"
        lead = self._lead()
        lead.action_set_won()
        self._answer()
        self._send()
        self.assertEqual({body.get("test_event_code") for _r, body in self._posted()}, {"TEST123"})
        # dataset removed after queueing: a clear permanent error, nothing posted
        lead2 = self._lead()
        lead2.write({"stage_id": self.second_stage.id})
        self.integration.meta_dataset_id = False
        self._send()
        self.assertEqual(self._conversions(lead2).state, "failed")
        self.assertIn("dataset ID", self._conversions(lead2).error)

    def test_360dialog_sends_with_its_conversions_token_to_meta(self):
        d360 = self._create_integration("dialog360", external_id="3", api_key="d360-key", meta_dataset_id="77")
        lead = self._lead(integration=d360)
        lead.write({"stage_id": self.second_stage.id})
        self._send()
        conversion = self._conversions(lead)
        self.assertEqual(conversion.state, "failed", "no Meta token: the D360 key is never sent to Meta")
        self.assertIn("Conversions API token", conversion.error)
        self.assertFalse(self.http.calls)
        d360.meta_conversions_token = "EAAG-system-user"
        conversion.action_retry()
        self._answer(dataset="77")
        self._send()
        self.assertEqual(conversion.state, "sent")
        ((request, _body),) = self._posted()
        self.assertEqual(request.headers["Authorization"], "Bearer EAAG-system-user")
        self.assertNotIn("d360-key", json.dumps(dict(request.headers)))

    def test_api_url_of_the_meta_integration_is_used(self):
        self.integration.api_base_url = "https://graph.example.test/v22.0"
        lead = self._lead()
        lead.write({"stage_id": self.second_stage.id})
        self.http.add("POST", f"https://graph.example.test/v22.0/{DATASET}/events", json=OK)
        self._send()
        self.assertEqual(self._conversions(lead).state, "sent")

    def test_send_now_sends_the_queued_events_and_skips_the_others(self):
        lead = self._lead()
        lead.action_set_won()
        conversions = self._conversions(lead)
        conversions.sudo().write({"next_attempt_at": fields.Datetime.now() + timedelta(days=1)})
        self._send()
        self.assertFalse(self.http.calls, "not due: the cron leaves them")
        self._answer()
        with self.assertRaises(AccessError):
            conversions.with_user(self.salesman).action_send_now()
        result = conversions.with_user(self.manager).action_send_now()
        self.assertEqual(result["params"]["type"], "success")
        self.assertEqual(set(conversions.mapped("state")), {"sent"})
        conversions.with_user(self.manager).action_send_now()  # sent ones are not posted again
        self.assertEqual(len(self.http.calls), 2)

    # ------------------------------------------------------------------ dataset, settings, access

    def test_the_dataset_button_asks_meta_for_the_waba_dataset(self):
        integration = self._create_integration("meta", external_id="4", api_key="EAAG-2", meta_waba_id=WABA)
        self.http.add("POST", f"{GRAPH}/{WABA}/dataset", json={"id": "1234567890"})
        integration.with_user(self.manager).action_create_meta_dataset()
        self.assertEqual(integration.meta_dataset_id, "1234567890")
        (call,) = self.http.calls
        self.assertEqual(
            json.loads(call.request.body)["dataset_name"], f"{self.company_a.name} WhatsApp (meta integration)"
        )
        self.assertEqual(call.request.headers["Authorization"], "Bearer EAAG-2")

        self.http.replace(
            "POST", f"{GRAPH}/{WABA}/dataset", status=403, json={"error": {"message": "no permission", "code": 200}}
        )
        with self.assertRaisesRegex(UserError, "no permission"):
            integration.action_create_meta_dataset()
        with self.assertRaises(AccessError):
            integration.with_user(self.salesman).action_create_meta_dataset()
        integration.meta_waba_id = False
        with self.assertRaisesRegex(UserError, "WhatsApp Business Account ID"):
            integration.action_create_meta_dataset()

    def test_dataset_ids_are_digits_and_only_for_meta_providers(self):
        with self.assertRaises(ValidationError):
            self.integration.meta_dataset_id = "12; DROP"
        with self.assertRaises(ValidationError):
            self._create_integration("sandbox", meta_dataset_id="123")

    def test_salespeople_read_their_leads_log_but_never_the_settings_or_token(self):
        lead = self._lead()
        lead.with_user(self.salesman).action_set_won()
        as_sales = lead.with_user(self.salesman)
        self.assertEqual(len(as_sales.whatsapp_conversion_ids), 2)
        with self.assertRaises(AccessError):
            as_sales.whatsapp_conversion_ids[0].write({"state": "sent"})
        with self.assertRaises(AccessError):
            self.integration.with_user(self.salesman).read(["meta_dataset_id"])
        self.integration.meta_conversions_token = "EAAG-secret-token"
        self.integration.invalidate_recordset()
        self.assertFalse(self.integration.meta_conversions_token, "write-only")
        self.assertTrue(self.integration.meta_conversions_token_set)
        row = self._raw_row(self.integration)
        self.assertNotIn("EAAG-secret-token", json.dumps(row, default=str))
        with self.assertRaises(AccessError):
            self.integration.with_user(self.manager).read(["meta_conversions_token_encrypted"])

    def test_companies_are_isolated(self):
        integration_b = self._create_integration(
            "meta", company=self.company_b, external_id="5", api_key="EAAG-b", meta_dataset_id="55"
        )
        lead_b = self._lead(integration=integration_b, company=self.company_b, stage_id=self.first_stage.id)
        lead_a = self._lead()
        (lead_a | lead_b).action_set_won()
        conversion_b = self._conversions(lead_b).filtered(lambda c: c.event_name == "Purchase")
        self.assertEqual(conversion_b.company_id, self.company_b)
        self.assertEqual(conversion_b.currency_id, self.company_b.currency_id)
        self._answer()
        self._answer(dataset="55")
        self._send()
        tokens = {r.url.split("/")[-2]: r.headers["Authorization"] for r, _b in self._posted()}
        self.assertEqual(tokens, {DATASET: "Bearer EAAG-meta-token", "55": "Bearer EAAG-b"})
        Conversion = self.env["vm.whatsapp.conversion"]
        self.assertFalse(Conversion.with_user(self.manager).search([("company_id", "=", self.company_b.id)]))
        with self.assertRaises(AccessError):
            conversion_b.with_user(self.manager).action_retry()
        with self.assertRaises(AccessError):
            conversion_b.with_user(self.manager).read(["error"])
