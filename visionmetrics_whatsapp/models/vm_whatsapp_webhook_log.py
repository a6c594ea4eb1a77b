import json
import logging
from collections import defaultdict
from datetime import timedelta

import psycopg2

from odoo import SUPERUSER_ID, api, fields, models
from odoo.exceptions import UserError
from odoo.modules.registry import Registry
from odoo.tools import SQL, mute_logger, sql

from ..providers import SIGNATURE_VALID, WebhookPayloadError
from ..tools.coalesce import Coalescer
from . import access
from .vm_whatsapp_conversation import ConcurrentConversationError
from .vm_whatsapp_integration import PROVIDER_SELECTION

_logger = logging.getLogger(__name__)

# Headers that carry credentials: stored as "[redacted]".
SECRET_HEADERS = frozenset(
    {"authorization", "cookie", "apikey", "x-api-key", "d360-api-key", "x-vm-webhook-secret", "proxy-authorization"}
)
DEFAULT_RETENTION_DAYS = 30
MAX_ATTEMPTS = 8
BATCH_SIZE = 100  # requests per transaction of the inbox cron
INBOX_CRON = "visionmetrics_whatsapp.ir_cron_process_webhook_logs"


def _trigger_inbox_cron(dbname):
    """Make the inbox cron due and wake the cron workers (ir.cron._trigger, in its own cursor)."""
    with Registry(dbname).cursor() as cr:
        cron = api.Environment(cr, SUPERUSER_ID, {}).ref(INBOX_CRON, raise_if_not_found=False)
        if cron:
            cron._trigger()


# Run after the commit of the webhooks that stored requests: one trigger (an INSERT, a NOTIFY on
# a second connection) for all the requests of a quarter second in this process, rather than one
# per request, which cost as much as storing the request; and the inbox cron gets batches.
_wake_inbox_cron = Coalescer(_trigger_inbox_cron, delay=0.25)


class ReferenceWithoutForeignKey(fields.Many2one):
    """A many2one whose column has no foreign key constraint.

    Every webhook inserts a log row. With foreign keys, that INSERT also checks and locks (FOR KEY
    SHARE) the integration's and the company's rows, which every concurrent webhook locks too, and
    PostgreSQL plans those checks again for each request (Odoo discards a connection's plans when
    its pool lends it): the two constraints cost about 15% of the webhook throughput. What they
    ensured is done by the models: deleting an integration empties its logs' reference (as
    ondelete="set null" did), a company that has logs cannot be deleted (as "restrict" did), and
    the inbox treats a log stored for an integration deleted meanwhile as one of a deleted
    integration (_forget_deleted_integrations)."""

    def update_db_foreign_key(self, model, column):
        return


