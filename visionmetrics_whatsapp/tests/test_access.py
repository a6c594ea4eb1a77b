"""Who may do what (README, Access rights), attacked as a salesperson and as the WhatsApp
administrator of company A: through the ORM with with_user(), and over JSON-RPC as the web client
(or a script with the user's session) would call the server."""

import base64
import json
from unittest.mock import patch

from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tools import config, mute_logger

from ..providers.sandbox import SandboxProvider
from ..tools import crypto
from .common import TEST_KEY, TEST_KEY_PREVIOUS, WhatsAppCase, WhatsAppHttpCase

SALES = "sales_team.group_sale_salesman"
MANAGER = "visionmetrics_whatsapp.group_whatsapp_manager"
# Technical features: in debug mode, Odoo's own record-rule errors then list the records refused.
NO_ONE = "base.group_no_one"
B_NAME = "Company B private number"
B_EVENT = "Company B private event"
QR_PAYLOAD = "2@company-a-qr-payload"
PAIRING_CODE = "WXYZ-1234"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n company A QR")
INTEGRATION_ACTIONS = ("action_connect", "action_disconnect", "action_test_connection", "action_send_test_message")
SETTINGS_ACTIONS = (
    "action_vm_whatsapp_manage",
    "action_vm_whatsapp_connect",
    "action_vm_whatsapp_test_key",
    "action_vm_whatsapp_reencrypt",
)


