"""The conversation as a chat (issue 12, items 1-2): each WhatsApp message is mirrored by a
mail.message on its conversation's thread, set-based per inbox batch; the lead's salesperson
(else its sales team) gets one Discuss inbox notification per inbound message; unread counts;
the live bus notifications; who may see and do what."""

import json
from datetime import datetime, timedelta
from unittest.mock import patch

from odoo.addons.mail.tools.discuss import Store
from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from ..models.vm_whatsapp_inbox import InboxItem
from ..providers import events
from .common import WhatsAppCase, WhatsAppHttpCase

SALES = "sales_team.group_sale_salesman"
T0 = datetime(2026, 3, 2, 12, 0, 0)


class ChatFixtures:
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.integration = cls._create_integration(name="Loja A", external_id="sbx-chat-a", state="connected")
        cls.integration_b = cls._create_integration(company=cls.company_b, name="Loja B", external_id="sbx-chat-b")
        cls.seller = cls._create_user("vm_chat_seller", cls.company_a, SALES)
        cls.teammate = cls._create_user("vm_chat_teammate", cls.company_a, SALES)
        cls.seller_b = cls._create_user("vm_chat_seller_b", cls.company_b, SALES)
        cls.team = cls.env["crm.team"].create({"name": "WhatsApp team", "company_id": cls.company_a.id})
        cls.env["crm.team.member"].create(
            [{"crm_team_id": cls.team.id, "user_id": user.id} for user in (cls.seller, cls.teammate)]
        )

    def _event(self, identity="5511911112222", text="Olá", message_id=None, minutes=0, **kwargs):
        self._counter = getattr(self, "_counter", 0) + 1
        return events.InboundMessage(
            message_id=message_id or f"WA-{self._counter}-{identity}",
            contact_identity=identity,
            contact_phone=f"+{identity}",
            contact_name=kwargs.pop("contact_name", "Ana"),
            text=text,
            timestamp=T0 + timedelta(minutes=minutes),
            **kwargs,
        )

    def _apply(self, *evts, integration=None):
        items = [InboxItem(self.env["vm.whatsapp.webhook.log"], integration or self.integration, e) for e in evts]
        return self.env["vm.whatsapp.conversation"]._apply_message_events(items)

    def _commit_hooks(self):
        """What the commit runs before COMMIT: the thread updates, then the bus's INSERT."""
        self.env.cr.precommit.run()

    def setUp(self):
        super().setUp()
        self.env.cr.execute("SELECT COALESCE(MAX(id), 0) FROM bus_bus")
        self._bus_start = self.env.cr.fetchone()[0]

    def _bus(self, notification_type):
        """The bus notifications of a type sent since the test began."""
        return [
            (json.loads(bus.channel), json.loads(bus.message)["payload"])
            for bus in self.env["bus.bus"].sudo().search([("id", ">", self._bus_start)], order="id")
            if json.loads(bus.message)["type"] == notification_type
        ]