class VmWhatsappWebhookLog(models.Model):
    _name = "vm.whatsapp.webhook.log"
    _description = "WhatsApp Webhook Log"
    _order = "id desc"  # the order of arrival
    _rec_name = "event_type"
    # Logs are only created by the webhook with the integration's company: no per-create
    # company check on the hot path.
    _check_company_auto = False

    # Indexes are few on purpose: every request inserts a row and the inbox cron updates it.
    # (integration_id, received_at) is indexed in init(); the company is not selective; the
    # retention autovacuum reads the table once a day. No foreign keys either (see the class).
    integration_id = ReferenceWithoutForeignKey(
        "vm.whatsapp.integration", ondelete="set null", readonly=True, check_company=True
    )
    company_id = ReferenceWithoutForeignKey(
        "res.company", required=True, readonly=True, default=lambda self: self.env.company
    )
    provider = fields.Selection(PROVIDER_SELECTION, readonly=True)
    event_type = fields.Char(readonly=True)
    received_at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
    remote_addr = fields.Char("Remote Address", readonly=True)
    headers = fields.Text(readonly=True, help="JSON; secrets redacted.")
    payload = fields.Text(readonly=True, help="Raw body as received.")
    signature = fields.Selection([("valid", "Valid"), ("invalid", "Invalid"), ("missing", "Missing")], readonly=True)
    state = fields.Selection(
        [
            ("received", "Received"),
            ("processed", "Processed"),
            ("duplicate", "Duplicate"),
            ("ignored", "Ignored"),
            ("rejected", "Rejected"),
            ("failed", "Failed"),
        ],
        required=True,
        default="received",
        readonly=True,
    )
    error = fields.Text(readonly=True)
    processed_at = fields.Datetime(readonly=True)
    attempt_count = fields.Integer("Attempts", readonly=True)
    message_ids = fields.One2many("vm.whatsapp.message", "webhook_log_id", string="Messages")

    def init(self):
        # The integration's last webhook and its log list read the newest rows first.
        sql.create_index(
            self.env.cr,
            "vm_whatsapp_webhook_log_integration_received_idx",
            self._table,
            ["integration_id", "received_at DESC"],
        )
        # The inbox cron and the retry cron look for the few requests still to process.
        sql.create_index(
            self.env.cr,
            "vm_whatsapp_webhook_log_todo_idx",
            self._table,
            ["state", "id"],
            where="state IN ('received', 'failed')",
        )

    # ------------------------------------------------------------------ receiving

    @api.model
    def _redact_headers(self, headers):
        return json.dumps(
            {k: ("[redacted]" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()},
            ensure_ascii=False,
        )

    @api.model
    def _decode_body(self, body):
        """The raw body as text; bytes that are not UTF-8 are kept as escapes, never dropped."""
        return body.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")

    @api.model
    def _receive(self, endpoint, provider, body, headers, remote_addr, state="received", **vals):
        """Store a webhook request as it came: the only write of the webhook route. ``endpoint``
        is the integration's WebhookEndpoint, or None for an unknown token. A request stored
        ``received`` waits for the inbox cron, woken up shortly after the commit.

        One INSERT rather than the ORM's create, whose defaults, precompute, cache and query for
        the time cost as much as the rest of the request on this hot path. Only plain columns
        of this model are written (none computed or related)."""
        if endpoint:
            company_id = endpoint.company_id
        else:  # a request with an unknown token belongs to no company: file it under the first one
            company_id = self.env["res.company"].sudo().search([], order="id", limit=1).id
        row = {
            "integration_id": endpoint.id if endpoint else None,
            "company_id": company_id,
            "provider": provider if provider in dict(PROVIDER_SELECTION) else None,
            "remote_addr": remote_addr,
            "headers": self._redact_headers(headers),
            "payload": self._decode_body(body),
            "state": state,
            "signature": vals.pop("signature", None),
            "event_type": vals.pop("event_type", None),
            "error": vals.pop("error", None),
            "attempt_count": 0,
        }
        if vals:
            raise ValueError(f"Unexpected webhook log values: {sorted(vals)}")
        now = SQL("(now() AT TIME ZONE 'UTC')")
        self.env.cr.execute(
            SQL(
                "INSERT INTO %s (%s, received_at, create_date, write_date) VALUES (%s, %s, %s, %s) RETURNING id",
                SQL.identifier(self._table),
                SQL(", ").join(SQL.identifier(column) for column in row),
                SQL(", ").join(row.values()),
                now,
                now,
                now,
            )
        )
        if state == "received":
            dbname = self.env.cr.dbname
            self.env.cr.postcommit.add(lambda: _wake_inbox_cron(dbname))
        return self.browse(self.env.cr.fetchone()[0])

    def _body(self):
        return (self.payload or "").encode("utf-8")

    def _headers(self):
        return json.loads(self.headers or "{}")

    # ------------------------------------------------------------------ processing

    @api.model
    def _cron_process_received(self, batch_size=BATCH_SIZE):
        """The inbox cron: process the oldest received requests, one batch per transaction.

        While requests remain, Odoo runs the next batch at once (the cron progress API), but only
        10 batches in a row: then the cron worker sleeps until something wakes it up, or a minute.
        So a batch that leaves requests behind wakes the cron up again after its commit, and a
        backlog (a burst, an outage of the cron worker) drains without a pause per 1,000."""
        logs = self.search([("state", "=", "received")], order="id", limit=batch_size)
        logs._process_received()
        remaining = self.search_count([("state", "=", "received")], limit=100000)
        self.env["ir.cron"]._notify_progress(done=len(logs), remaining=remaining)
        if remaining:
            dbname = self.env.cr.dbname
            self.env.cr.postcommit.add(lambda: _wake_inbox_cron(dbname))

    def _process_received(self):
        """Process requests together (see _process_batch); when anything in the batch fails, undo
        it and process them one by one, so that one bad request never holds up the others."""
        try:
            with self.env.cr.savepoint():
                self._process_batch()
        except psycopg2.OperationalError:
            raise  # serialization failure, lock: the cron runs the batch again
        except Exception:  # noqa: BLE001 - isolated below, request by request
            _logger.info("WhatsApp webhook batch %s failed; processing its requests one by one", self.ids,
                         exc_info=True)  # fmt: skip
            for log in self:
                log._process()

    def _process_batch(self):
        """Apply the events of several requests with as few queries as possible: one search for
        the conversations, one for the messages already stored, one INSERT for the new messages.
        The outcome of each request is recorded as _process would record it."""
        self._forget_deleted_integrations()
        outcomes = {log: [] for log in self}
        messages = []  # (log, event) of the message events to store, in arrival order
        others = []
        for log in self:
            if not log.integration_id:
                outcomes[log] = None
                continue
            try:
                events = log.integration_id._get_parser().parse_webhook(log._body(), log._headers())
            except WebhookPayloadError as e:
                outcomes[log] = ("rejected", str(e))
                continue
            event_type = self._event_type(events)
            if log.event_type != event_type:
                log.event_type = event_type
            for event in events:
                skipped = log._skip_event(event)
                if skipped:
                    outcomes[log].append(skipped)
                elif event.kind == "message":
                    messages.append((log, event))
                else:
                    others.append((log, event))
        for (log, _event), result in zip(messages, self._store_messages(messages), strict=True):
            outcomes[log].append(result)
        for log, event in others:
            outcomes[log].append(log._process_event(event))
        now = fields.Datetime.now()
        groups = defaultdict(lambda: self.browse())
        for log, results in outcomes.items():
            if results is None:
                state, error = "failed", self._no_integration_error()
            elif isinstance(results, tuple):
                state, error = results
            else:
                state, error = self._state_from_outcomes(results)
            groups[(state, error, log.attempt_count + 1)] |= log
        for (state, error, attempts), logs in groups.items():
            logs.write({"state": state, "error": error, "attempt_count": attempts, "processed_at": now})

    @api.model
    def _store_messages(self, items):
        """Store the messages of (log, event) pairs; one (state, note) per pair."""
        Conversation = self.env["vm.whatsapp.conversation"]
        Message = self.env["vm.whatsapp.message"]
        if not items:
            return []
        conversations = Conversation._get_or_create_for_events([(log.integration_id, event) for log, event in items])
        stored = Message.search_fetch(
            [
                ("integration_id", "in", list({log.integration_id.id for log, _event in items})),
                ("external_id", "in", list({event.message_id for _log, event in items})),
            ],
            ["integration_id", "external_id"],
        )
        seen = {(message.integration_id.id, message.external_id) for message in stored}
        results, vals_list, created_for = [], [], []
        for log, event in items:
            key = (log.integration_id.id, event.message_id)
            if key in seen:
                results.append(("duplicate", False))
                continue
            seen.add(key)
            conversation = conversations[(log.integration_id.id, event.contact_identity)]
            vals_list.append(Message._prepare_vals_from_event(conversation, event, log))
            created_for.append((conversation, event))
            results.append(("processed", False))
        # A message stored meanwhile by a concurrent request (Reprocess) fails this INSERT: the
        # whole batch is then processed again request by request, where it counts as a duplicate
        # (and where an error that is not a duplicate is logged).
        with mute_logger("odoo.sql_db"):
            new_messages = Message.create(vals_list)
        for message, (conversation, event) in zip(new_messages, created_for, strict=True):
            conversation._register_message(message, event)
        if any(message.media_state == "pending" for message in new_messages):
            self.env.ref("visionmetrics_whatsapp.ir_cron_download_media")._trigger()
        return results

    def _forget_deleted_integrations(self):
        """Empty the integration of logs stored by a request that found the integration just
        before another transaction deleted it (the column has no foreign key): they are then
        processed as the logs of a deleted integration, instead of failing on a missing record."""
        integrations = self.integration_id.exists()
        deleted = self.filtered(lambda log: log.integration_id and log.integration_id not in integrations)
        if deleted:
            deleted.integration_id = False

    @api.model
    def _detach_integrations(self, integration_ids):
        """Empty the integration of the logs of integrations being deleted; the logs are kept."""
        if not integration_ids:
            return
        self.env.cr.execute(
            SQL(
                "UPDATE %s SET integration_id = NULL WHERE integration_id IN %s",
                SQL.identifier(self._table),
                tuple(integration_ids),
            )
        )
        self.invalidate_model(["integration_id"])

    @api.model
    def _event_type(self, events):
        return ",".join(sorted({event.kind for event in events}))[:64] or "empty"

    def _process(self):
        """Parse and apply the events of one authenticated request, then record the outcome in
        one write (the path of a single request: Reprocess, retries, a failed batch)."""
        self.ensure_one()
        self._forget_deleted_integrations()
        outcome = {"attempt_count": self.attempt_count + 1, "processed_at": fields.Datetime.now()}
        if not self.integration_id:
            self.write({**outcome, "state": "failed", "error": self._no_integration_error()})
            return
        try:
            events = self.integration_id._get_parser().parse_webhook(self._body(), self._headers())
        except WebhookPayloadError as e:
            self.write({**outcome, "state": "rejected", "error": str(e)})
            return
        outcome["event_type"] = self._event_type(events)
        try:
            with self.env.cr.savepoint():
                results = [self._skip_event(event) or self._process_event(event) for event in events]
        except ConcurrentConversationError:
            error = self.env._("A concurrent request created this contact's conversation; processed again shortly.")
            self.write({**outcome, "state": "failed", "error": error})
            self.env.ref("visionmetrics_whatsapp.ir_cron_retry_webhook_logs")._trigger()
            return
        except psycopg2.OperationalError:
            raise  # serialization failure, lock: the whole transaction is retried
        except Exception as e:  # noqa: BLE001 - any bug in processing: keep the request, retry later
            _logger.exception("WhatsApp webhook log %s failed", self.id)
            self.write({**outcome, "state": "failed", "error": f"{type(e).__name__}: {e}"})
            return
        state, error = self._state_from_outcomes(results)
        self.write({**outcome, "state": state, "error": error})

    # event kind -> method; each returns (state, note) with state processed, duplicate or ignored
    _EVENT_HANDLERS = {
        "message": "_process_message",
        "status": "_process_status",
        "connection": "_process_connection",
        "qr": "_process_qr",
    }

    def _skip_event(self, event):
        """(state, note) for an event that is not applied: one naming another session than the
        integration's, a kind with no handler, a group message. None for an event to apply."""
        integration = self.integration_id
        if event.session and integration.external_id and event.session != integration.external_id:
            if event.session not in integration.session_ids.mapped("external_id"):
                return "ignored", self.env._(
                    "Event for session %(session)s, not this integration's.", session=event.session
                )
        if event.kind not in self._EVENT_HANDLERS:
            return "ignored", self.env._(
                "Event %(type)s is not handled.", type=getattr(event, "event_type", event.kind)
            )
        if event.kind == "message" and event.is_group:
            return "ignored", self.env._("Group message %(id)s: groups are not conversations.", id=event.message_id)
        return None

    def _process_event(self, event):
        return getattr(self, self._EVENT_HANDLERS[event.kind])(event)

    def _process_message(self, event):
        conversation = self.env["vm.whatsapp.conversation"]._get_or_create_for_event(self.integration_id, event)
        message = self.env["vm.whatsapp.message"]._create_from_event(conversation, event, self)
        if not message:
            return "duplicate", False
        conversation._register_message(message, event)
        return "processed", False

    def _process_status(self, event):
        message = self.env["vm.whatsapp.message"].search(
            [("integration_id", "=", self.integration_id.id), ("external_id", "=", event.message_id)], limit=1
        )
        if not message:
            return "ignored", self.env._(
                "Status %(status)s for unknown message %(id)s.", status=event.status, id=event.message_id
            )
        message._apply_status(event.status, event.error)
        return "processed", False

    def _find_session(self, event):
        sessions = self.integration_id.session_ids
        return (
            sessions.filtered(lambda s: event.session and s.external_id == event.session)[:1]
            or sessions.filtered(lambda s: s.state in ("pending", "qr_ready", "connected"))[:1]
        )

    def _process_connection(self, event):
        session = self._find_session(event)
        if not session:
            return "ignored", self.env._("Connection update with no session to apply it to.")
        session._apply_connection_update(event.state, phone=event.phone, reason=event.reason)
        return "processed", False

    def _process_qr(self, event):
        session = self._find_session(event)
        if not session:
            return "ignored", self.env._("QR code with no session waiting for it.")
        session._apply_qr_update(qr_code=event.qr_code, qr_image=event.qr_image, pairing_code=event.pairing_code)
        return "processed", False

    @api.model
    def _state_from_outcomes(self, outcomes):
        """The (state, error) of a request from the (state, note) of its events."""
        states = {state for state, _note in outcomes}
        state = next((state for state in ("processed", "duplicate") if state in states), "ignored")
        return state, "\n".join(note for _state, note in outcomes if note) or False

    def _no_integration_error(self):
        return self.env._("The integration of this request was deleted.")

    # ------------------------------------------------------------------ actions

    def action_reprocess(self):
        """Process again requests whose signature was verified when they arrived (the stored
        headers are redacted, so an unverified request cannot be authenticated afterwards)."""
        access.check_manager(self.env)
        access.check_records(self)
        unverified = self.filtered(lambda log: log.signature != SIGNATURE_VALID or not log.integration_id)
        if unverified:
            raise UserError(
                self.env._(
                    "Only requests authenticated on arrival can be processed again. These were not: %(ids)s. "
                    "The provider delivers them again when its request was answered with an error.",
                    ids=", ".join(str(i) for i in unverified.ids),
                )
            )
        for log in self:
            log._process()
        return True

    # ------------------------------------------------------------------ scheduled

    @api.model
    def _cron_retry_failed(self, limit=200):
        """Process again the failed requests that were authenticated on arrival."""
        logs = self.search(
            [("state", "=", "failed"), ("signature", "=", SIGNATURE_VALID), ("attempt_count", "<", MAX_ATTEMPTS)],
            order="received_at",
            limit=limit,
        )
        for log in logs:
            try:
                with self.env.cr.savepoint():
                    log.action_reprocess()
            except UserError as e:
                log.write({"state": "failed", "error": str(e), "processed_at": fields.Datetime.now()})
            self.env.cr.commit()  # one log per transaction, so one failure never undoes the others

    @api.autovacuum
    def _gc_old_logs(self):
        """Drop old requests that need nothing more (processed, duplicate, ignored, rejected).
        Deduplication does not depend on logs: it is the unique (integration, message id) of
        vm.whatsapp.message, kept as long as the messages."""
        days = int(
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("visionmetrics_whatsapp.webhook_log_retention_days", DEFAULT_RETENTION_DAYS)
        )
        if days <= 0:
            return
        limit_date = fields.Datetime.now() - timedelta(days=days)
        old = self.sudo().search(
            [("received_at", "<", limit_date), ("state", "in", ("processed", "duplicate", "ignored", "rejected"))]
        )
        with mute_logger("odoo.models.unlink"):
            old.unlink()
        _logger.info("Removed %s WhatsApp webhook logs older than %s days", len(old), days)
