"""Conversion events sent back to Meta (Conversions API for Business Messaging, DESIGN §11).

A row is made when a lead whose conversation came from a click-to-WhatsApp ad (it carries a
``ctwa_clid``) is qualified or won, once per lead and event (a unique constraint), and only when
the conversation's integration has a dataset id and sends that event. It waits ``queued`` until
the send cron (woken by the enqueue, and every few minutes) posts it to
``<Graph API>/<version>/<dataset id>/events``; then it is ``sent`` with Meta's answer, or queued
again after a growing delay on a transient failure (time-out, 5xx, rate limit), or ``failed`` on
a permanent one (bad token, rejected event) or after MAX_ATTEMPTS.

Each event is sent by whoever holds its row lock (``FOR UPDATE SKIP LOCKED``) and recorded in the
same transaction, so two cron workers, or the cron and an administrator's "Send now", never send
one twice. The event carries a stable ``event_id`` (lead and event), which Meta uses to drop a
duplicate if a send is ever repeated after a crash between Meta's answer and the commit.
"""

import json
import logging
from datetime import timedelta, timezone

from psycopg2 import errors as pg_errors

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL, mute_logger

from ..providers.meta_conversions import MetaApiError, MetaApiRetryableError, build_event
from ..tools.text import clean_text
from . import access

_logger = logging.getLogger(__name__)

EVENTS = [("LeadSubmitted", "LeadSubmitted"), ("Purchase", "Purchase")]
# Meta event -> the integration's boolean that sends it
EVENT_SETTINGS = {"LeadSubmitted": "meta_send_lead_submitted", "Purchase": "meta_send_purchase"}
MAX_ATTEMPTS = 10
RETRY_BASE_DELAY = timedelta(minutes=1)  # then 2, 4, 8... minutes
RETRY_MAX_DELAY = timedelta(hours=6)
CRON_BATCH = 50  # events per cron run (one transaction each)
SEND_NOW_LIMIT = 50  # events per "Send now"
CRON_TRANSIENT_STREAK = 3  # transient failures in a row that end a cron run (Meta is down)
ERROR_MAX_LENGTH = 2000
CRON = "visionmetrics_whatsapp.ir_cron_send_conversions"
SKIP_LOCKED = SQL("FOR UPDATE SKIP LOCKED")


def retry_delay(attempt):
    """The wait after failed attempt number ``attempt`` (1, 2...): doubling, bounded."""
    return min(RETRY_BASE_DELAY * 2 ** max(attempt - 1, 0), RETRY_MAX_DELAY)