@tagged("post_install", "-at_install")
class TestChatMirror(ChatFixtures, WhatsAppCase):
    def test_each_message_is_mirrored_on_its_conversation_thread(self):
        self._apply(
            self._event(text="Quero um orçamento\n<b>já</b>", contact_name="Ana"),
            self._event(identity="5511933334444", text="Oi", contact_name="Bruno", minutes=1),
        )
        conversations = self.env["vm.whatsapp.conversation"].search([("integration_id", "=", self.integration.id)])
        self.assertEqual(len(conversations), 2)
        for conversation in conversations:
            message = conversation.message_ids
            mail = message.mail_message_ids
            self.assertEqual(len(mail), 1)
            self.assertEqual((mail.model, mail.res_id), (conversation._name, conversation.id))
            self.assertEqual(mail.message_type, "comment")
            self.assertEqual(mail.date, message.sent_at)
            self.assertEqual(mail.vm_whatsapp_message_id, message)
            self.assertEqual(mail.email_from, conversation.contact_name)
        ana = conversations.filtered(lambda c: c.contact_name == "Ana").message_ids.mail_message_ids
        # the thread shows the provider record's text, escaped, its lines kept
        [data] = Store(ana).get_result()["mail.message"]
        self.assertEqual(str(data["body"]), "<p>Quero um orçamento<br/>&lt;b&gt;já&lt;/b&gt;</p>")
        # no follower, no creation note: the thread holds the WhatsApp messages only
        self.assertFalse(conversations.message_follower_ids)
        self.assertEqual(
            self.env["mail.message"].search_count(
                [("model", "=", conversations._name), ("res_id", "in", conversations.ids)]
            ),
            2,
        )

    def test_one_mail_message_insert_per_batch(self):
        inserts = []
        execute = type(self.env.cr).execute

        def counting_execute(cr, query, params=None, log_exceptions=True):
            if str(getattr(query, "code", query)).startswith('INSERT INTO "mail_message"'):
                inserts.append(query)
            return execute(cr, query, params, log_exceptions)

        with patch.object(type(self.env.cr), "execute", counting_execute):
            self._apply(*(self._event(identity=f"55119000000{i:02d}") for i in range(20)))
        self.assertEqual(len(inserts), 1, "the batch's thread messages in one INSERT")
        messages = self.env["vm.whatsapp.message"].search([("integration_id", "=", self.integration.id)])
        self.assertEqual(len(messages), 20)
        self.assertEqual(len(messages.mail_message_ids), 20, "each message shown once in its thread")
        thread = self.env["mail.message"].search([("model", "=", "vm.whatsapp.conversation")])
        self.assertEqual(thread, messages.mail_message_ids, "what the threads read from the database")
        for message in messages:
            mirror = message.mail_message_ids
            self.assertEqual((mirror.res_id, mirror.date), (message.conversation_id.id, message.sent_at))
            self.assertEqual((mirror.message_type, mirror.subtype_id), ("comment", self.env.ref("mail.mt_comment")))

    def test_redelivery_is_not_mirrored_twice(self):
        event = self._event(message_id="WA-SAME")
        self._apply(event)
        self.assertEqual(self._apply(event), [("duplicate", False)])
        message = self.env["vm.whatsapp.message"].search([("external_id", "=", "WA-SAME")])
        self.assertEqual(len(message.mail_message_ids), 1)

    def test_media_downloaded_later_joins_the_thread_message(self):
        self._apply(self._event(text="", message_type="image", media={"id": "m1", "mimetype": "image/jpeg"}))
        message = self.env["vm.whatsapp.message"].search([("integration_id", "=", self.integration.id)])
        attachment = self.env["ir.attachment"].create(
            {"name": "photo.jpg", "raw": b"\xff\xd8\xff", "res_model": message._name, "res_id": message.id}
        )
        message.write({"attachment_id": attachment.id, "media_state": "done"})
        self.assertEqual(message.mail_message_ids.attachment_ids, attachment)

    def test_thread_data_of_a_failed_outbound_message(self):
        conversation = self._create_conversation(self.integration)
        message = self._create_message(
            conversation, "OUT-1", direction="outbound", status="failed", failure_reason="(#131026) Not on WhatsApp"
        )
        [data] = Store(message.mail_message_ids).get_result()["mail.message"]
        self.assertEqual(
            data["vm_whatsapp"],
            {
                "id": message.id,
                "direction": "outbound",
                "status": "failed",
                "message_type": "text",
                "failure_reason": "(#131026) Not on WhatsApp",
                "media_state": False,
                "location_url": False,
            },
        )

    def test_location_links_to_a_map(self):
        conversation = self._create_conversation(self.integration)
        message = self._create_message(conversation, "LOC-1", message_type="location", body="Av. Paulista, 1000")
        self.assertEqual(
            message._thread_data()["location_url"],
            "https://www.google.com/maps/search/?api=1&query=Av.%20Paulista%2C%201000",
        )

    def test_whatsapp_messages_cannot_be_edited_from_the_thread(self):
        conversation = self._create_conversation(self.integration)
        message = self._create_message(conversation, "IN-EDIT")
        with self.assertRaises(UserError):
            conversation._message_update_content(message.mail_message_ids, "changed")


