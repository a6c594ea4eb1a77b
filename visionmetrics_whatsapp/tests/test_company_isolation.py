from odoo.exceptions import AccessError
from odoo.tests import tagged

from .common import WhatsAppCase

USER = "visionmetrics_whatsapp.group_whatsapp_user"
MANAGER = "visionmetrics_whatsapp.group_whatsapp_manager"
MODELS = (
    "vm.whatsapp.integration",
    "vm.whatsapp.session",
    "vm.whatsapp.conversation",
    "vm.whatsapp.message",
    "vm.whatsapp.webhook.log",
)


@tagged("post_install", "-at_install")
class TestCompanyIsolation(WhatsAppCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.records = {}
        for company in (cls.company_a, cls.company_b):
            integration = cls._create_integration(company=company, name=f"WA {company.name}")
            conversation = cls._create_conversation(integration)
            cls.records[company] = {
                "vm.whatsapp.integration": integration,
                "vm.whatsapp.session": cls.env["vm.whatsapp.session"].create({"integration_id": integration.id}),
                "vm.whatsapp.conversation": conversation,
                "vm.whatsapp.message": cls._create_message(conversation, f"MSG-{company.id}"),
                "vm.whatsapp.webhook.log": cls.env["vm.whatsapp.webhook.log"].create(
                    {"integration_id": integration.id, "company_id": company.id, "payload": "{}"}
                ),
            }
        cls.user_a = cls._create_user("wa_user_a", cls.company_a, f"base.group_user,{USER}")
        cls.manager_a = cls._create_user("wa_manager_a", cls.company_a, f"base.group_user,{MANAGER}")

    def test_user_of_company_a_sees_none_of_company_b(self):
        # webhook logs are for administrators only (test_access)
        for user, models in ((self.user_a, MODELS[:-1]), (self.manager_a, MODELS)):
            for model in models:
                with self.subTest(user=user.login, model=model):
                    visible = self.env[model].with_user(user).search([])
                    self.assertIn(self.records[self.company_a][model], visible)
                    self.assertNotIn(self.records[self.company_b][model], visible)
                    with self.assertRaises(AccessError):
                        self.records[self.company_b][model].with_user(user).read(["company_id"])

    def test_user_of_company_a_cannot_reach_b_even_by_asking_for_it(self):
        # Asking for company B in the context (allowed_company_ids) is refused: the user has no access to B.
        env = self.env(user=self.manager_a, context={"allowed_company_ids": [self.company_a.id, self.company_b.id]})
        with self.assertRaises(AccessError):
            env["vm.whatsapp.integration"].search([]).mapped("name")

    def test_whatsapp_user_reads_but_cannot_change(self):
        conversation = self.records[self.company_a]["vm.whatsapp.conversation"].with_user(self.user_a)
        self.assertTrue(conversation.contact_identity)
        with self.assertRaises(AccessError):
            conversation.write({"contact_name": "changed"})
        with self.assertRaises(AccessError):
            self.env["vm.whatsapp.integration"].with_user(self.user_a).create({"name": "x"})

    def test_user_without_whatsapp_group_sees_nothing(self):
        outsider = self._create_user("wa_outsider", self.company_a, "base.group_user")
        with self.assertRaises(AccessError):
            self.env["vm.whatsapp.conversation"].with_user(outsider).search([])

    def test_settings_administrators_manage_whatsapp(self):
        admin = self._create_user("wa_sysadmin", self.company_a, "base.group_user,base.group_system")
        self.assertTrue(admin.has_group(MANAGER))
        salesman = self._create_user("wa_salesman", self.company_a, "sales_team.group_sale_salesman")
        self.assertTrue(salesman.has_group(USER))
        self.assertFalse(salesman.has_group(MANAGER))