class AccessFixtures:
    """Company A: a sandbox integration waiting for its QR scan, a conversation, a message and the
    webhook log it came from; company B: an integration and a log whose names must never reach A."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.integration_a = cls._create_integration(name="Company A number", external_id="sbx-a-instance")
        cls.session_a = cls.env["vm.whatsapp.session"].create(
            {
                "integration_id": cls.integration_a.id,
                "external_id": "sbx-a-session",
                "state": "qr_ready",
                "qr_code": QR_PAYLOAD,
                "qr_image": PNG,
                "pairing_code": PAIRING_CODE,
            }
        )
        cls.integration_b = cls._create_integration(company=cls.company_b, name=B_NAME)
        cls.log_a = cls._create_log(cls.integration_a, "message")
        cls.log_b = cls._create_log(cls.integration_b, B_EVENT)
        cls.conversation_a = cls._create_conversation(cls.integration_a)
        cls.message_a = cls._create_message(cls.conversation_a, "MSG-A", webhook_log_id=cls.log_a.id)
        cls.salesperson_a = cls._create_user("vm_sales_a", cls.company_a, SALES)
        cls.admin_a = cls._create_user("vm_admin_a", cls.company_a, f"{SALES},{MANAGER},{NO_ONE}")
        cls.sysadmin_a = cls._create_user("vm_sysadmin_a", cls.company_a, f"base.group_system,{NO_ONE}")

    @classmethod
    def _create_log(cls, integration, event_type):
        return cls.env["vm.whatsapp.webhook.log"].create(
            {
                "integration_id": integration.id,
                "company_id": integration.company_id.id,
                "event_type": event_type,
                "signature": "valid",
                "state": "failed",
                "remote_addr": "203.0.113.7",
                "headers": json.dumps({"User-Agent": "provider"}),
                "payload": '{"event": "message"}',
            }
        )


@tagged("post_install", "-at_install")
class TestAccess(AccessFixtures, WhatsAppCase):
    def _assert_refused(self, call, *names):
        """``call()`` raises an AccessError that names none of ``names`` (another company's
        records) and returns it."""
        with self.assertRaises(AccessError) as caught, mute_logger("odoo.addons.base.models.ir_rule"):
            call()
        for name in (B_NAME, B_EVENT, *names):
            self.assertNotIn(name, str(caught.exception))
        return caught.exception

    # ------------------------------------------------------------------ integrations

    def test_salesperson_cannot_test_a_connection(self):
        # The server would call the provider with the integration's API key.
        with patch.object(SandboxProvider, "check_connection", return_value="reachable") as check:
            self._assert_refused(self.integration_a.with_user(self.salesperson_a).action_test_connection)
            check.assert_not_called()
            action = self.integration_a.with_user(self.admin_a).action_test_connection()
        self.assertEqual(action["params"]["message"], "reachable")
        check.assert_called_once()

    def test_salesperson_cannot_connect_disconnect_or_send_the_test_message(self):
        integration = self.integration_a.with_user(self.salesperson_a)
        with patch("requests.post") as post:
            for method in INTEGRATION_ACTIONS:
                with self.subTest(method=method):
                    self._assert_refused(getattr(integration, method))
        post.assert_not_called()
        self.assertEqual(self.integration_a.session_ids, self.session_a, "no session was started")

    def test_admin_of_company_a_acts_on_no_integration_of_company_b(self):
        integration = self.integration_b.with_user(self.admin_a)
        with (
            patch.object(SandboxProvider, "check_connection") as check,
            patch.object(SandboxProvider, "close_session") as close,
            patch("requests.post") as post,
        ):
            for method in INTEGRATION_ACTIONS:
                with self.subTest(method=method):
                    self._assert_refused(getattr(integration, method))
        for provider_call in (check, close, post):
            provider_call.assert_not_called()
        self.assertFalse(self.integration_b.session_ids)

    def test_a_relation_to_another_company_is_refused_without_naming_it(self):
        """Odoo's own company check lists the records' names: company B's integration name
        would reach company A's administrator."""
        Link = self.env["vm.whatsapp.link"].with_user(self.admin_a)
        with self.assertRaises(AccessError) as refused:
            Link.create({"name": "steal", "integration_id": self.integration_b.id, "phone_number": "+5511912345670"})
        self.assertNotIn(B_NAME, str(refused.exception))
        link = Link.create({"name": "ours", "integration_id": self.integration_a.id, "phone_number": "+5511912345671"})
        with self.assertRaises(AccessError) as refused:
            link.write({"integration_id": self.integration_b.id})
        self.assertNotIn(B_NAME, str(refused.exception))

    def test_qr_code_actions_are_for_readers_of_the_link(self):
        link_b = self.env["vm.whatsapp.link"].create(
            {"name": "B", "integration_id": self.integration_b.id, "company_id": self.company_b.id,
             "phone_number": "+5511912345672"}
        )  # fmt: skip
        for method in ("action_download_qr_png", "action_download_qr_svg"):
            with self.subTest(method=method):
                self._assert_refused(getattr(link_b.with_user(self.salesperson_a), method))

    def test_connect_wizard_cannot_point_at_another_company(self):
        # Its related fields (webhook URL and token, state, provider messages) are read as superuser.
        Wizard = self.env["vm.whatsapp.connect.wizard"].with_user(self.admin_a)
        self._assert_refused(lambda: Wizard.create({"integration_id": self.integration_b.id}))
        session_b = self.env["vm.whatsapp.session"].create({"integration_id": self.integration_b.id})
        wizard = Wizard.create({"integration_id": self.integration_a.id, "session_id": self.session_a.id})
        self._assert_refused(lambda: wizard.write({"integration_id": self.integration_b.id}))
        self._assert_refused(lambda: wizard.write({"session_id": session_b.id}))
        self._assert_refused(
            lambda: Wizard.create({"integration_id": self.integration_a.id, "session_id": session_b.id})
        )
        self.assertEqual(wizard.action_poll()["state"], "qr_ready", "its own company's wizard works")

    def test_admin_reads_no_connect_wizard_of_another_user(self):
        # A wizard shows its integration's webhook URL and token (related fields read as superuser).
        wizard_b = self.env["vm.whatsapp.connect.wizard"].create({"integration_id": self.integration_b.id})
        Wizard = self.env["vm.whatsapp.connect.wizard"].with_user(self.admin_a)
        self.assertFalse(Wizard.search([]))
        self._assert_refused(lambda: wizard_b.with_user(self.admin_a).read(["webhook_url", "webhook_token"]))
        own = Wizard.create({"integration_id": self.integration_a.id})
        self.assertEqual(Wizard.search([]), own)
        self.assertIn(self.integration_a.webhook_token, own.webhook_url)

    def test_salesperson_cannot_poll_or_retry_a_connection(self):
        wizard = self.env["vm.whatsapp.connect.wizard"].create(
            {"integration_id": self.integration_a.id, "session_id": self.session_a.id}
        )
        for method in ("action_poll", "action_retry"):
            with self.subTest(method=method):
                self._assert_refused(getattr(wizard.with_user(self.salesperson_a), method))

    # ------------------------------------------------------------------ Settings

    def test_settings_actions_are_for_whatsapp_administrators(self):
        # An empty recordset, as a JSON-RPC call with no ids makes it: no Settings record needed.
        settings = self.env["res.config.settings"].with_user(self.salesperson_a).browse()
        for method in SETTINGS_ACTIONS:
            with self.subTest(method=method):
                self._assert_refused(getattr(settings, method))
        settings = self.env["res.config.settings"].with_user(self.admin_a).browse()
        self.assertEqual(settings.action_vm_whatsapp_test_key()["params"]["type"], "success")
        self._assert_refused(settings.action_vm_whatsapp_reencrypt)  # secrets: Settings administrators

    def test_reencryption_names_only_the_integrations_the_user_can_read(self):
        lost_key = "cd" * 32
        with patch.dict(config.options, {"integrations_key": lost_key}):
            lost_a = self._create_integration("meta", name="Lost A", external_id="1", api_key="token-a")
            self._create_integration("meta", company=self.company_b, name="Lost B1", external_id="2", api_key="b")
            self._create_integration("meta", company=self.company_b, name="Lost B2", external_id="3", api_key="b")
        with patch.dict(config.options, {"integrations_key": TEST_KEY_PREVIOUS}):
            old_b = self._create_integration("meta", company=self.company_b, name="Old B", external_id="4", api_key="b")
        settings = self.env["res.config.settings"].with_user(self.sysadmin_a).browse()
        with patch.dict(config.options, {"integrations_key": TEST_KEY, "integrations_key_previous": TEST_KEY_PREVIOUS}):
            message = settings.action_vm_whatsapp_reencrypt()["params"]["message"]
            # the key is the server's: every company's secrets move to the current key
            self.assertEqual(old_b._get_secret("api_key"), "b")
        self.assertEqual(old_b.sudo().api_key_encrypted.split(":")[1], crypto.key_id(crypto.parse_key(TEST_KEY)))
        self.assertIn(lost_a.name, message)
        for name in ("Lost B1", "Lost B2", "Old B", B_NAME):
            self.assertNotIn(name, message)
        self.assertIn("2 integrations of other companies", message)

    # ------------------------------------------------------------------ what salespeople read

    def test_salesperson_reads_no_webhook_log(self):
        Log = self.env["vm.whatsapp.webhook.log"].with_user(self.salesperson_a)
        self._assert_refused(lambda: Log.search([]))
        self._assert_refused(lambda: self.log_a.with_user(self.salesperson_a).read(["payload", "headers"]))
        message = self.message_a.with_user(self.salesperson_a)
        self._assert_refused(lambda: message.read(["webhook_log_id"]))
        self.assertEqual(message.read(["body"])[0]["body"], "hello", "the message itself stays readable")
        self.assertNotIn("webhook_log_id", message.read()[0], "nor among all the fields of a message")
        self.assertEqual(self.conversation_a.with_user(self.salesperson_a).message_ids, self.message_a)
        self.assertEqual(Log.with_user(self.admin_a).search([]), self.log_a, "admins read their company's logs")

    def test_salesperson_reads_no_qr_code_pairing_code_or_scan_url(self):
        session = self.session_a.with_user(self.salesperson_a)
        # external_id: the sandbox's scan URL is <base URL>/vm_whatsapp/sandbox/<external_id>/scan
        for field_name in ("qr_code", "qr_image", "pairing_code", "external_id"):
            with self.subTest(field=field_name):
                self._assert_refused(lambda f=field_name: session.read([f]))
                self._assert_refused(lambda f=field_name: session.search_count([(f, "!=", False)]))
        values = session.read()[0]
        self.assertFalse({"qr_code", "qr_image", "pairing_code", "external_id"} & set(values))
        self.assertEqual(values["state"], "qr_ready", "the rest of the session stays readable")
        # a sandbox integration's id is its first session's until it connects
        self._assert_refused(lambda: self.integration_a.with_user(self.salesperson_a).read(["external_id"]))
        admin_values = self.session_a.with_user(self.admin_a).read(["qr_code", "pairing_code", "external_id"])[0]
        self.assertEqual((admin_values["qr_code"], admin_values["pairing_code"]), (QR_PAYLOAD, PAIRING_CODE))

    def test_reprocessing_needs_an_admin_of_the_log_company(self):
        self._assert_refused(self.log_a.with_user(self.salesperson_a).action_reprocess)
        self._assert_refused(self.log_b.with_user(self.admin_a).action_reprocess)
        self.assertEqual(self.log_b.state, "failed")

    def test_views_show_admin_actions_to_admins_only(self):
        form = self.env["vm.whatsapp.integration"].with_user(self.salesperson_a).get_views([(False, "form")])
        arch = form["views"]["form"]["arch"]
        for method in INTEGRATION_ACTIONS:
            self.assertNotIn(f'name="{method}"', arch)
        self.assertIn('name="action_view_conversations"', arch)
        menus = self.env["ir.ui.menu"].with_user(self.salesperson_a)._visible_menu_ids()
        for xmlid in ("vm_whatsapp_config_menu", "vm_whatsapp_webhook_log_menu"):
            self.assertNotIn(self.env.ref(f"visionmetrics_whatsapp.{xmlid}").id, menus)
        self.assertIn(self.env.ref("visionmetrics_whatsapp.vm_whatsapp_conversation_menu").id, menus)
        admin_menus = self.env["ir.ui.menu"].with_user(self.admin_a)._visible_menu_ids()
        self.assertIn(self.env.ref("visionmetrics_whatsapp.vm_whatsapp_webhook_log_menu").id, admin_menus)


