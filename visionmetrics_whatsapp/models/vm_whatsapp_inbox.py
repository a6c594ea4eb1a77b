"""The inbox: applies the webhook requests that the webhook route stored (DESIGN §5, §12).

A request waits in vm.whatsapp.webhook.log as ``received``, in one of ``LANES`` lanes chosen
when it arrived from its contact (or its session for connection events): each lane has its own
scheduled action, so Odoo's cron workers, on one server or several sharing the database, apply
lanes at the same time, while the requests of one contact, always in one lane, are applied in
the order they arrived. A batch of a lane, top to bottom:

1. claim the lane's oldest received requests (``FOR UPDATE SKIP LOCKED``);
2. parse each request's events with its provider adapter, and set aside those not to apply;
3. apply the events kind by kind, each kind by the model it changes, all the events of that
   kind in the batch at once (``HANDLERS``);
4. record each request's outcome on its log.

If anything in steps 2-3 raises, the batch is undone and applied again in ``SPLIT`` parts, each
part that raises likewise, down to single requests: the failing request ends ``failed`` with its
error and the others are applied (a batch of one costs tens of times a request of a batch: one
bad request among 500 makes about 25 batches, not 500). Only transient database errors
(serialization failure, lock, lost connection) give the whole batch back to the cron, which runs
it again; a batch that meets what a concurrent transaction just created (ConcurrentCreation)
stays received and is applied again, whole, by the lane's next run. Failed requests are queued
again by the retry cron after a growing delay, a bounded number of times (see the webhook log).
"""

import logging
import os
import threading
import zlib
from collections import defaultdict

import psycopg2
from psycopg2 import errors as pg_errors

from odoo import SUPERUSER_ID, api, fields, models, sql_db
from odoo.addons.base.models.ir_cron import ODOO_NOTIFY_FUNCTION
from odoo.modules.registry import Registry
from odoo.tools import SQL, mute_logger

from ..providers import WebhookPayloadError
from ..tools.coalesce import Coalescer
from ..tools.collector import collector_paused
from ..tools.text import clean_text
from .bulk import insert_records

_logger = logging.getLogger(__name__)

LANES = 4  # scheduled actions applying requests in parallel (one per cron worker at most)
BATCH_SIZE = 500  # requests per transaction at most...
BATCH_BYTES = 8 * 1024 * 1024  # ...and bodies: a batch of the largest bodies stays a few of them
SPLIT = 10  # parts a failed batch is applied again in
LANE_CRON = "visionmetrics_whatsapp.ir_cron_inbox_lane_%s"

# Event kind -> (model, method) that applies every event of that kind of a batch and returns
# one (state, note) per event, state being processed, duplicate or ignored. Handlers run in
# this order (a message before the statuses that follow it); kinds sharing a handler reach it
# together, in arrival order (a QR code and the connection that follows it).
HANDLERS = {
    "message": ("vm.whatsapp.conversation", "_apply_message_events"),
    "status": ("vm.whatsapp.message", "_apply_status_events"),
    "qr": ("vm.whatsapp.session", "_apply_session_events"),
    "connection": ("vm.whatsapp.session", "_apply_session_events"),
}

# Database errors that say "try again later", not "this request is bad".
TRANSIENT_ERRORS = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
    psycopg2.InterfaceError,
)
# Not a statement time-out (QueryCanceled): a request whose processing is too slow would hold its
# lane for ever; it fails alone and is retried with the others' delays.


class ConcurrentCreation(Exception):
    """What a batch creates (a contact's conversation, an ad's campaign) was created by another
    transaction, committed after this one began: invisible here, seen by the next transaction.
    The batch is applied again, whole, by the lane's next run (not in parts: they would meet the
    same invisible row); its requests wait as received meanwhile, the attempt counted. Only
    requests never attempted before: a batch holding one that was is applied in parts, as for
    any other error."""


def is_transient(error):
    """True for a database error after which the same work may succeed: a concurrency error, a
    lock time-out, a lost connection (an OperationalError with no SQLSTATE)."""
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    return isinstance(error, psycopg2.OperationalError) and not getattr(error, "pgcode", None)