@tagged("post_install", "-at_install")
class TestChatNotifications(ChatFixtures, WhatsAppCase):
    def _lead(self, **vals):
        vals = {"name": "Lead", "company_id": self.company_a.id, "user_id": False, "team_id": False, **vals}
        return self.env["crm.lead"].create(vals)

    def _conversation_with_lead(self, identity, **lead_vals):
        lead = self._lead(**lead_vals)
        conversation = self._create_conversation(
            self.integration, identity=identity, lead_id=lead.id, attribution="manual", contact_name="Ana"
        )
        return conversation

    def _notified(self, conversation):
        mails = conversation.message_ids.mail_message_ids
        return self.env["mail.notification"].search([("mail_message_id", "in", mails.ids)])

    def test_the_salesperson_is_notified_once_per_inbound_message(self):
        conversation = self._conversation_with_lead("5511955556666", user_id=self.seller.id, team_id=self.team.id)
        self._apply(*(self._event(identity="5511955556666", minutes=i) for i in range(3)))
        self._commit_hooks()
        notifications = self._notified(conversation)
        self.assertEqual(len(notifications), 3)
        self.assertEqual(notifications.res_partner_id, self.seller.partner_id)
        self.assertEqual(set(notifications.mapped("notification_type")), {"inbox"})
        # the Discuss inbox counter of the salesperson is told, message by message
        inbox = self._bus("mail.message/inbox")
        self.assertEqual(len(inbox), 3)
        self.assertTrue(all(channel[1:] == ["res.partner", self.seller.partner_id.id] for channel, _ in inbox))
        self.assertTrue(all(p["mail.message"][0]["needaction"] for _c, p in inbox))
        # unread for the salesperson only
        self.assertEqual(conversation.with_user(self.seller).message_needaction_counter, 3)
        conversation.invalidate_recordset(["message_needaction_counter"])  # computed for the user
        self.assertEqual(conversation.with_user(self.teammate).message_needaction_counter, 0)

    def test_the_team_is_notified_when_the_lead_has_no_salesperson(self):
        conversation = self._conversation_with_lead("5511977778888", team_id=self.team.id)
        # a team member who is not a WhatsApp user (no sales group) is not told
        employee = self._create_user("vm_chat_employee", self.company_a, "base.group_user")
        self.env["crm.team.member"].create({"crm_team_id": self.team.id, "user_id": employee.id})
        self._apply(self._event(identity="5511977778888"))
        self._commit_hooks()
        self.assertEqual(self._notified(conversation).res_partner_id, (self.seller | self.teammate).partner_id)

    def test_outbound_and_undone_messages_notify_nobody(self):
        conversation = self._conversation_with_lead("5511900001111", user_id=self.seller.id)
        self._create_message(conversation, "OUT-2", direction="outbound", status="pending")
        with self.assertRaises(ZeroDivisionError), self.env.cr.savepoint():
            self._apply(self._event(identity="5511900001111", message_id="UNDONE"))
            raise ZeroDivisionError  # the inbox undoes a failing batch (savepoint)
        self._commit_hooks()
        self.assertFalse(self._notified(conversation))
        self.assertFalse(self._bus("mail.message/inbox"))

    def test_unread_filter_and_opening_the_thread_clears_it(self):
        conversation = self._conversation_with_lead("5511922223333", user_id=self.seller.id)
        other = self._conversation_with_lead("5511944445555", user_id=self.seller.id)
        self._apply(self._event(identity="5511922223333"), self._event(identity="5511944445555"))
        self._commit_hooks()
        Conversation = self.env["vm.whatsapp.conversation"].with_user(self.seller)
        self.assertEqual(Conversation.search([("message_needaction", "=", True)]), conversation | other)
        # what /mail/thread/messages does when the thread opens: the fetched messages are done
        conversation.message_ids.mail_message_ids.with_user(self.seller).set_message_done()
        self.assertEqual(Conversation.search([("message_needaction", "=", True)]), other)
        self.assertEqual(
            Conversation.search([("message_needaction", "=", False), ("id", "in", (conversation | other).ids)]),
            conversation,
        )

    def test_my_conversations_filter(self):
        mine = self._conversation_with_lead("5511966660001", user_id=self.seller.id)
        team = self._conversation_with_lead("5511966660002", team_id=self.team.id)
        self._conversation_with_lead("5511966660003", user_id=self.teammate.id)
        action = self.env.ref("visionmetrics_whatsapp.vm_whatsapp_conversation_view_search")
        arch = action.arch
        self.assertIn('name="my_conversations"', arch)
        domain = [
            "|",
            ("lead_id.user_id", "=", self.seller.id),
            "&",
            ("lead_id.user_id", "=", False),
            ("lead_id.team_id.member_ids", "in", [self.seller.id]),
        ]
        self.assertEqual(self.env["vm.whatsapp.conversation"].with_user(self.seller).search(domain), mine | team)

    def test_list_sorted_by_last_message(self):
        old = self._conversation_with_lead("5511988880001")
        new = self._conversation_with_lead("5511988880002")
        self._apply(self._event(identity="5511988880002", minutes=1), self._event(identity="5511988880001", minutes=5))
        found = self.env["vm.whatsapp.conversation"].search([("id", "in", (old | new).ids)])
        self.assertEqual(found.ids, [old.id, new.id])

    def test_open_threads_get_new_messages_and_status_changes(self):
        conversation = self._conversation_with_lead("5511999990000", user_id=self.seller.id)
        self._apply(*(self._event(identity="5511999990000", minutes=i) for i in range(3)))
        self._commit_hooks()
        sent = self._bus("vm.whatsapp/thread")
        self.assertEqual(len(sent), 1, "one notification for the batch's messages of a conversation")
        [(channel, payload)] = sent
        self.assertEqual(channel[1:], [conversation._name, conversation.id])
        self.assertEqual(payload["thread_id"], conversation.id)
        self.assertEqual(sorted(payload["new_message_ids"]), sorted(conversation.message_ids.mail_message_ids.ids))
        self.assertEqual(payload["data"]["mail.message"], [], "new messages are fetched by the thread, ticks included")
        outbound = self._create_message(conversation, "OUT-3", direction="outbound", status="sent")
        self._commit_hooks()
        self.env.cr.execute("SELECT MAX(id) FROM bus_bus")
        self._bus_start = self.env.cr.fetchone()[0]
        outbound._apply_status("delivered")
        outbound._apply_status("read")
        self._commit_hooks()
        [(channel, payload)] = self._bus("vm.whatsapp/thread")  # the two changes sent together
        self.assertEqual(payload["new_message_ids"], [])
        [data] = payload["data"]["mail.message"]
        self.assertEqual((data["id"], data["vm_whatsapp"]["status"]), (outbound.mail_message_ids.id, "read"))