@tagged("post_install", "-at_install")
class TestAccessRpc(AccessFixtures, WhatsAppHttpCase):
    """The same refusals over /web/dataset/call_kw, where any public method of a model the user
    can read is callable."""

    def _call_kw(self, model, method, args, kwargs=None):
        """The JSON-RPC answer of ``model.method(*args, **kwargs)``: its result, or its error."""
        params = {"model": model, "method": method, "args": args, "kwargs": kwargs or {}}
        body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": params})
        # debug mode: for users with technical features, Odoo's record-rule errors name the records
        url = "/web/dataset/call_kw?debug=1"
        with mute_logger("odoo.http", "odoo.addons.base.models.ir_rule"):
            response = self.url_open(url, data=body, headers={"Content-Type": "application/json"})
        self.assertEqual(response.status_code, 200)
        return response.json()

    def _assert_rpc_refused(self, model, method, args, kwargs=None):
        answer = self._call_kw(model, method, args, kwargs)
        self.assertEqual(answer.get("error", {}).get("data", {}).get("name"), "odoo.exceptions.AccessError", answer)
        for name in (B_NAME, B_EVENT, QR_PAYLOAD, PAIRING_CODE):
            self.assertNotIn(name, json.dumps(answer))

    def test_salesperson_is_refused_over_rpc(self):
        self.authenticate(self.salesperson_a.login, self.salesperson_a.login)
        with patch.object(SandboxProvider, "check_connection") as check:
            self._assert_rpc_refused("vm.whatsapp.integration", "action_test_connection", [[self.integration_a.id]])
        check.assert_not_called()
        self._assert_rpc_refused("vm.whatsapp.webhook.log", "search_read", [[]], {"fields": ["payload", "headers"]})
        self._assert_rpc_refused("vm.whatsapp.webhook.log", "read", [[self.log_a.id], ["remote_addr"]])
        for method in ("action_vm_whatsapp_test_key", "action_vm_whatsapp_reencrypt"):
            self._assert_rpc_refused("res.config.settings", method, [[]])
        self._assert_rpc_refused("vm.whatsapp.session", "read", [[self.session_a.id], ["qr_code", "pairing_code"]])
        self._assert_rpc_refused("vm.whatsapp.session", "web_search_read", [[]], {"specification": {"qr_image": {}}})
        # what a salesperson is for still works
        answer = self._call_kw("vm.whatsapp.conversation", "search_read", [[]], {"fields": ["contact_identity"]})
        self.assertEqual([r["id"] for r in answer["result"]], [self.conversation_a.id])

    def test_admin_of_company_a_learns_nothing_of_company_b_over_rpc(self):
        self.authenticate(self.admin_a.login, self.admin_a.login)
        for method in INTEGRATION_ACTIONS:
            with self.subTest(method=method):
                self._assert_rpc_refused("vm.whatsapp.integration", method, [[self.integration_b.id]])
        self._assert_rpc_refused("vm.whatsapp.webhook.log", "action_reprocess", [[self.log_b.id]])
        answer = self._call_kw("vm.whatsapp.integration", "action_test_connection", [[self.integration_a.id]])
        self.assertEqual(answer["result"]["params"]["type"], "success")

    def test_scan_url_names_nothing_once_used(self):
        # The scan route is public (the phone opens it); the session id in it is the credential.
        session = self.session_a
        session.write({"external_id": "sbx-a-unguessable-session-id"})
        first = self.url_open(f"/vm_whatsapp/sandbox/{session.external_id}/scan")
        self.assertIn("WhatsApp connected", first.text)
        self.assertIn(self.integration_a.name, first.text, "the phone that connects it is told where")
        again = self.url_open(f"/vm_whatsapp/sandbox/{session.external_id}/scan")
        self.assertEqual(again.status_code, 200)
        for secret in (self.integration_a.name, self.integration_a.phone_number):
            self.assertNotIn(secret, again.text)