class CronBell:
    """Wakes the cron workers up (NOTIFY cron_trigger, what ir.cron._notifydb sends) on a
    connection to the ``postgres`` database that this process keeps open. _notifydb opens one
    each time, as Odoo closes its connections to ``postgres`` when they are given back: a
    PostgreSQL backend started and stopped for every wake-up, the dearest part of it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._connection, self._pid = None, None

    def ring(self, dbname):
        query = SQL("SELECT %s('cron_trigger', %s)", SQL.identifier(ODOO_NOTIFY_FUNCTION), dbname)
        with self._lock:
            for attempt in (1, 2):
                try:
                    with self._connect().cursor() as cr:
                        cr.execute(query.code, query.params)
                    return
                except psycopg2.Error:
                    self._close()  # e.g. the server restarted: once more on a new connection
                    if attempt == 2:
                        raise

    def _connect(self):
        if self._pid != os.getpid():  # a forked process: its parent's connection is not its own
            self._connection = None
        if self._connection is None or self._connection.closed:
            _dbname, params = sql_db.connection_info_for("postgres")
            self._connection, self._pid = psycopg2.connect(**params), os.getpid()
            self._connection.autocommit = True
        return self._connection

    def _close(self):
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None


_cron_bell = CronBell()


def _trigger_lanes(dbname, lanes):
    """Make the crons of ``lanes`` due and wake the cron workers: one INSERT of triggers and one
    NOTIFY, whatever the number of lanes (ir.cron._trigger would cost one of each per lane)."""
    with Registry(dbname).cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        cron_ids = [
            env["ir.model.data"]._xmlid_to_res_id(LANE_CRON % lane, raise_if_not_found=False) for lane in sorted(lanes)
        ]
        # the active ones, reading no other field of the crons (an ir.actions.server each)
        crons = env["ir.cron"].search_fetch([("id", "in", [i for i in cron_ids if i]), ("active", "=", True)], ["id"])
        if crons:
            now = fields.Datetime.now()
            insert_records(env["ir.cron.trigger"], [{"cron_id": cron.id, "call_at": now} for cron in crons])
            cr.postcommit.add(lambda: _cron_bell.ring(dbname))


# Run after the commit of the requests that wait: a lone request wakes its lane at once; in a
# burst, this process wakes the lanes that received requests once per half second rather than
# once per request (a wake-up costs two transactions, as much as storing several requests).
_wake_lanes = Coalescer(_trigger_lanes, delay=0.5)


class InboxItem:
    """One event of a request, as a handler receives it."""

    __slots__ = ("event", "integration", "log")

    def __init__(self, log, integration, event):
        self.log, self.integration, self.event = log, integration, event


class VmWhatsappInbox(models.AbstractModel):
    _name = "vm.whatsapp.inbox"
    _description = "WhatsApp Inbox"

    # ------------------------------------------------------------------ arrival

    @api.model
    def _lane(self, integration_id, events):
        """The lane of a request: that of its first message's contact (or a status's message or
        recipient), else of its session, so that one contact's requests share a lane."""
        key = next(
            (
                getattr(event, "contact_identity", None) or getattr(event, "recipient", None)
                for event in events
                if event.kind in ("message", "status")
            ),
            None,
        ) or next((event.session for event in events if event.session), "")
        return zlib.crc32(f"{integration_id}:{key}".encode("utf-8", "replace")) % LANES

    @api.model
    def _wake_up(self, lanes=None):
        """Wake ``lanes`` (an iterable of lane numbers; all of them by default) up after the
        current transaction commits."""
        dbname, lanes = self.env.cr.dbname, tuple(range(LANES) if lanes is None else lanes)
        self.env.cr.postcommit.add(lambda: _wake_lanes(dbname, lanes))

    # ------------------------------------------------------------------ scheduled

    @api.model
    def _cron_process(self, lane=0, batch_size=BATCH_SIZE):
        """A lane's cron: apply one batch of its oldest received requests.

        While requests remain, Odoo runs the next batch at once (the cron progress API), but only
        10 batches in a row: then the cron worker sleeps until something wakes it up, or a minute.
        So a batch that leaves requests behind wakes the lanes up again after its commit, and a
        backlog (a burst, an outage of the cron workers) drains without pausing."""
        logs = self._claim(lane, batch_size)
        self._apply(logs)
        # counted up to 10 batches: the cron only needs to know that work remains
        remaining = self.env["vm.whatsapp.webhook.log"].search_count(
            [("state", "=", "received"), ("lane", "=", lane)], limit=10 * batch_size
        )
        self.env["ir.cron"]._notify_progress(done=len(logs), remaining=remaining)
        if remaining:
            self._wake_up([lane])

    @api.model
    def _cron_retry_failed(self):
        """Queue again the failed requests whose retry is due (see the webhook log's backoff)."""
        Log = self.env["vm.whatsapp.webhook.log"]
        due = Log.search(
            [("state", "=", "failed"), ("next_attempt_at", "<=", fields.Datetime.now())], order="id", limit=5000
        )
        if due:
            due.write({"state": "received", "next_attempt_at": False})
            _logger.info("WhatsApp inbox: %s failed webhook requests queued again", len(due))
            self._wake_up()

    @api.model
    def _claim(self, lane, limit, max_bytes=BATCH_BYTES):
        """The oldest received requests of ``lane``, locked: ``limit`` at most, and no more than
        ``max_bytes`` of bodies but for the first (the batch's bodies are parsed in memory).
        Requests that another transaction holds (the Reprocess button, another server's cron)
        are left to it."""
        Log = self.env["vm.whatsapp.webhook.log"]
        Log.flush_model(["state", "lane"])
        try:
            with self.env.cr.savepoint(flush=False), mute_logger("odoo.sql_db"):
                self.env.cr.execute(
                    SQL(
                        """WITH claimed AS (
                               SELECT id, coalesce(payload_size, 0) AS size FROM %s
                                WHERE state = 'received' AND lane = %s ORDER BY id LIMIT %s
                                  FOR UPDATE SKIP LOCKED)
                           SELECT id FROM (
                               SELECT id, sum(size) OVER (ORDER BY id) - size AS before FROM claimed) c
                            WHERE before < %s ORDER BY id""",
                        SQL.identifier(Log._table),
                        lane,
                        limit,
                        max_bytes,
                    )
                )
                return Log.browse([row[0] for row in self.env.cr.fetchall()])
        except pg_errors.SerializationFailure:
            # a request changed since this transaction began (a repeat counted on it): next run
            self._wake_up([lane])
            return Log.browse()

    # ------------------------------------------------------------------ applying

    @api.model
    def _apply(self, logs):
        """Apply the events of ``logs`` and record each one's outcome (the one path of every
        request: the lanes' batches, Reprocess)."""
        if not logs:
            return
        with collector_paused():  # a batch's objects live until its end (tools/collector.py)
            logs._record_outcomes(self._apply_isolated(logs))

    @api.model
    def _apply_isolated(self, logs):
        """{log: (state, error)}; a batch that raises is applied again in SPLIT parts, in order."""
        try:
            with self.env.cr.savepoint():
                return self._apply_batch(logs)
        except Exception as e:
            if is_transient(e):
                raise  # the cron runs the batch again
            if isinstance(e, ConcurrentCreation) and not any(logs.mapped("attempt_count")):
                # once: met again in a new transaction, it is not a concurrent creation, and the
                # parts below isolate the request that causes it
                _logger.info("WhatsApp inbox: %s requests to apply again in a new transaction: %s", len(logs), e)
                return dict.fromkeys(logs, ("received", str(e)))
            if len(logs) > 1:
                size = -(-len(logs) // SPLIT)  # ceiling
                _logger.info("WhatsApp inbox batch of %s requests failed; applying it in parts of %s", len(logs), size)
                outcomes, ordered = {}, logs.sorted("id")  # one contact's requests stay in order
                for start in range(0, len(ordered), size):
                    outcomes.update(self._apply_isolated(ordered[start : start + size]))
                return outcomes
            _logger.warning("WhatsApp webhook log %s failed", logs.id, exc_info=True)
            return {logs: ("failed", clean_text(f"{type(e).__name__}: {e}", 2000))}

    @api.model
    def _apply_batch(self, logs):
        """Parse, set aside, dispatch by kind and apply; {log: (state, error)}."""
        outcomes = {}
        notes = defaultdict(list)  # log -> [(state, note)] of its events
        queues = defaultdict(list)  # handler -> [InboxItem], in arrival order
        integrations = logs.integration_id.exists()
        parsers = {}  # integration -> its adapter, built once per batch
        for log in logs.sorted("id"):
            integration = log.integration_id
            if not integration or integration not in integrations:
                # deleted, maybe just after the request found it (the column has no foreign key)
                log.integration_id = False
                outcomes[log] = log._integration_deleted_outcome()
                continue
            try:
                if integration not in parsers:
                    parsers[integration] = integration._get_provider("parse")
                events = parsers[integration].parse_events(log._body(), log._headers())
            except WebhookPayloadError as e:
                outcomes[log] = ("rejected", clean_text(str(e), 2000))
                continue
            log._set_event_type(events)
            notes.setdefault(log, [])  # a request with no event is "ignored", not missing
            for event in events:
                skipped = self._skip_reason(integration, event)
                if skipped:
                    notes[log].append(("ignored", skipped))
                else:
                    queues[HANDLERS[event.kind]].append(InboxItem(log, integration, event))
        for handler in dict.fromkeys(HANDLERS.values()):
            items = queues.get(handler)
            if items:
                model, method = handler
                results = getattr(self.env[model], method)(items)
                for item, result in zip(items, results, strict=True):
                    notes[item.log].append(result)
        for log, results in notes.items():
            outcomes[log] = self._state_from_results(results)
        return outcomes

    @api.model
    def _skip_reason(self, integration, event):
        """Why an event is not applied (a note), or None: a kind no handler applies, a session
        other than the integration's (e.g. two integrations sharing one Evolution instance)."""
        if event.kind not in HANDLERS:
            return self.env._("Event %(type)s is not handled.", type=getattr(event, "event_type", "") or event.kind)
        if event.session and integration.external_id and event.session != integration.external_id:
            if event.session not in integration.session_ids.mapped("external_id"):
                return self.env._("Event for session %(session)s, not this integration's.", session=event.session)
        return None

    @api.model
    def _state_from_results(self, results):
        """A request's (state, error) from the (state, note) of its events."""
        if not results:  # e.g. a Cloud API envelope with no change, a provider's test ping
            return "ignored", self.env._("The request holds no event.")
        states = {state for state, _note in results}
        state = next((state for state in ("processed", "duplicate") if state in states), "ignored")
        return state, "\n".join(note for _state, note in results if note) or False
