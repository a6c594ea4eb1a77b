import threading
import time

from odoo import SUPERUSER_ID, api
from odoo.addons.bus.models.bus import channel_with_db, dispatch, hashable
from odoo.addons.bus.tests.common import WebsocketCase
from odoo.tests import tagged

from . import payloads
from .common import WhatsAppHttpCase, process_inbox

SALES = "sales_team.group_sale_salesman"
CUSTOMER = "5511987651234"


@tagged("post_install", "-at_install")
class TestChatTour(WebsocketCase, WhatsAppHttpCase):
    """The browser tour of the chat as a salesperson, with the websocket the web client uses; while
    it runs, a thread plays the customer and the provider: once the reply is queued it posts a
    signed inbound message and a `read` status through the real webhook route, and the inbox
    applies them."""

    def test_salesperson_works_a_conversation_from_the_lead(self):
        integration = self._create_integration(name="Loja Tour", external_id="sbx-tour", state="connected")
        seller = self._create_user("vm_tour_seller", self.company_a, SALES)
        lead = self.env["crm.lead"].create({"name": "Tour lead", "user_id": seller.id, "company_id": self.company_a.id})
        body = self._sandbox_message(integration, CUSTOMER, "Quanto custa o sofá?", name="Ana")
        self._post_signed(integration, body)
        conversation = integration.conversation_ids
        conversation.write({"lead_id": lead.id, "attribution": "manual"})
        self.assertEqual(conversation.message_ids.mail_message_ids.vm_whatsapp_message_id.body, "Quanto custa o sofá?")

        self._logged_in = threading.Event()
        customer = threading.Thread(target=self._customer_answers, args=(integration.id, conversation.id))
        customer.start()
        try:
            self.start_tour(f"/odoo/crm/{lead.id}", "vm_whatsapp_chat_tour", login="vm_tour_seller")
        finally:
            self._stop = True
            customer.join(30)
        reply = conversation.message_ids.filtered(lambda m: m.direction == "outbound")
        self.assertEqual((reply.body, reply.author_id, reply.status), ("Bom dia! Custa R$ 1.200🙂", seller, "read"))
        self.assertEqual(len(conversation.message_ids), 3)

    def authenticate(self, user, password, browser=None):
        session = super().authenticate(user, password, browser)
        if user and hasattr(self, "_logged_in"):
            self._logged_in.set()
        return session

    def _customer_answers(self, integration_id, conversation_id):
        """Wait for the reply, then post the customer's answer and the reply's `read` status.

        Not before the tour has logged in: HttpCase.authenticate computes the session token on the
        test cursor without the test lock, and a query of this thread on that same cursor meanwhile
        can hand it another query's row count (a wrong token: the browser lands on the login page,
        as it did once in CI)."""
        self._stop = False
        self._logged_in.wait(60)
        deadline = time.time() + 60
        while not self._stop and time.time() < deadline:
            with self.registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                reply = env["vm.whatsapp.message"].search(
                    [("conversation_id", "=", conversation_id), ("direction", "=", "outbound")]
                )
                if reply:
                    integration = env["vm.whatsapp.integration"].browse(integration_id)
                    secret, token = integration._get_secret("webhook_secret"), integration.webhook_token
                    provider = integration._get_provider()
                    bodies = [
                        self._sandbox_message(integration, CUSTOMER, "Fechado, pode mandar o link", name="Ana"),
                        provider.build_status_payload(integration.external_id, reply.external_id, "read"),
                    ]
                    break
            time.sleep(0.5)
        else:
            return
        for body in bodies:
            time.sleep(1)
            url = f"/vm_whatsapp/webhook/sandbox/{token}"
            headers = {"Content-Type": "application/json", **payloads.sign("sandbox", secret, body)}
            self.url_open(url, data=body, headers=headers)
            with self.registry.cursor() as cr:
                process_inbox(api.Environment(cr, SUPERUSER_ID, {}))
            self._wake_websockets(conversation_id)

    def _wake_websockets(self, conversation_id):
        """What Odoo's NOTIFY does after a commit, which tests cannot (see WebsocketCase)."""
        conversation = self.env["vm.whatsapp.conversation"].browse(conversation_id)  # no query: a channel key
        channel = hashable(channel_with_db(self.registry.db_name, conversation))
        for websocket in set(dispatch._channels_to_ws.get(channel, [])):
            websocket.trigger_notification_dispatching()
