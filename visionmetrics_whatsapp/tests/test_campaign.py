"""Campaign links, click-to-WhatsApp ad referrals and the order of attribution (DESIGN §11)."""

import json
import secrets
from datetime import timedelta
from unittest.mock import patch
from urllib.parse import parse_qs, unquote, urlsplit

from psycopg2.errors import UniqueViolation

from odoo import fields
from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger

from . import payloads
from .common import WhatsAppHttpCase

PHONE_ID = "106540352242922"
AD_ID = "120210987654321098"
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}


def sandbox_body(session, sender, text, message_id=None):
    message = {"id": message_id or secrets.token_hex(8), "from": sender, "name": "Ana", "text": text, "type": "text"}
    return json.dumps({"event": "message", "session": session, "message": message}).encode()


@tagged("post_install", "-at_install")
class TestCampaign(WhatsAppHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sandbox = cls._create_integration("sandbox", external_id="sbx-campaign-a", phone_number="+5511999990001")
        cls.sandbox_b = cls._create_integration(
            "sandbox", company=cls.company_b, external_id="sbx-campaign-b", phone_number="+5511999990002"
        )
        cls.meta = cls._create_integration(
            "meta", external_id=PHONE_ID, api_key="EAAG-token", webhook_secret="meta-app-secret"
        )
        cls.campaign = cls.env["utm.campaign"].create({"title": "Black Friday"})
        cls.source = cls.env["utm.source"].create({"name": "Flyer"})
        cls.medium = cls.env["utm.medium"].create({"name": "Print"})
        cls.Link = cls.env["vm.whatsapp.link"]
        cls.Conversation = cls.env["vm.whatsapp.conversation"]

    def _link(self, company=None, **vals):
        integration = self.sandbox_b if company == self.company_b else self.sandbox
        return self.Link.create(
            {
                "name": "Flyer",
                "integration_id": integration.id,
                "company_id": integration.company_id.id,
                "campaign_id": self.campaign.id,
                "source_id": self.source.id,
                "medium_id": self.medium.id,
                "message": "Olá!",
                **vals,
            }
        )

    def _sandbox(self, integration, sender, text):
        return self._post_signed(integration, sandbox_body(integration.external_id, sender, text))

    def _conversation(self, integration, identity_contains):
        return self.Conversation.search(
            [("integration_id", "=", integration.id), ("contact_identity", "like", identity_contains)]
        )

    # ------------------------------------------------------------------ links

    def test_tokens_are_short_unique_and_checked(self):
        links = self.Link.create([{"name": f"L{i}", "phone_number": "+5511999990001"} for i in range(50)])
        self.assertEqual(len(set(links.mapped("token"))), 50)
        self.assertTrue(all(len(token) <= 12 for token in links.mapped("token")))
        for bad in ("a" * 13, "tem espaço", "ação", "x_y", ""):
            with self.subTest(bad=bad), self.assertRaises(ValidationError), self.env.cr.savepoint():
                links[0].token = bad
        with self.assertRaises(UniqueViolation), mute_logger("odoo.sql_db"), self.env.cr.savepoint():
            links[1].token = links[0].token
            links[1].flush_recordset()
        lead = self.env["crm.lead"].create({"name": "Has a token", "first_touch_token": "taken-1"})
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            links[2].token = "taken-1"
        self.assertTrue(lead)

    def test_url_encodes_odd_characters(self):
        text = "Olá & café? 100% #1 + ação/desconto=sim\nlinha 2 😀"
        link = self._link(message=text, phone_number="+55 (11) 99999-0003")
        self.assertEqual(link.phone_number, "+5511999990003")
        url = urlsplit(link.whatsapp_url)
        self.assertEqual((url.scheme, url.netloc, url.path), ("https", "wa.me", "/5511999990003"))
        self.assertNotIn("+", url.query, "a space is %20, a plus %2B: nothing wa.me could misread")
        self.assertEqual(url.query.count("="), 1)
        self.assertEqual(unquote(url.query.removeprefix("text=")), f"{text} vm_token:{link.token}")
        self.assertEqual(parse_qs(url.query)["text"], [f"{text} vm_token:{link.token}"])
        tracker = link.link_tracker_id
        self.assertEqual(tracker.redirected_url, link.whatsapp_url, "no utm_* added, no re-encoding")
        link.message = "Outro texto"
        self.assertEqual(tracker.url, link.whatsapp_url)
        self.assertIn("Outro%20texto", tracker.redirected_url)

    def test_redirect_counts_the_click_and_the_token_makes_the_lead(self):
        """Done-means of issue 13: a link clicked through /r/<code>, then a message with its token."""
        link = self._link()
        code = link.link_tracker_id.code
        self.assertTrue(link.short_url.endswith(f"/r/{code}"))
        response = self.url_open(f"/r/{code}", allow_redirects=False, headers=BROWSER)
        self.assertEqual(response.status_code, 301)
        self.assertEqual(response.headers["Location"], link.whatsapp_url)
        link.invalidate_recordset(["click_count"])
        self.assertEqual(link.click_count, 1)
        self.url_open(f"/r/{code}", allow_redirects=False, headers={"User-Agent": "WhatsApp/2.23.20.0"})
        link.link_tracker_id.invalidate_recordset(["count"])
        self.assertEqual(link.click_count, 1, "link previews (bots) are not clicks")

        text = unquote(urlsplit(link.whatsapp_url).query.removeprefix("text="))
        self._sandbox(self.sandbox, "5511955550001", text)
        conversation = self._conversation(self.sandbox, "5511955550001")
        self.assertEqual(conversation.attribution, "link")
        self.assertEqual(conversation.link_id, link)
        self.assertEqual(conversation.match_rate, 100)
        lead = conversation.lead_id
        self.assertEqual((lead.campaign_id, lead.source_id, lead.medium_id), (self.campaign, self.source, self.medium))
        self.assertEqual((conversation.campaign_id, conversation.medium_id), (self.campaign, self.medium))
        self.assertEqual(lead.whatsapp_attribution, "link")
        self.assertEqual(lead.whatsapp_link_id, link)
        self.assertEqual((link.conversation_count, link.lead_count), (1, 1))
        self.assertTrue(conversation.click_at, "the click before the message")
        self.assertGreaterEqual(conversation.click_delay, 0)
        self.env.flush_all()  # the report is a view over the conversations' rows
        report = self.env["vm.whatsapp.click.delay.report"].search([("link_id", "=", link.id)])
        self.assertEqual(report.conversation_count, 1)
        self.assertAlmostEqual(report.median_delay, conversation.click_delay, places=4)

    def test_unknown_code_is_not_found(self):
        self.assertEqual(self.url_open("/r/doesnotexist", allow_redirects=False).status_code, 404)

    def test_qr_code_png_and_svg(self):
        link = self._link()
        self.authenticate("admin", "admin")
        png = self.url_open(f"/vm_whatsapp/link/{link.id}/qr.png")
        self.assertEqual(png.headers["Content-Type"], "image/png")
        self.assertTrue(png.content.startswith(b"\x89PNG"))
        self.assertIn("attachment", png.headers["Content-Disposition"])
        svg = self.url_open(f"/vm_whatsapp/link/{link.id}/qr.svg")
        self.assertTrue(svg.headers["Content-Type"].startswith("image/svg+xml"))
        self.assertIn(b"<svg", svg.content)
        self.assertEqual(self.url_open(f"/vm_whatsapp/link/{link.id}/qr.gif").status_code, 404)
        other = self._link(company=self.company_b)
        user = self._create_user("campaign_user_a", self.company_a, "visionmetrics_whatsapp.group_whatsapp_user")
        self.authenticate(user.login, user.login)
        self.assertEqual(self.url_open(f"/vm_whatsapp/link/{other.id}/qr.png").status_code, 404)
        self.assertEqual(self.url_open(f"/vm_whatsapp/link/{link.id}/qr.png").status_code, 200)

    def test_salesperson_makes_a_link_for_the_lead_but_cannot_edit_links(self):
        user = self._create_user("campaign_sales_a", self.company_a, "sales_team.group_sale_salesman")
        lead = self.env["crm.lead"].create({"name": "Maria", "user_id": user.id, "campaign_id": self.campaign.id})
        action = lead.with_user(user).action_create_whatsapp_link()
        link = self.Link.browse(action["res_id"])
        self.assertTrue(lead.first_touch_token and len(lead.first_touch_token) <= 12)
        self.assertEqual((link.token, link.lead_id, link.campaign_id), (lead.first_touch_token, lead, self.campaign))
        self.assertEqual(lead.with_user(user).action_create_whatsapp_link()["res_id"], link.id, "made once")
        with self.assertRaises(AccessError):
            link.with_user(user).message = "changed"
        # the customer writes with it: the lead's token comes first, the link is recorded too
        self._sandbox(self.sandbox, "5511955550002", f"Oi vm_token:{link.token}")
        conversation = self._conversation(self.sandbox, "5511955550002")
        self.assertEqual((conversation.lead_id, conversation.attribution), (lead, "token"))
        self.assertEqual(conversation.link_id, link)

    def test_long_lead_token_is_refused_with_a_reason(self):
        lead = self.env["crm.lead"].create({"name": "Long", "first_touch_token": "a-very-long-token-1"})
        with self.assertRaisesRegex(Exception, "longer than 12"):
            lead.action_create_whatsapp_link()

    # ------------------------------------------------------------------ ads

    def _meta_ad_body(self, wa_id, message_id, sample="meta/text.referral.json"):
        return payloads.sample(
            sample,
            {"5511987654321": wa_id, "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFDNBQ0FENjE3RjU2QzBGQjk2MjFCAA==": message_id},
        )

    def _meta_ad(self, wa_id, message_id, sample="meta/text.referral.json"):
        body = self._meta_ad_body(wa_id, message_id, sample)
        self.assertEqual(self._post_signed(self.meta, body).status_code, 200)
        return self._conversation(self.meta, wa_id)

    def test_meta_ad_referral_makes_a_lead_with_the_ad_campaign(self):
        conversation = self._meta_ad("5511944440001", "wamid.AD1")
        self.assertEqual(conversation.attribution, "ad")
        self.assertEqual(conversation.ad_id, AD_ID)
        self.assertEqual(conversation.ad_headline, "Curso de Marketing Digital")
        self.assertEqual(conversation.ad_source_url, "https://fb.me/3bKqW7zYp")
        self.assertTrue(conversation.ctwa_clid.startswith("ARAkLkA8"))
        lead = conversation.lead_id
        self.assertEqual(lead.campaign_id.whatsapp_ad_id, AD_ID)
        self.assertIn("Curso de Marketing Digital", lead.campaign_id.name)
        self.assertEqual(lead.source_id, self.env.ref("utm.utm_source_facebook"))
        self.assertEqual(lead.medium_id.name, "Click-to-WhatsApp ad")
        self.assertEqual((lead.whatsapp_attribution, lead.whatsapp_ad_id), ("ad", AD_ID))
        # another contact from the same ad: the same campaign; an Instagram ad: source Instagram
        other = self._meta_ad("5511944440002", "wamid.AD2")
        self.assertEqual(other.lead_id.campaign_id, lead.campaign_id)
        insta = self._meta_ad("5511944440003", "wamid.AD3", "meta/text.referral-instagram-no-clid.json")
        self.assertEqual(insta.lead_id.source_id.name, "Instagram")
        self.assertFalse(insta.ctwa_clid)
        self.assertNotEqual(insta.lead_id.campaign_id, lead.campaign_id)
        self.assertEqual(self.env["utm.campaign"].search_count([("whatsapp_ad_id", "=", AD_ID)]), 1)

    def test_new_contacts_from_an_ad_and_not_are_applied_in_one_batch(self):
        """New conversations of one batch whose values differ (an ad's referral, a link, nothing)
        are created in one INSERT: the batch is not taken apart."""
        ad = self._meta_ad_body("5511944440031", "wamid.AD31")
        plain = payloads.meta_text(PHONE_ID, "5511944440032", "Oi", "wamid.PLAIN32")
        for body in (ad, plain):
            self.assertEqual(self._post_signed(self.meta, body, process=False).status_code, 200)
        logs = self.env["vm.whatsapp.webhook.log"].search([("state", "=", "received")])
        Inbox = self.env["vm.whatsapp.inbox"]
        with patch.object(type(Inbox), "_apply_batch", autospec=True, side_effect=type(Inbox)._apply_batch) as batch:
            Inbox._apply(logs)
        self.assertEqual(batch.call_count, 1, "applied as one batch")
        self.assertEqual(set(logs.mapped("state")), {"processed"})
        ad_conversation = self._conversation(self.meta, "5511944440031")
        self.assertEqual((ad_conversation.attribution, ad_conversation.ad_id), ("ad", AD_ID))
        self.assertEqual(self._conversation(self.meta, "5511944440032").attribution, "anonymous")

    def test_ad_on_a_known_phone_keeps_the_lead_first_touch(self):
        first = self.env["utm.campaign"].create({"title": "Earlier campaign"})
        lead = self.env["crm.lead"].create({"name": "Known", "phone": "+5511944440010", "campaign_id": first.id})
        conversation = self._meta_ad("5511944440010", "wamid.AD10")
        self.assertEqual((conversation.lead_id, conversation.attribution), (lead, "ad"))
        self.assertEqual(lead.campaign_id, first, "a campaign already set is never overwritten")
        self.assertEqual(lead.medium_id.name, "Click-to-WhatsApp ad", "an empty utm field is filled")
        self.assertEqual(conversation.campaign_id.whatsapp_ad_id, AD_ID, "the conversation keeps the ad's")

    def test_same_ad_in_another_company_gets_its_own_campaign(self):
        self._meta_ad("5511944440020", "wamid.AD20")
        meta_b = self._create_integration(
            "meta", company=self.company_b, external_id="999000111", api_key="k", webhook_secret="meta-b-secret"
        )
        body = payloads.sample(
            "meta/text.referral.json", {"5511987654321": "5511944440021", PHONE_ID: "999000111", "wamid.": "wamid.B"}
        )
        self._post_signed(meta_b, body)
        conversation_b = self._conversation(meta_b, "5511944440021")
        campaigns = self.env["utm.campaign"].search([("whatsapp_ad_id", "=", AD_ID)])
        self.assertEqual(len(campaigns), 2)
        self.assertEqual(conversation_b.lead_id.campaign_id.whatsapp_company_id, self.company_b)

    def test_evolution_ad_reply_and_click_delay(self):
        evolution = self._create_integration(
            "evolution", api_base_url="https://evo.example.com", external_id="odoo-loja-01"
        )
        self._post_signed(evolution, payloads.sample("evolution/messages.upsert.ad-reply.json"))
        conversation = self._conversation(evolution, "5511987654321")
        self.assertEqual((conversation.attribution, conversation.ad_id), ("ad", AD_ID))
        self.assertAlmostEqual(conversation.click_delay, 21 / 60.0)
        self.assertEqual(conversation.click_at, conversation.first_message_at - timedelta(seconds=21))
        # a later ad click never replaces the first referral
        later = payloads.sample(
            "evolution/messages.upsert.ad-reply.json",
            {"3EB0AD0C1A2B3C4D5E6F": "3EB0AD0C1A2B3C4D5E99", AD_ID: "120299999999999999"},
        )
        self._post_signed(evolution, later)
        self.assertEqual(conversation.ad_id, AD_ID)
        self._post_signed(
            evolution,
            payloads.sample("evolution/messages.upsert.ad-markers-only.json", {"5511987654321": "5511987650077"}),
        )
        markers = self._conversation(evolution, "5511987650077")
        self.assertEqual(markers.attribution, "ad")
        self.assertEqual(markers.lead_id.medium_id.name, "Click-to-WhatsApp ad")
        self.assertFalse(markers.lead_id.campaign_id, "no ad id: no campaign to name")

    # ------------------------------------------------------------------ order and first touch

    def test_order_lead_token_then_ad_then_link_then_phone(self):
        link = self._link()
        lead = self.env["crm.lead"].create({"name": "Token lead", "first_touch_token": "LEADTOK1"})
        # lead token beats the ad referral (stored all the same)
        body = payloads.sample(
            "meta/text.referral.json",
            {
                "5511987654321": "5511944440030",
                "wamid.": "wamid.O1",
                "Olá! Quero saber mais sobre o curso.": "Oi vm_token:LEADTOK1",
            },
        )
        self._post_signed(self.meta, body)
        conversation = self._conversation(self.meta, "5511944440030")
        self.assertEqual((conversation.lead_id, conversation.attribution), (lead, "token"))
        self.assertEqual(conversation.ad_id, AD_ID)
        # the ad beats a link token
        body = payloads.sample(
            "meta/text.referral.json",
            {
                "5511987654321": "5511944440031",
                "wamid.": "wamid.O2",
                "Olá! Quero saber mais sobre o curso.": f"Oi vm_token:{link.token}",
            },
        )
        self._post_signed(self.meta, body)
        conversation = self._conversation(self.meta, "5511944440031")
        self.assertEqual(conversation.attribution, "ad")
        self.assertFalse(conversation.link_id)
        # the link beats the phone: the phone's lead gets the link's utm where it has none
        known = self.env["crm.lead"].create({"name": "Known", "phone": "+5511955550040", "source_id": self.source.id})
        self._sandbox(self.sandbox, "5511955550040", f"vm_token:{link.token}")
        conversation = self._conversation(self.sandbox, "5511955550040")
        self.assertEqual((conversation.lead_id, conversation.attribution), (known, "link"))
        self.assertEqual(
            (known.campaign_id, known.medium_id, known.source_id), (self.campaign, self.medium, self.source)
        )
        # nothing: the phone, then a new lead
        self._sandbox(self.sandbox, "5511955550040", "de novo")
        self.assertEqual(conversation.attribution, "link")
        self._sandbox(self.sandbox, "5511955550041", "oi")
        fresh = self._conversation(self.sandbox, "5511955550041")
        self.assertEqual((fresh.attribution, fresh.match_rate), ("anonymous", 0))
        self.assertEqual(fresh.lead_id.source_id, self.env.ref("visionmetrics_whatsapp.utm_source_whatsapp"))

    def test_first_touch_is_kept_and_lead_token_still_reattributes(self):
        link_a = self._link(name="A")
        other = self.env["utm.campaign"].create({"title": "Other"})
        link_b = self._link(name="B", campaign_id=other.id)
        self._sandbox(self.sandbox, "5511955550050", f"vm_token:{link_a.token}")
        conversation = self._conversation(self.sandbox, "5511955550050")
        lead = conversation.lead_id
        first_touch_at = lead.whatsapp_first_touch_at
        self._sandbox(self.sandbox, "5511955550050", f"vm_token:{link_b.token}")
        self.assertEqual((conversation.link_id, conversation.campaign_id), (link_a, self.campaign))
        self.assertEqual(
            (lead.campaign_id, lead.whatsapp_link_id, lead.whatsapp_first_touch_at),
            (self.campaign, link_a, first_touch_at),
        )
        token_lead = self.env["crm.lead"].create({"name": "Token", "first_touch_token": "REATTR1"})
        self._sandbox(self.sandbox, "5511955550050", "vm_token:REATTR1")
        self.assertEqual((conversation.lead_id, conversation.attribution), (token_lead, "token"))
        self.assertEqual(lead.campaign_id, self.campaign)

    def test_another_company_link_token_never_attributes(self):
        link_b = self._link(company=self.company_b)
        self._sandbox(self.sandbox, "5511955550060", f"Olá vm_token:{link_b.token}")
        conversation = self._conversation(self.sandbox, "5511955550060")
        self.assertEqual(conversation.attribution, "anonymous")
        self.assertFalse(conversation.link_id)
        self.assertFalse(conversation.lead_id.campaign_id)
        self.assertEqual(link_b.conversation_count, 0)

    def test_links_found_for_many_conversations_in_one_batch(self):
        links = self.Link.create(
            [
                {"name": f"Batch {i}", "phone_number": "+5511999990001", "campaign_id": self.campaign.id}
                for i in range(5)
            ]
        )
        for i, link in enumerate(links):
            self._post_signed(
                self.sandbox,
                sandbox_body("sbx-campaign-a", f"551195555{i:04d}", f"vm_token:{link.token}"),
                process=False,
            )
        with self.assertQueryCount(__system__=200):  # a bound, not a figure: one batch of 5 new contacts
            self._process_inbox()
        conversations = self.Conversation.search([("link_id", "in", links.ids)])
        self.assertEqual(len(conversations), 5)
        self.assertEqual(set(conversations.mapped("attribution")), {"link"})

    # ------------------------------------------------------------------ reports

    def test_report_figures_on_a_fixture(self):
        link = self._link()
        self._sandbox(self.sandbox, "5511955557701", f"vm_token:{link.token}")  # link
        self._sandbox(self.sandbox, "5511955557702", "oi")  # new lead
        self._meta_ad("5511955557703", "wamid.AD72")  # ad
        self.env["crm.lead"].create({"name": "Known", "phone": "+5511955557704"})
        self._sandbox(self.sandbox, "5511955557704", "oi")  # phone
        conversations = self.Conversation.search([("contact_identity", "like", "55557")])
        self.assertEqual(len(conversations), 4)
        [(rate,)] = self.Conversation._read_group([("id", "in", conversations.ids)], [], ["match_rate:avg"])
        self.assertEqual(rate, 50, "the link and the ad, of four")
        by_kind = dict(self.Conversation._read_group([("id", "in", conversations.ids)], ["attribution"], ["__count"]))
        self.assertEqual(by_kind, {"link": 1, "anonymous": 1, "ad": 1, "phone": 1})
        # won revenue by campaign; first-touch month against won
        lead = conversations.filtered(lambda c: c.attribution == "link").lead_id
        lead.expected_revenue = 1500
        lead.action_set_won()
        self.assertTrue(lead.whatsapp_won)
        Lead = self.env["crm.lead"].with_context(active_test=False)
        domain = [("whatsapp_attribution", "!=", False), ("id", "in", conversations.lead_id.ids)]
        revenue = dict(Lead._read_group(domain, ["campaign_id"], ["whatsapp_won_revenue:sum"]))
        self.assertEqual(revenue[self.campaign], 1500)
        self.assertEqual(sum(revenue.values()), 1500)
        [(matched,)] = Lead._read_group(domain, [], ["whatsapp_match_rate:avg"])
        self.assertEqual(matched, 50)
        cohort = Lead._read_group(domain, ["whatsapp_first_touch_at:month", "whatsapp_won"], ["__count"])
        this_month = fields.Datetime.now().strftime("%Y-%m")
        self.assertEqual(
            sorted((month.strftime("%Y-%m"), won, count) for month, won, count in cohort),
            # the ad's message is dated by Meta (October 2025): its first touch too
            [("2025-10", False, 1), (this_month, False, 2), (this_month, True, 1)],
        )