class VmWhatsappConversion(models.Model):
    _name = "vm.whatsapp.conversion"
    _inherit = ["vm.whatsapp.company.guard"]
    _description = "WhatsApp Conversion Sent to Meta"
    _order = "id desc"
    _check_company_auto = True

    company_id = fields.Many2one("res.company", required=True, index=True, readonly=True)
    integration_id = fields.Many2one(
        "vm.whatsapp.integration", required=True, index=True, readonly=True, ondelete="cascade", check_company=True
    )
    lead_id = fields.Many2one("crm.lead", required=True, readonly=True, ondelete="cascade", check_company=True)
    conversation_id = fields.Many2one(
        "vm.whatsapp.conversation", readonly=True, index="btree_not_null", ondelete="set null", check_company=True
    )
    ctwa_clid = fields.Char("Click ID (ctwa_clid)", required=True, readonly=True)
    event_name = fields.Selection(EVENTS, "Meta Event", required=True, readonly=True)
    event_time = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
    value = fields.Monetary(readonly=True, currency_field="currency_id")
    currency_id = fields.Many2one("res.currency", readonly=True)
    state = fields.Selection(
        [("queued", "Queued"), ("sent", "Sent"), ("failed", "Failed")],
        required=True,
        default="queued",
        readonly=True,
        index=True,
    )
    attempt_count = fields.Integer("Attempts", readonly=True)
    next_attempt_at = fields.Datetime(
        readonly=True, index="btree_not_null", help="When the event is sent (again); empty once sent or failed."
    )
    request_payload = fields.Text("Request", readonly=True, help="The body last posted to Meta (no credentials).")
    response = fields.Text("Meta's Answer", readonly=True)
    sent_at = fields.Datetime(readonly=True)
    error = fields.Text(readonly=True)

    _sql_constraints = [
        ("lead_event_uniq", "UNIQUE(lead_id, event_name)", "Each event is sent to Meta once per lead."),
    ]

    @api.depends("event_name", "lead_id")
    def _compute_display_name(self):
        for conversion in self:
            conversion.display_name = f"{conversion.event_name or ''}: {conversion.lead_id.name or ''}"

    # ------------------------------------------------------------------ actions

    def action_retry(self):
        """Queue failed events again, to be sent at once (after fixing the settings)."""
        self._check_manage_access()
        failed = self.filtered(lambda c: c.state == "failed")
        failed.write({"state": "queued", "attempt_count": 0, "next_attempt_at": fields.Datetime.now(), "error": False})
        if failed:
            self._wake_up()
        return True

    def action_send_now(self):
        """Send the selected queued events now, without waiting for their retry time; events the
        cron is sending at this moment are left to it."""
        self._check_manage_access()
        claimed = self._claim(SEND_NOW_LIMIT, ids=self.filtered(lambda c: c.state == "queued").ids)
        clients = {}
        for conversion in claimed:
            conversion.sudo()._send(clients)
        sent = claimed.filtered(lambda c: c.state == "sent")
        message = self.env._("%(sent)s of %(count)s events sent to Meta.", sent=len(sent), count=len(claimed))
        kind = "success" if len(sent) == len(claimed) else "warning"
        notification = self.env["vm.whatsapp.integration"]._notify_user(message, notification_type=kind)
        notification["params"]["next"] = {"type": "ir.actions.client", "tag": "soft_reload"}
        return notification

    def _check_manage_access(self):
        access.check_manager(self.env)
        access.check_records(self)

    # ------------------------------------------------------------------ enqueue

    @api.model
    def _enqueue(self, leads_by_event):
        """Queue the events of ``leads_by_event`` ({event name: crm.lead records}) for the leads
        whose conversation carries a click id, on an integration with a dataset id that sends
        that event; the lead's oldest such conversation is the one attributed. Events already
        queued or sent for a lead are skipped. Set-based: three queries and one create, whatever
        the number of leads. Called as superuser (a salesperson winning a lead queues the
        event): the rows only hold what the leads' own conversations and integrations say."""
        lead_ids = {event: set(leads.ids) for event, leads in leads_by_event.items() if leads}
        all_ids = set().union(*lead_ids.values())
        if not all_ids:
            return self.browse()
        conversations = self.env["vm.whatsapp.conversation"].search(
            [
                ("lead_id", "in", list(all_ids)),
                ("ctwa_clid", "!=", False),
                ("integration_id.meta_dataset_id", "!=", False),
            ],
            order="first_message_at, id",
        )
        chosen = {}  # (lead id, event) -> conversation
        for conversation in conversations:
            lead, integration = conversation.lead_id, conversation.integration_id
            if lead.company_id and lead.company_id != conversation.company_id:
                continue  # a lead moved to another company since: not this company's event
            for event, ids in lead_ids.items():
                if lead.id in ids and integration[EVENT_SETTINGS[event]]:
                    chosen.setdefault((lead.id, event), conversation)
        if not chosen:
            return self.browse()
        existing = self.search_fetch(
            [("lead_id", "in", list({lead_id for lead_id, _event in chosen})), ("event_name", "in", list(lead_ids))],
            ["lead_id", "event_name"],
        )
        for conversion in existing:
            chosen.pop((conversion.lead_id.id, conversion.event_name), None)
        now = fields.Datetime.now()
        vals_list = []
        for (_lead_id, event), conversation in chosen.items():
            lead, company = conversation.lead_id, conversation.company_id
            vals = {
                "company_id": company.id,
                "integration_id": conversation.integration_id.id,
                "lead_id": lead.id,
                "conversation_id": conversation.id,
                "ctwa_clid": conversation.ctwa_clid,
                "event_name": event,
                "event_time": now,
                "next_attempt_at": now,
            }
            if event == "Purchase":
                vals.update(value=lead.expected_revenue, currency_id=company.currency_id.id)
            vals_list.append(vals)
        created = self._create_new(vals_list)
        if created:
            queued = ", ".join(f"{c.event_name} lead {c.lead_id.id}" for c in created)
            _logger.info("Meta conversions queued: %s", queued)
            self._wake_up()
        return created

    @api.model
    def _create_new(self, vals_list):
        """Create the rows in one INSERT; when one exists already (queued by a concurrent
        transaction), one by one, skipping those."""
        if not vals_list:
            return self.browse()
        try:
            with self.env.cr.savepoint(), mute_logger("odoo.sql_db"):
                return self.create(vals_list)
        except pg_errors.UniqueViolation:
            if len(vals_list) == 1:
                return self.browse()
        return self.browse().union(*(self._create_new([vals]) for vals in vals_list))

    @api.model
    def _wake_up(self, at=None):
        cron = self.env.ref(CRON, raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger(at)

    # ------------------------------------------------------------------ sending

    @api.model
    def _cron_send(self, limit=CRON_BATCH):
        """Send due events, one per transaction: claim one (skipping those another worker holds),
        post it, record Meta's answer, commit. A documented cron loop: each commit records a
        send as soon as it is made, and releases only that event's lock. A run ends after
        CRON_TRANSIENT_STREAK transient failures in a row: the others wait for their retry."""
        clients = {}
        done = streak = 0
        while done < limit and streak < CRON_TRANSIENT_STREAK:
            conversion = self._claim(1)
            if not conversion:
                break
            conversion._send(clients)
            done += 1
            streak = streak + 1 if conversion.state == "queued" else 0  # queued again: a transient failure
            self.env.cr.commit()  # pylint: disable=invalid-commit
        remaining = self.search_count(
            [("state", "=", "queued"), ("next_attempt_at", "<=", fields.Datetime.now())],
            limit=1,
        )
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)

    @api.model
    def _claim(self, limit, ids=None):
        """Lock and return up to ``limit`` queued events: those due, or those of ``ids`` (due or
        not). Events locked by another transaction are skipped, and so are those that changed
        since this transaction began (just sent elsewhere: locking one of them fails)."""
        self.flush_model(["state", "next_attempt_at"])
        if ids is not None and not ids:
            return self.browse()
        table = SQL.identifier(self._table)
        where = SQL("id IN %s", tuple(ids)) if ids is not None else SQL("next_attempt_at <= %s", fields.Datetime.now())
        order = SQL("ORDER BY next_attempt_at, id LIMIT %s", limit)
        select = SQL("SELECT id FROM %s WHERE state = 'queued' AND %s %s", table, where, order)
        claimed = self._lock(SQL("%s %s", select, SKIP_LOCKED))
        if claimed is not None:
            return claimed
        # one of them was sent meanwhile: lock the others one by one
        self.env.cr.execute(select)
        claimed = self.browse()
        for (conversion_id,) in self.env.cr.fetchall():
            one = SQL("SELECT id FROM %s WHERE id = %s AND state = 'queued' %s", table, conversion_id, SKIP_LOCKED)
            claimed |= self._lock(one) or self.browse()
        return claimed

    @api.model
    def _lock(self, query):
        """The rows ``query`` locks; None when one of them changed since this transaction began."""
        try:
            with self.env.cr.savepoint(flush=False), mute_logger("odoo.sql_db"):
                self.env.cr.execute(query)
                return self.browse([row[0] for row in self.env.cr.fetchall()])
        except pg_errors.SerializationFailure:
            return None

    def _send(self, clients):
        """Post this (claimed) event to Meta and record the outcome. ``clients`` caches the Graph
        client of each integration for a run."""
        self.ensure_one()
        integration = self.integration_id
        attempt = self.attempt_count + 1
        body = None
        try:
            if integration not in clients:
                clients[integration] = integration._meta_conversions_client()
            body = self._request_body()
            answer = clients[integration].send_events(integration.meta_dataset_id, body)
        except MetaApiRetryableError as e:
            self._record_failure(e, attempt, body, retry=True)
        except (MetaApiError, UserError) as e:
            self._record_failure(e, attempt, body, retry=False)
        else:
            self.write(
                {
                    "state": "sent",
                    "sent_at": fields.Datetime.now(),
                    "attempt_count": attempt,
                    "next_attempt_at": False,
                    "request_payload": _dump(body),
                    "response": _dump(answer),
                    "error": False,
                }
            )
            _logger.info("Meta conversion %s (%s, lead %s) sent", self.id, self.event_name, self.lead_id.id)

    def _request_body(self):
        """The Conversions API body of this event: ``{"data": [event]}``."""
        integration = self.integration_id
        purchase = self.event_name == "Purchase"
        event = build_event(
            self.event_name,
            self.event_time.replace(tzinfo=timezone.utc).timestamp(),
            self.ctwa_clid,
            event_id=f"vm-lead-{self.lead_id.id}-{self.event_name}",
            waba_id=integration.meta_waba_id,
            value=self.value if purchase else None,
            currency=self.currency_id.name if purchase else None,
        )
        body = {"data": [event]}
        if integration.meta_test_event_code:
            body["test_event_code"] = integration.meta_test_event_code
        return body

    def _record_failure(self, error, attempt, body, retry):
        vals = {
            "attempt_count": attempt,
            "error": clean_text(str(error), ERROR_MAX_LENGTH),
            "response": getattr(error, "answer", None) or False,
            "request_payload": _dump(body) if body else self.request_payload,
        }
        if retry and attempt < MAX_ATTEMPTS:
            next_attempt = fields.Datetime.now() + retry_delay(attempt)
            vals.update(state="queued", next_attempt_at=next_attempt)
            self._wake_up(next_attempt)
        else:
            vals.update(state="failed", next_attempt_at=False)
        self.write(vals)
        _logger.warning(
            "Meta conversion %s (%s, lead %s), attempt %s: %s%s",
            self.id,
            self.event_name,
            self.lead_id.id,
            attempt,
            error,
            "" if vals["state"] == "failed" else " (will retry)",
        )


def _dump(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if value is not None else False
