from psycopg2 import IntegrityError

from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import WhatsAppCase


@tagged("post_install", "-at_install")
class TestModels(WhatsAppCase):
    def test_webhook_token_is_random_unique_and_in_the_url(self):
        first = self._create_integration()
        second = self._create_integration()
        self.assertGreaterEqual(len(first.webhook_token), 40)
        self.assertNotEqual(first.webhook_token, second.webhook_token)
        self.assertTrue(first.webhook_url.endswith(f"/vm_whatsapp/webhook/sandbox/{first.webhook_token}"))
        with self.assertRaises(IntegrityError), mute_logger("odoo.sql_db"):
            second.webhook_token = first.webhook_token
            self.env.flush_all()

    def test_one_conversation_per_contact_and_integration(self):
        integration = self._create_integration()
        self._create_conversation(integration, "5511999990000@s.whatsapp.net")
        other = self._create_integration()
        self._create_conversation(other, "5511999990000@s.whatsapp.net")  # another integration: fine
        with self.assertRaises(IntegrityError), mute_logger("odoo.sql_db"):
            self._create_conversation(integration, "5511999990000@s.whatsapp.net")
            self.env.flush_all()

    def test_one_message_per_provider_id_and_integration(self):
        integration = self._create_integration()
        conversation = self._create_conversation(integration)
        message = self._create_message(conversation, "wamid.1")
        self.assertEqual(message.integration_id, integration)
        self.assertEqual(message.company_id, self.company_a)
        other_conversation = self._create_conversation(self._create_integration())
        self._create_message(other_conversation, "wamid.1")
        with self.assertRaises(IntegrityError), mute_logger("odoo.sql_db"):
            self._create_message(conversation, "wamid.1")
            self.env.flush_all()

    def test_deleting_an_integration_deletes_its_records(self):
        integration = self._create_integration()
        conversation = self._create_conversation(integration)
        message = self._create_message(conversation)
        session = self.env["vm.whatsapp.session"].create({"integration_id": integration.id})
        log = self.env["vm.whatsapp.webhook.log"].create({"integration_id": integration.id, "payload": "{}"})
        integration.unlink()
        self.env.flush_all()
        self.assertFalse(conversation.exists() or message.exists() or session.exists())
        self.assertTrue(log.exists(), "the webhook log is kept, as a record of what was received")
        self.assertFalse(log.integration_id)
        self.assertTrue(integration.browse().unlink(), "deleting no integration is fine")

    def test_a_company_with_webhook_logs_cannot_be_deleted(self):
        company = self.env["res.company"].create({"name": "Company with logs"})
        log = self.env["vm.whatsapp.webhook.log"].create({"company_id": company.id, "payload": "{}"})
        with self.assertRaisesRegex(UserError, "webhook logs"):
            company.unlink()
        log.unlink()
        company.unlink()
        self.assertFalse(company.exists())

    def test_children_follow_the_integration_company(self):
        integration = self._create_integration(company=self.company_b)
        conversation = self._create_conversation(integration)
        message = self._create_message(conversation)
        session = self.env["vm.whatsapp.session"].create({"integration_id": integration.id})
        self.assertEqual((conversation.company_id, message.company_id, session.company_id), (self.company_b,) * 3)
        integration.company_id = self.company_a
        self.assertEqual((conversation.company_id, message.company_id, session.company_id), (self.company_a,) * 3)
        self.assertEqual(message.integration_id, integration)

    def test_lead_of_another_company_is_refused(self):
        integration = self._create_integration(company=self.company_a)
        lead_b = self.env["crm.lead"].create({"name": "B lead", "company_id": self.company_b.id})
        with self.assertRaises(UserError):
            self._create_conversation(integration, lead_id=lead_b.id)

    def test_lookup_columns_are_indexed(self):
        expected = {
            ("crm_lead", "first_touch_token"),
            ("crm_lead", "phone_sanitized"),
            ("vm_whatsapp_conversation", "contact_phone"),
            ("vm_whatsapp_conversation", "vm_token"),
            ("vm_whatsapp_integration", "webhook_token"),
            ("vm_whatsapp_message", "integration_id"),  # leading column of the unique (integration, external id)
            ("vm_whatsapp_conversation", "integration_id"),  # leading column of the unique (integration, contact)
        }
        self.env.cr.execute(
            """
            SELECT t.relname, a.attname
              FROM pg_index i
              JOIN pg_class t ON t.oid = i.indrelid
              JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
             WHERE t.relname IN ('crm_lead', 'vm_whatsapp_conversation', 'vm_whatsapp_integration',
                                 'vm_whatsapp_message')
            """
        )
        self.assertLessEqual(expected, set(self.env.cr.fetchall()))

    def test_lead_smart_button_counts_messages(self):
        integration = self._create_integration()
        lead = self.env["crm.lead"].create({"name": "Lead", "first_touch_token": "abc-123"})
        conversation = self._create_conversation(integration, lead_id=lead.id)
        self._create_message(conversation, "m1")
        self._create_message(conversation, "m2")
        lead.invalidate_recordset()
        self.assertEqual(lead.whatsapp_message_count, 2)
        action = lead.action_view_whatsapp_conversations()
        self.assertEqual(action["res_id"], conversation.id)
