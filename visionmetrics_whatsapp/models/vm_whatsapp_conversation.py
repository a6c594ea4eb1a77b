import logging
import uuid
from collections import defaultdict
from datetime import timedelta

from psycopg2.errors import UniqueViolation

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import format_datetime, mute_logger

from .. import providers
from ..tools.media import CAPTION_KINDS, CAPTION_MAX_LENGTH, DOCUMENT_MAX_SIZE, TEXT_MAX_LENGTH, media_kind
from ..tools.phone import mask, to_e164, variants
from ..tools.text import clean_text
from ..tools.token import extract_token
from . import access
from .bulk import insert_records
from .vm_whatsapp_inbox import ConcurrentCreation

_logger = logging.getLogger(__name__)


ATTRIBUTIONS = [
    ("token", "Marketing token"),
    ("ad", "Click-to-WhatsApp ad"),
    ("link", "Campaign link"),
    ("phone", "Phone number"),
    ("anonymous", "New lead"),
    ("manual", "Manual"),
]
MATCHED = ("token", "ad", "link")  # attributed by marketing evidence, not by phone or as new
WEAK = (False, "phone", "anonymous")  # what an ad or a link may still improve on
CLICK_WINDOW_DAYS = 7  # a click older than this is not the one that made the message


def match_rate(attribution):
    """A conversation's match rate: 100 when marketing evidence named its lead, else 0."""
    return 100 if attribution in MATCHED else 0