@tagged("post_install", "-at_install")
class TestChatRights(ChatFixtures, WhatsAppCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.conversation = cls._create_conversation(cls.integration, contact_name="Ana")
        cls.message = cls._create_message(cls.conversation, "IN-R1", body="segredo de A")
        cls.conversation_b = cls._create_conversation(cls.integration_b, contact_name="Bia")
        cls.message_b = cls._create_message(cls.conversation_b, "IN-RB", body="segredo de B")

    def test_a_salesperson_reads_the_threads_of_their_companies_only(self):
        Mail = self.env["mail.message"].with_user(self.seller)
        both = [
            ("model", "=", self.conversation._name),
            ("res_id", "in", (self.conversation | self.conversation_b).ids),
        ]
        self.assertEqual(Mail.search(both), self.message.mail_message_ids)
        with self.assertRaises(AccessError):
            self.message_b.mail_message_ids.with_user(self.seller).read(["body"])

    def test_bus_channel_of_another_company_is_refused(self):
        Ws = self.env["ir.websocket"].with_user(self.seller)
        channels = Ws._vm_whatsapp_channels(
            [
                "broadcast",
                f"vm.whatsapp.conversation_{self.conversation.id}",
                f"vm.whatsapp.conversation_{self.conversation_b.id}",
            ]
        )
        self.assertIn(self.conversation, channels)
        self.assertNotIn(self.conversation_b, channels)
        self.assertEqual([c for c in channels if isinstance(c, str)], ["broadcast"])

    def test_a_salesperson_replies_in_their_companies_only(self):
        message_id = self.conversation.with_user(self.seller).action_send_message("Bom dia 😀")
        message = self.env["vm.whatsapp.message"].browse(message_id)
        self.assertEqual((message.direction, message.status, message.author_id), ("outbound", "pending", self.seller))
        self.assertEqual(message.mail_message_ids.author_id, self.seller.partner_id)
        with self.assertRaises(AccessError):
            self.conversation_b.with_user(self.seller).action_send_message("oi")

    def test_only_the_files_the_user_can_open_are_sent(self):
        Attachment = self.env["ir.attachment"]
        mine = Attachment.with_user(self.seller).create(
            {"name": "a.pdf", "raw": b"%PDF", "res_model": "mail.compose.message", "res_id": 0}
        )
        other_company = Attachment.create(
            {"name": "b.pdf", "raw": b"%PDF", "res_model": self.conversation_b._name, "res_id": self.conversation_b.id}
        )
        with self.assertRaises(AccessError):
            self.conversation.with_user(self.seller).action_send_message("", [other_company.id])
        with self.assertRaises(AccessError):
            self.conversation.with_user(self.teammate).action_send_message("", [mine.id])
        message_id = self.conversation.with_user(self.seller).action_send_message("contrato", [mine.id])
        message = self.env["vm.whatsapp.message"].browse(message_id)
        self.assertEqual((message.message_type, message.attachment_id), ("document", mine))
        self.assertEqual(message.mail_message_ids.attachment_ids, mine)

    def test_a_refused_send_says_why(self):
        self.integration.state = "disconnected"
        with self.assertRaisesRegex(UserError, "not connected"):
            self.conversation.with_user(self.seller).action_send_message("oi")

    def test_retry_is_for_readers_of_the_conversation(self):
        failed_b = self._create_message(self.conversation_b, "OUT-B", direction="outbound", status="failed")
        with self.assertRaises(AccessError):
            failed_b.with_user(self.seller).action_retry()
        failed = self._create_message(self.conversation, "OUT-A", direction="outbound", status="failed")
        failed.with_user(self.seller).action_retry()
        self.assertEqual(failed.status, "pending")

    def test_no_credential_reaches_the_thread(self):
        self.integration.write({"api_key": "sk-secret-key-123", "webhook_secret": "whsec-456"})
        store = Store(self.conversation.with_user(self.seller), as_thread=True, request_list=["vm_whatsapp"])
        store.add(self.message.mail_message_ids.with_user(self.seller))
        dumped = json.dumps(store.get_result(), default=str)
        self.assertIn("Loja A", dumped)
        for secret in ("sk-secret-key-123", "whsec-456", self.integration.webhook_token):
            self.assertNotIn(secret, dumped)


@tagged("post_install", "-at_install")
class TestChatRoutes(ChatFixtures, WhatsAppHttpCase):
    def test_the_thread_route_gives_the_whatsapp_part_and_clears_unread(self):
        lead = self.env["crm.lead"].create({"name": "L", "user_id": self.seller.id, "company_id": self.company_a.id})
        conversation = self._create_conversation(self.integration, lead_id=lead.id, attribution="manual")
        self._apply(self._event(identity=conversation.contact_identity, text="Oi"))
        self._commit_hooks()
        self.assertEqual(conversation.with_user(self.seller).message_needaction_counter, 1)
        self.authenticate("vm_chat_seller", "vm_chat_seller")
        result = self.make_jsonrpc_request(
            "/mail/thread/messages", {"thread_model": conversation._name, "thread_id": conversation.id}
        )
        [data] = result["data"]["mail.message"]
        self.assertEqual(data["vm_whatsapp"]["direction"], "inbound")
        conversation.invalidate_recordset()
        self.assertEqual(conversation.with_user(self.seller).message_needaction_counter, 0)
        thread = self.make_jsonrpc_request(
            "/mail/thread/data",
            {"thread_model": conversation._name, "thread_id": conversation.id, "request_list": ["vm_whatsapp"]},
        )
        [values] = thread["mail.thread"]
        self.assertEqual(values["vm_whatsapp"]["can_send"], True)