class VmWhatsappConversation(models.Model):
    _name = "vm.whatsapp.conversation"
    _inherit = ["mail.thread", "bus.listener.mixin", "vm.whatsapp.company.guard"]
    _description = "WhatsApp Conversation"
    # The thread shows the WhatsApp messages (mirrored as mail.message, see vm.whatsapp.message);
    # whoever may read the conversation may answer in it (action_send_message), as its salesperson.
    _mail_post_access = "read"
    _order = "last_message_at desc, id desc"
    _rec_name = "contact_name"
    _check_company_auto = True

    integration_id = fields.Many2one(
        "vm.whatsapp.integration", required=True, index=True, ondelete="cascade", check_company=True
    )
    company_id = fields.Many2one(
        related="integration_id.company_id", store=True, index=True, precompute=True, required=True
    )
    contact_identity = fields.Char(required=True, help="The provider's id for the contact: wa_id, JID or LID.")
    contact_phone = fields.Char("Phone", index="btree_not_null", help="E.164, when known.")
    contact_name = fields.Char("Contact")
    lead_id = fields.Many2one("crm.lead", index=True, ondelete="set null", check_company=True)
    partner_id = fields.Many2one("res.partner", string="Contact Partner", index="btree_not_null", check_company=True)
    attribution = fields.Selection(ATTRIBUTIONS, readonly=True, index=True)
    vm_token = fields.Char("Token", index="btree_not_null", readonly=True)
    ctwa_clid = fields.Char("Click ID (ctwa_clid)", readonly=True, index="btree_not_null")
    ad_id = fields.Char("Ad ID", readonly=True, index="btree_not_null")
    ad_source_url = fields.Char("Ad URL", readonly=True)
    ad_headline = fields.Char(readonly=True)
    link_id = fields.Many2one("vm.whatsapp.link", readonly=True, index="btree_not_null", check_company=True)
    # What the reports group by, stored: the utm of the evidence (the ad, the link), else of the
    # lead, when the conversation was attributed; the click and how long before the message it was.
    campaign_id = fields.Many2one("utm.campaign", readonly=True, index="btree_not_null", ondelete="set null")
    source_id = fields.Many2one("utm.source", readonly=True, index="btree_not_null", ondelete="set null")
    medium_id = fields.Many2one("utm.medium", readonly=True, index="btree_not_null", ondelete="set null")
    match_rate = fields.Integer(
        "Match Rate (%)",
        compute="_compute_match_rate",
        store=True,
        precompute=True,  # in the inbox's INSERT rather than an UPDATE after it
        aggregator="avg",
        help="100 when a token, an ad or a campaign link named the lead, 0 when only the phone number "
        "did or a new lead was made: its average is the share matched by marketing evidence.",
    )
    click_at = fields.Datetime(
        "Clicked At",
        readonly=True,
        help="Campaign link: the latest click on its short URL in the 7 days before the message that "
        "carried its token (clicks are not tied to a person: with many at once, the nearest one). "
        "Ad: the click time Baileys reports (entryPointConversionDelaySeconds); Meta gives none.",
    )
    click_delay = fields.Float(
        "Click to Message (min)", readonly=True, aggregator="avg", help="Minutes from the click to the message."
    )
    first_message_at = fields.Datetime(readonly=True, index=True)  # the reports' period
    last_message_at = fields.Datetime(readonly=True, index=True)
    # The provider's messages (DESIGN §3), not mail.thread's: mail.thread reads its own messages by
    # model and res_id, and the two searches that go through its message_ids are redefined below.
    message_ids = fields.One2many(
        "vm.whatsapp.message", "conversation_id", string="Messages", domain=[], auto_join=False
    )
    message_count = fields.Integer(compute="_compute_message_count")
    can_send_free_text = fields.Boolean(
        "Can Reply", compute="_compute_can_send_free_text", help="Whether a free-form reply can be sent now."
    )
    send_window_message = fields.Char("Why Replying Is Not Possible", compute="_compute_can_send_free_text")

    _sql_constraints = [
        (
            "contact_uniq",
            "UNIQUE(integration_id, contact_identity)",
            "There is already a conversation with this contact on this integration.",
        ),
    ]

    @api.depends("attribution")
    def _compute_match_rate(self):
        for conversation in self:
            conversation.match_rate = match_rate(conversation.attribution)

    @api.depends("message_ids")
    def _compute_message_count(self):
        counts = dict(
            self.env["vm.whatsapp.message"]._read_group(
                [("conversation_id", "in", self.ids)], ["conversation_id"], ["__count"]
            )
        )
        for conversation in self:
            conversation.message_count = counts.get(conversation, 0)

    def _compute_can_send_free_text(self):
        last_inbound = dict(
            self.env["vm.whatsapp.message"]._read_group(
                [("conversation_id", "in", self._origin.ids), ("direction", "=", "inbound")],
                ["conversation_id"],
                ["sent_at:max"],
            )
        )
        now = fields.Datetime.now()
        for conversation in self:
            reason = conversation._reply_refusal(last_inbound.get(conversation._origin), now)
            conversation.can_send_free_text = not reason
            conversation.send_window_message = reason or False

    def _reply_refusal(self, last_inbound_at, now):
        """Why no free-form message can be sent in this conversation now (a sentence for the
        user), or None: the integration is not connected, or the provider's customer service
        window (Meta, 360dialog: 24 hours after the contact's last message) is closed."""
        integration = self.integration_id
        if not integration.active or integration.state != "connected":
            return self.env._(
                "The WhatsApp number %(name)s is not connected: a WhatsApp administrator must connect it "
                "again (Settings > WhatsApp) before you can reply.",
                name=integration.name,
            )
        provider_class = providers.PROVIDERS.get(integration.provider)
        window = provider_class.free_text_window if provider_class else None
        if not window:
            return None
        if not last_inbound_at:
            return self.env._(
                "The contact has not written to this number yet: WhatsApp only accepts template messages until they do."
            )
        if now - last_inbound_at > timedelta(seconds=window):
            return self.env._(
                "More than %(hours)s hours have passed since the contact's last message (%(when)s): WhatsApp "
                "only accepts template messages now. You can reply freely again once the contact writes.",
                hours=window // 3600,
                when=format_datetime(self.env, last_inbound_at),
            )
        return None

    def _search_message_needaction(self, operator, operand):
        # mail.thread's goes through message_ids, which are here the provider's messages
        return self._search_mail_messages(operator, operand, [("needaction", "=", True)])

    def _search_message_has_error(self, operator, operand):
        return self._search_mail_messages(
            operator, operand, [("has_error", "=", True), ("author_id", "=", self.env.user.partner_id.id)]
        )

    def _search_mail_messages(self, operator, operand, domain):
        if operator not in ("=", "!=") or not isinstance(operand, bool):
            raise UserError(self.env._("Operation not supported"))
        messages = self.env["mail.message"]._search([("model", "=", self._name), *domain])
        positive = (operator == "=") == operand
        return [("id", "in" if positive else "not in", messages.subselect("res_id"))]

    def _compute_display_name(self):
        for conversation in self:
            conversation.display_name = (
                conversation.contact_name or conversation.contact_phone or conversation.contact_identity or ""
            )

    @api.model_create_multi
    def create(self, vals_list):
        # No creation note, follower or tracking per conversation: the inbox creates them by batch.
        quiet = self.with_context(mail_create_nolog=True, mail_create_nosubscribe=True, tracking_disable=True)
        return super(VmWhatsappConversation, quiet).create(vals_list).with_env(self.env)

    def action_open_lead(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "crm.lead",
            "res_id": self.lead_id.id,
            "view_mode": "form",
        }

    def action_send_message(self, body, attachment_ids=None):
        """Queue a reply from the current user: ``body`` (text) and the files ``attachment_ids``
        (ir.attachment ids). Each file is one message, the text its caption (of the first file
        that takes one); a text that cannot be a caption is a message of its own, sent first.
        The outbox sends them within seconds (vm.whatsapp.outbox). Returns the id of the first
        new message (``pending``). Raises UserError when replying is not possible now (see
        ``send_window_message``) or there is nothing to send."""
        self.ensure_one()
        self._check_can_reply()
        text = (clean_text(body) if isinstance(body, str) else "").strip()
        if len(text) > TEXT_MAX_LENGTH:
            raise UserError(
                self.env._(
                    "The message is %(length)s characters long; WhatsApp accepts at most %(max)s.",
                    length=len(text),
                    max=TEXT_MAX_LENGTH,
                )
            )
        files = self._reply_files(attachment_ids)
        if not text and not files:
            raise UserError(self.env._("Write a message or attach a file before sending."))
        captioned = next((i for i, (_a, kind) in enumerate(files) if kind in CAPTION_KINDS), None)
        if len(text) > CAPTION_MAX_LENGTH:
            captioned = None
        vals_list = []
        if text and captioned is None:
            vals_list.append(self._reply_vals(body=text))
        for i, (attachment, kind) in enumerate(files):
            vals_list.append(
                self._reply_vals(body=text if i == captioned else False, message_type=kind, attachment=attachment)
            )
        # Users read messages only: created as superuser once checked, by the ORM (create_uid
        # and author_id are the user's).
        messages = self.env["vm.whatsapp.message"].sudo().create(vals_list)
        self._attach_files(messages)
        now = fields.Datetime.now()
        self.sudo().write({"last_message_at": now, "first_message_at": self.first_message_at or now})
        self.env["vm.whatsapp.outbox"]._wake_up()
        return messages[:1].id

    def _check_can_reply(self):
        """Raise unless the current user may reply in this conversation now: they can read it
        and its integration (so both belong to the companies they work in), and replying is
        possible (``send_window_message``)."""
        self.ensure_one()
        if not (self.env.su or self.env.user.has_group("visionmetrics_whatsapp.group_whatsapp_user")):
            raise AccessError(self.env._("Only WhatsApp users can reply to WhatsApp conversations."))
        access.check_records(self, "read")
        access.check_records(self.integration_id, "read")
        if not self.can_send_free_text:
            raise UserError(self.send_window_message)

    def _reply_files(self, attachment_ids):
        """[(attachment, media kind)] of the files to send, checked: they exist, the user may read
        them, and WhatsApp accepts their size."""
        if not attachment_ids:
            return []
        if isinstance(attachment_ids, int):
            attachment_ids = [attachment_ids]
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in attachment_ids):
            raise UserError(self.env._("The files to send are given by their ids."))
        attachments = self.env["ir.attachment"].browse(list(dict.fromkeys(attachment_ids)))
        if len(attachments.exists()) != len(attachments):
            raise UserError(self.env._("A file to send no longer exists; attach it again."))
        try:
            attachments.check("read")
        except AccessError:
            raise AccessError(self.env._("You can only send files that you can open.")) from None
        files = []
        for attachment in attachments.sudo():
            kind = media_kind(attachment.mimetype, attachment.file_size)
            if kind is None:
                raise UserError(
                    self.env._(
                        "%(name)s is too large: WhatsApp accepts files of at most %(max)s MB.",
                        name=attachment.name,
                        max=DOCUMENT_MAX_SIZE // (1024 * 1024),
                    )
                )
            files.append((attachment, kind))
        return files

    def _reply_vals(self, body, message_type="text", attachment=None):
        return {
            "conversation_id": self.id,
            "integration_id": self.integration_id.id,
            "company_id": self.company_id.id,
            # a local id until the provider gives its own (the outbox stores it)
            "external_id": f"local:{uuid.uuid4().hex}",
            "direction": "outbound",
            "message_type": message_type,
            "body": body,
            "attachment_id": attachment.id if attachment else False,
            "sent_at": fields.Datetime.now(),
            "status": "pending",
            "send_state": "queued",
            "author_id": self.env.uid,
        }

    def _attach_files(self, messages):
        """Each sent file belongs to its message from now on (its access follows the message's):
        a file uploaded for the reply is moved, a file of another record is copied."""
        for message in messages.filtered("attachment_id"):
            attachment = message.attachment_id.sudo()
            vals = {"res_model": message._name, "res_id": message.id, "company_id": message.company_id.id}
            if not attachment.res_id or attachment.res_model in (False, self._name, "mail.compose.message"):
                attachment.write(vals)
            else:
                message.attachment_id = attachment.copy(vals)

    # ------------------------------------------------------------------ thread (web client)

    def _thread_to_store(self, store, /, *, fields=None, request_list=None):  # pylint: disable=missing-return
        super()._thread_to_store(store, fields=fields, request_list=request_list)
        if request_list and "vm_whatsapp" in request_list:
            for conversation in self:
                store.add(conversation, {"vm_whatsapp": conversation._composer_state()}, as_thread=True)

    def _composer_state(self):
        self.ensure_one()
        return {
            "can_send": self.can_send_free_text,
            "reason": self.send_window_message or False,
            "integration": self.integration_id.display_name,
            "phone": self.contact_phone or False,
        }

    def _message_update_content(self, message, body, *args, **kwargs):
        if message.vm_whatsapp_message_id:
            raise UserError(self.env._("A WhatsApp message cannot be edited or deleted once sent."))
        return super()._message_update_content(message, body, *args, **kwargs)

    def _notify_users(self):
        """Who is told of this conversation's inbound messages: the lead's salesperson, else the
        members of the lead's sales team (else the integration's), among the internal users who
        may read the conversation."""
        self.ensure_one()
        lead = self.lead_id
        users = lead.user_id
        if not users:
            users = (lead.team_id or self.integration_id.team_id).member_ids
        return users.filtered(
            lambda user: (
                user.active
                and not user.share
                and self.company_id in user.company_ids
                and user.has_group("visionmetrics_whatsapp.group_whatsapp_user")
            )
        )

    # ------------------------------------------------------------------ inbox

    @api.model
    def _apply_message_events(self, items):
        """The inbox's handler of messages (vm.whatsapp.inbox.HANDLERS), for a whole batch: the
        conversations found, the new ones attributed and created (one search, one INSERT), the
        messages stored once (one search, one INSERT), then the conversations that existed
        updated and attributed together. One (state, note) per item."""
        results = [None] * len(items)
        todo = []
        for i, item in enumerate(items):
            if item.event.is_group:
                note = self.env._("Group message %(id)s: groups are not conversations.", id=item.event.message_id)
                results[i] = ("ignored", note)
            else:
                todo.append(i)
        conversations, created = self._get_or_create_for_events([(items[i].integration, items[i].event) for i in todo])
        pairs = [(items[i], conversations[(items[i].integration.id, items[i].event.contact_identity)]) for i in todo]
        messages = self.env["vm.whatsapp.message"]._store_events(pairs)
        stored = []
        for i, (item, conversation), message in zip(todo, pairs, messages, strict=True):
            results[i] = ("processed", False) if message else ("duplicate", False)
            if message:
                stored.append((conversation, message, item.event))
        self._register_messages(stored, attributed=created)
        return results

    @api.model
    def _get_or_create_for_events(self, pairs):
        """The conversations of the contacts of (integration, event) pairs, and those created:
        ({(integration id, contact identity): conversation}, new conversations). The new ones
        are attributed (_attribute_all) before they are created, all in one INSERT with their
        lead: a conversation is not written again for its lead."""
        if not pairs:
            return {}, self.browse()
        found = self.search_fetch(
            [
                ("integration_id", "in", list({integration.id for integration, _event in pairs})),
                ("contact_identity", "in", list({event.contact_identity for _integration, event in pairs})),
            ],
            ["integration_id", "company_id", "contact_identity", *self._INGEST_FIELDS],
        )
        conversations = {(c.integration_id.id, c.contact_identity): c for c in found}
        new = {}
        for integration, event in pairs:
            key = (integration.id, event.contact_identity)
            if key not in conversations and key not in new:
                new[key] = self._prepare_vals_from_event(integration, event)
            if key in new:  # the batch's first and last messages of a new contact, set at creation
                vals, sent_at = new[key], event.timestamp or fields.Datetime.now()
                vals["first_message_at"] = min(vals.get("first_message_at") or sent_at, sent_at)
                vals["last_message_at"] = max(vals.get("last_message_at") or sent_at, sent_at)
                if not vals["contact_name"] and not event.from_me and event.contact_name:
                    vals["contact_name"] = event.contact_name
        if not new:
            return conversations, self.browse()
        self._attribute_new(new, pairs)
        for vals in new.values():  # given, not precomputed on a new() record per conversation
            vals["match_rate"] = match_rate(vals.get("attribution"))
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                # one INSERT: what create() adds for a conversation is disabled for the inbox's
                # (no creation note, follower or tracking, see create)
                created = insert_records(self, list(new.values()))
        except UniqueViolation:
            # Created by a concurrent transaction committed after this one started: invisible
            # here; the batch is applied again in a new transaction.
            raise ConcurrentCreation(
                self.env._("A concurrent request created this contact's conversation; applied again shortly.")
            ) from None
        created._log_attribution()
        conversations.update(zip(new, created, strict=True))
        return conversations, created

    @api.model
    def _attribute_new(self, new, pairs):
        """Add to the values of new conversations (``new``: {key: values}) their attribution,
        decided from the inbound messages of (integration, event) ``pairs`` as for a conversation
        that exists (_attribute_all), on records not yet in the database."""
        drafts = {key: self.new(vals) for key, vals in new.items()}
        inbound = [
            (drafts[key], extract_token(event.text), event.timestamp or fields.Datetime.now(), event.referral)
            for integration, event in pairs
            if (key := (integration.id, event.contact_identity)) in drafts and not event.from_me
        ]
        values = self._attribute_all(*self._evidence(inbound))
        for key, draft in drafts.items():
            new[key].update(values.get(draft, {}))

    _INGEST_FIELDS = [
        "first_message_at",
        "last_message_at",
        "contact_name",
        "contact_phone",
        "lead_id",
        "attribution",
        "ad_id",
        "ctwa_clid",
        "vm_token",
    ]

    @api.model
    def _prepare_vals_from_event(self, integration, event):
        region = integration.company_id.country_id.code
        return {
            "integration_id": integration.id,
            "company_id": integration.company_id.id,
            "contact_identity": event.contact_identity,
            "contact_phone": to_e164(event.contact_phone, region) if event.contact_phone else False,
            "contact_name": (event.contact_name if not event.from_me else False) or False,
        }

    @api.model
    def _register_messages(self, stored, attributed=None):
        """Update the conversations of new messages ((conversation, message, event) triples, in
        arrival order): first and last message times, the contact's name; then attribute those
        that received an inbound message, but for those ``attributed`` already (created by this
        batch, see _get_or_create_for_events)."""
        attributed = set(attributed.ids) if attributed else set()
        updates = defaultdict(dict)
        inbound = []  # (conversation, token, sent at, referral) of the new inbound messages to attribute
        for conversation, message, event in stored:
            vals = updates[conversation]
            sent_at = message.sent_at
            first = vals.get("first_message_at", conversation.first_message_at)
            last = vals.get("last_message_at", conversation.last_message_at)
            if not first or sent_at < first:
                vals["first_message_at"] = sent_at
            if not last or sent_at > last:
                vals["last_message_at"] = sent_at
            if not event.from_me and event.contact_name and not conversation.contact_name:
                vals.setdefault("contact_name", event.contact_name)
            if message.direction == "inbound" and conversation.id not in attributed:
                inbound.append((conversation, message.vm_token, sent_at, event.referral))
        # one write per set of values (a burst's messages share their second)
        by_vals = defaultdict(list)
        for conversation, vals in updates.items():
            if vals:
                by_vals[tuple(sorted(vals.items()))].append(conversation.id)
        for vals, ids in by_vals.items():
            self.browse(ids).write(dict(vals))
        for conversation, vals in self._attribute_all(*self._evidence(inbound)).items():
            previous = conversation.attribution
            conversation.write(vals)
            if "lead_id" in vals:
                conversation._log_attribution(previous)
        inbound = [message.id for _conversation, message, _event in stored if message.direction == "inbound"]
        self.env["vm.whatsapp.message"].browse(inbound)._notify_users()

    @api.model
    def _evidence(self, inbound):
        """What _attribute_all weighs, from the (conversation, token, sent at, referral) of new
        inbound messages in arrival order: each conversation's (token, sent at) in order, and the
        (referral, sent at) of its first message with one."""
        tokens, referrals = defaultdict(list), {}
        for conversation, token, sent_at, referral in inbound:
            tokens[conversation].extend([(token, sent_at)] if token else [])
            if referral and conversation not in referrals:
                referrals[conversation] = (referral, sent_at)
        return tokens, referrals

    @api.model
    def _attribute_all(self, tokens, referrals=None):
        """Give conversations their lead (DESIGN §7, §11), with a few queries for all of them:
        ``tokens`` maps each conversation to the (token, sent at) of its new inbound messages, in
        order, ``referrals`` to the (ad referral, sent at) of the first of them that has one.

        1. the first token that is a lead's first-touch token of the conversation's company
           (re-attributes a conversation attributed otherwise, but not by hand);
        2. else, for a conversation with no lead or one found by phone or made new: a
           click-to-WhatsApp ad referral (kind ``ad``), else a campaign link's token of the company
           (kind ``link``): the lead is the conversation's, else the newest lead (or contact) with
           the contact's phone, else a new lead; it gets the ad's or the link's campaign, source
           and medium where it has none (the first touch is kept);
        3. else, for a conversation with no lead yet, the newest lead (or contact) of the
           company with the contact's phone;
        4. else a new lead, one per company and phone however many conversations share it.
        The first ad referral a conversation receives is stored on it whatever attributed it.

        The leads are created and completed here; the conversations are not written: the values
        to write on each one are returned ({conversation: values}), which the caller writes, or
        gives at creation to conversations not yet created (``conversations`` may be new
        records, see _attribute_new)."""
        Lead = self.env["crm.lead"]
        referrals = referrals or {}
        wanted = {(c.company_id, token) for c, pairs in tokens.items() for token, _at in pairs}
        links = self.env["vm.whatsapp.link"]._find_by_tokens(wanted)
        by_token = Lead._vm_whatsapp_find_by_tokens(
            {
                (c.company_id, token)
                for c, pairs in tokens.items()
                if c.attribution not in ("token", "manual")
                for token, _at in pairs
            }
        )
        plans = {}  # conversation -> [lead or None, kind, token, evidence utm or None, vals, sent at]
        for conversation, pairs in tokens.items():
            if conversation.attribution in ("token", "manual"):
                continue
            company = conversation.company_id
            token, at = next(((t, at) for t, at in pairs if (company, t) in by_token), (None, None))
            if token:
                link = links.get((company, token))  # a lead's own link (the lead form's button)
                plans[conversation] = [by_token[(company, token)], "token", token, None, {}, at]
                if link:
                    plans[conversation][4]["link_id"] = link.id
        with_ads = [
            c for c in referrals if c not in plans and c.attribution in WEAK and not c.ad_id and not c.ctwa_clid
        ]
        ad_utms = dict(
            zip(with_ads, Lead._vm_whatsapp_ad_utms([(c.company_id, referrals[c][0]) for c in with_ads]), strict=True)
        )
        for conversation, pairs in tokens.items():
            if conversation in plans or conversation.attribution not in WEAK:
                continue
            company = conversation.company_id
            if conversation in ad_utms:
                plans[conversation] = [conversation.lead_id or None, "ad", None, ad_utms[conversation], {}, None]
                plans[conversation][5] = referrals[conversation][1]
                continue
            token, at = next(((t, at) for t, at in pairs if (company, t) in links), (None, None))
            if token:
                link = links[(company, token)]
                plans[conversation] = [conversation.lead_id or None, "link", token, link._utm_values(), {}, at]
                plans[conversation][4]["link_id"] = link.id
        for conversation, (referral, at) in referrals.items():
            if not conversation.ad_id and not conversation.ctwa_clid:  # the first referral is kept
                vals = plans.setdefault(conversation, [None, None, None, None, {}, at])[4]
                vals.update(self._referral_values(referral, at))
        # leads by phone, then new ones, for the conversations that still have none
        orphans = [c for c in tokens if not c.lead_id and not (plans.get(c) or [None])[0]]
        found = Lead._vm_whatsapp_find_by_phones(
            [(c.company_id, variants(c.contact_phone), c.integration_id) for c in orphans]
        )
        unknown = []
        for conversation, lead in zip(orphans, found, strict=True):
            plan = plans.setdefault(conversation, [None, None, None, None, {}, None])
            plan[1] = plan[1] or ("phone" if lead else "anonymous")
            if lead:
                plan[0] = lead
            else:
                unknown.append(conversation)
        # a new lead's first touch is given at its creation: no write of each lead afterwards
        contacts = [
            (
                c.company_id,
                c.contact_name,
                c.contact_phone,
                None,
                c.integration_id,
                {
                    **(plans[c][3] or {}),
                    "whatsapp_attribution": plans[c][1],
                    "whatsapp_first_touch_at": plans[c][5] or c.first_message_at,
                    "whatsapp_ad_id": plans[c][4].get("ad_id") or c.ad_id,
                    "whatsapp_link_id": plans[c][4].get("link_id"),
                },
            )
            for c in unknown
        ]
        for conversation, lead in zip(unknown, Lead._vm_whatsapp_create_leads(contacts), strict=True):
            plans[conversation][0] = lead
        return self._apply_plans(plans)

    @api.model
    def _referral_values(self, referral, sent_at):
        vals = {
            "ad_id": referral.source_id or False,
            "ad_source_url": referral.source_url or False,
            "ad_headline": referral.headline or False,
            "ctwa_clid": referral.ctwa_clid or False,
        }
        if referral.click_delay is not None:
            vals["click_at"] = sent_at - timedelta(seconds=referral.click_delay)
            vals["click_delay"] = referral.click_delay / 60.0
        return vals

    @api.model
    def _apply_plans(self, plans):
        """Complete the leads as _attribute_all decided (the utm they miss, from an ad or a link,
        and their first touch) and find the link clicks; the values of each conversation."""
        Lead = self.env["crm.lead"]
        attributed = {c: plan for c, plan in plans.items() if plan[0] and plan[1]}
        Lead._vm_whatsapp_fill_first_touch(
            [
                (lead, kind, utm or {}, at or c.first_message_at, c, vals)
                for c, (lead, kind, _t, utm, vals, at) in attributed.items()
            ]
        )
        clicks = self._link_clicks(
            [(c, vals["link_id"], at) for c, (_l, _k, _t, _u, vals, at) in plans.items() if vals.get("link_id") and at]
        )
        values = {}
        for conversation, (lead, kind, token, utm, vals, _at) in plans.items():
            if conversation in clicks:
                vals.update(clicks[conversation])
            if lead and kind:
                utm = utm or {f: lead[f].id for f in ("campaign_id", "source_id", "medium_id")}
                values[conversation] = conversation._lead_values(lead, kind, token, {**utm, **vals})
            elif vals:
                values[conversation] = vals
        return values

    @api.model
    def _link_clicks(self, items):
        """{conversation: {click_at, click_delay}} for (conversation, link id, message time): the
        latest click on the link's tracker in the CLICK_WINDOW_DAYS before the message (to the end
        of its second: message times are whole seconds). One query."""
        if not items:
            return {}
        self.env["link.tracker.click"].flush_model(["link_id", "create_date"])
        self.env["vm.whatsapp.link"].flush_model(["link_tracker_id"])
        rows = ", ".join(["(%s, %s, %s::timestamp)"] * len(items))
        # by position: the conversations may not be created yet (_attribute_new)
        params = [v for i, (_conversation, link_id, at) in enumerate(items) for v in (i, link_id, at)]
        # S608: only placeholders are formatted in
        self.env.cr.execute(
            f"""SELECT v.position, click.create_date, v.sent_at
                  FROM (VALUES {rows}) AS v(position, link_id, sent_at)
                  JOIN vm_whatsapp_link link ON link.id = v.link_id
                  CROSS JOIN LATERAL (
                      SELECT create_date FROM link_tracker_click
                       WHERE link_id = link.link_tracker_id
                         AND create_date < v.sent_at + interval '1 second'
                         AND create_date > v.sent_at - interval '{CLICK_WINDOW_DAYS} days'
                       ORDER BY create_date DESC LIMIT 1) click""",  # noqa: S608
            params,
        )
        return {
            # providers date messages to the second: a click in the message's second is before it
            items[position][0]: {
                "click_at": click_at,
                "click_delay": max((sent_at - click_at).total_seconds(), 0.0) / 60.0,
            }
            for position, click_at, sent_at in self.env.cr.fetchall()
        }

    def _lead_values(self, lead, attribution, token=None, vals=None):
        """What a conversation attributed to ``lead`` by ``attribution`` is written."""
        return {
            "lead_id": lead.id,
            "partner_id": lead.partner_id.id or self.partner_id.id,
            "attribution": attribution,
            "vm_token": token or self.vm_token,
            **(vals or {}),
        }

    def _log_attribution(self, previous=None):
        for conversation in self.filtered("lead_id"):
            _logger.info(
                "WhatsApp conversation %s (%s) attributed to lead %s by %s%s",
                conversation.id,
                mask(conversation.contact_phone) or "no phone",
                conversation.lead_id.id,
                conversation.attribution,
                f" (was {previous})" if previous else "",
            )
