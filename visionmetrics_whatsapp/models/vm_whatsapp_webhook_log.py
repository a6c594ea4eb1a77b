import functools
import hashlib
import json
import logging
from collections import defaultdict
from datetime import timedelta

from psycopg2 import errors as pg_errors

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL, mute_logger, sql

from .. import providers
from ..providers import SIGNATURE_VALID, get_provider_class
from ..tools.redact import rate_bucket, redact_body, redact_headers
from ..tools.text import clean_text
from . import access

_logger = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
# A failed request is applied again after 1, 2, 4, ... minutes, at most MAX_ATTEMPTS times in
# all (the last retry about 2 hours after the first failure), then it stays failed.
MAX_ATTEMPTS = 8
RETRY_BASE_DELAY = timedelta(minutes=1)
ERROR_MAX_LENGTH = 2000
IGNORED_REPEAT_RETRY = timedelta(seconds=30)  # at most 2,880 rows a day for a state nobody takes
# One request per integration and provider event id (see _receive).
EVENT_INDEX = "vm_whatsapp_webhook_log_event_uniq"
EVENT_SAVEPOINT = "vm_whatsapp_webhook_log_event"
# Requests nobody authenticated: one row per source address and minute (_receive_unauthenticated).
RATE_INDEX = "vm_whatsapp_webhook_log_rate_uniq"
DEFAULT_UNAUTHENTICATED_PER_MINUTE = 30
UNAUTHENTICATED_BODY_BYTES = 2048  # what is kept of the body of such a request


@functools.cache
def provider_secrets(code):
    """(secret header names, secret body fields) that the provider ``code`` declares; those of
    every provider for a code that names none."""
    codes = [code] if code in providers.PROVIDERS else list(providers.PROVIDERS)
    classes = [get_provider_class(c) for c in codes]
    return (
        frozenset().union(*(cls.secret_headers for cls in classes)),
        tuple(dict.fromkeys(field for cls in classes for field in cls.secret_body_fields)),
    )


@functools.cache
def insert_template(table, columns):
    """The text of an INSERT of ``columns`` into ``table`` stamped now, with a ``%s`` for each
    value and one for what follows (see VmWhatsappWebhookLog._insert_query)."""
    now = "(now() AT TIME ZONE 'UTC')"
    names = ", ".join(SQL.identifier(column).code for column in columns)
    values = ", ".join(["%s"] * len(columns))
    # identifiers quoted by SQL.identifier, values left to psycopg2: no value reaches this text
    table = SQL.identifier(table).code
    return (
        f"INSERT INTO {table} ({names}, received_at, create_date, write_date)"  # noqa: S608
        f" VALUES ({values}, {now}, {now}, {now}) %s"
    )


class ReferenceWithoutForeignKey(fields.Many2one):
    """A many2one whose column has no foreign key constraint.

    Every webhook inserts a log row. With foreign keys, that INSERT also checks and locks (FOR KEY
    SHARE) the integration's and the company's rows, which every concurrent webhook locks too, and
    PostgreSQL plans those checks again for each request (Odoo discards a connection's plans when
    its pool lends it): the two constraints cost about 15% of the webhook throughput. What they
    ensured is done by the models: deleting an integration empties its logs' reference (as
    ondelete="set null" did), a company that has logs cannot be deleted (as "restrict" did), and
    the inbox treats a log stored for an integration deleted meanwhile as one of a deleted
    integration (vm.whatsapp.inbox._apply_batch)."""

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
    provider = fields.Selection(providers.selection(), readonly=True)  # as vm.whatsapp.integration's
    event_type = fields.Char(readonly=True)
    received_at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
    remote_addr = fields.Char("Remote Address", readonly=True)
    headers = fields.Text(
        readonly=True, help="JSON; only the values of headers that are no credential, the others redacted."
    )
    payload = fields.Text(
        readonly=True,
        help="Body as received, with the credentials that providers put in it redacted; for a request "
        "nobody authenticated, its first 2 kB only.",
    )
    payload_size = fields.Integer(
        "Body Size", readonly=True, help="Bytes of the body: read, else announced (Content-Length)."
    )
    payload_truncated = fields.Boolean(
        "Body Truncated", readonly=True, help="Only the beginning of the body (or none of it) is stored."
    )
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
    next_attempt_at = fields.Datetime(
        "Next Attempt", readonly=True, help="When a failed request is applied again; empty when it will not be."
    )
    lane = fields.Integer(
        required=True, default=0, readonly=True, help="The inbox lane that applies the request (vm.whatsapp.inbox)."
    )
    repeat_key = fields.Char(
        readonly=True, help="What a request holding only a connection state says, to store its repeats once."
    )
    event_id = fields.Char(
        "Event ID",
        readonly=True,
        copy=False,
        help="The provider's id of what the request carries; a request with the same one is answered as a "
        "duplicate, neither stored nor applied again.",
    )
    rate_key = fields.Char(
        readonly=True,
        copy=False,
        help="Source address and minute of a request nobody authenticated: the next ones of that minute "
        "are counted on it.",
    )
    repeat_count = fields.Integer(
        "Repeats",
        readonly=True,
        help="Identical requests received after this one; for a request nobody authenticated, the "
        "requests of the same address in the same minute.",
    )
    last_repeat_at = fields.Datetime("Last Repeat", readonly=True)
    message_ids = fields.One2many("vm.whatsapp.message", "webhook_log_id", string="Messages")

    def init(self):
        # The integration's last webhook and its log list read the newest rows first.
        sql.create_index(
            self.env.cr,
            "vm_whatsapp_webhook_log_integration_received_idx",
            self._table,
            ["integration_id", "received_at DESC"],
        )
        # Each lane of the inbox claims its oldest received requests.
        sql.create_index(
            self.env.cr, "vm_whatsapp_webhook_log_received_idx", self._table, ["lane", "id"], where="state = 'received'"
        )
        # The retry cron looks for the failed requests whose retry is due.
        sql.create_index(
            self.env.cr,
            "vm_whatsapp_webhook_log_retry_idx",
            self._table,
            ["next_attempt_at"],
            where="state = 'failed' AND next_attempt_at IS NOT NULL",
        )
        # A provider event is stored once per integration, even when delivered concurrently.
        self._create_partial_unique_index(EVENT_INDEX, "integration_id, event_id", "event_id")
        # Requests nobody authenticated are counted on one row per address and minute.
        self._create_partial_unique_index(RATE_INDEX, "rate_key", "rate_key")
        # A connection state is compared with the integration's latest one (_store_repeat).
        sql.create_index(
            self.env.cr,
            "vm_whatsapp_webhook_log_repeat_idx",
            self._table,
            ["integration_id", "id DESC"],
            where="repeat_key IS NOT NULL",
        )

    def _create_partial_unique_index(self, name, columns, column):
        """A unique index on ``columns`` (SQL) of the rows whose ``column`` is set, unless it exists."""
        if not sql.index_exists(self.env.cr, name):
            self.env.cr.execute(
                SQL(
                    "CREATE UNIQUE INDEX %s ON %s (%s) WHERE %s IS NOT NULL",
                    SQL.identifier(name),
                    SQL.identifier(self._table),
                    SQL(columns),
                    SQL.identifier(column),
                )
            )

    # ------------------------------------------------------------------ receiving

    @api.model
    def _redact_headers(self, headers, secret_headers=frozenset()):
        """The headers to store, as JSON: allow-listed values only (tools/redact.py)."""
        return json.dumps(redact_headers(headers, secret_headers), ensure_ascii=False)

    @api.model
    def _decode_body(self, body):
        """The raw body as text; bytes that are not UTF-8 are kept as escapes, never dropped."""
        return body.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")

    @api.model
    def _receive(self, endpoint, provider, body, headers, remote_addr, state="received", **vals):
        """Store a request that its provider authenticated (or that cannot be authenticated now,
        for want of the encryption key), its credentials redacted (tools/redact.py): the one
        write of the webhook route for such a request. ``endpoint`` is the integration's
        WebhookEndpoint. A request stored ``received`` waits for the inbox, woken up shortly
        after the commit; one that repeats the integration's latest connection state
        (``repeat_key``) is counted on that request's log instead of being stored again (a
        gateway in a reconnect loop sends the same connection update twice a second, for ever).
        A request whose ``event_id`` (the provider's id of its events) is already stored for the
        integration is neither stored nor applied again: an empty recordset is returned. The
        unique index decides, so that concurrent deliveries of one event store it once; the
        INSERT runs in a savepoint so that the others answer "duplicate" at once, where an ON
        CONFLICT clause would fail them with a serialization error (a row committed after their
        snapshot) and Odoo would retry them after sleeping. The savepoint is sent with the INSERT
        and released by the commit: a valid request still costs one round trip and the commit.

        One INSERT rather than the ORM's create, whose defaults, precompute, cache and query for
        the time cost as much as the rest of the request on this hot path. Only plain columns
        of this model are written (none computed or related)."""
        repeat_key = vals.pop("repeat_key", None)
        if repeat_key and endpoint and state == "received":
            repeated = self._store_repeat(endpoint.id, repeat_key)
            if repeated:
                return repeated
        secret_headers, secret_fields = provider_secrets(endpoint.provider if endpoint else None)
        row = self._request_row(endpoint, provider, headers, remote_addr, secret_headers)
        row.update(
            payload=self._decode_body(redact_body(body, secret_fields)),
            payload_size=len(body),
            payload_truncated=False,
            state=state,
            signature=vals.pop("signature", None),
            event_type=vals.pop("event_type", None),
            error=clean_text(vals.pop("error", None), ERROR_MAX_LENGTH),
            lane=vals.pop("lane", 0),
            repeat_key=repeat_key,
            event_id=vals.pop("event_id", None) if endpoint else None,
        )
        if vals:
            raise ValueError(f"Unexpected webhook log values: {sorted(vals)}")
        insert = self._insert_query(row, SQL("RETURNING id"))
        if row["event_id"]:
            # The savepoint travels with the INSERT, in one round trip, and the commit releases it.
            savepoint = SQL.identifier(EVENT_SAVEPOINT)
            try:
                self.env.cr.execute(SQL("SAVEPOINT %s; %s", savepoint, insert), log_exceptions=False)
            except pg_errors.UniqueViolation as e:
                self.env.cr.execute(SQL("ROLLBACK TO SAVEPOINT %s", savepoint))
                if e.diag.constraint_name != EVENT_INDEX:
                    raise
                return self.browse()
        else:
            self.env.cr.execute(insert)
        log_id = self.env.cr.fetchone()[0]
        if state == "received":
            self.env["vm.whatsapp.inbox"]._wake_up([row["lane"]])
        return self.browse(log_id)

    @api.model
    def _receive_unauthenticated(self, endpoint, provider, body, headers, remote_addr, size=None, **vals):
        """Count a request nobody authenticated (an unknown token, a provider that is not the
        token's, a missing or bad signature, a replay, a body over the limit) and keep what it
        says of itself, as metadata: allow-listed headers, its address and size, and the first
        2 kB of its body (``body`` is None when it was not read), credentials redacted, marked
        truncated when there was more. One row per source address and minute: the first request
        of the minute is stored, the next ones only counted on it (``repeat_count``), so that an
        anonymous sender adds a row a minute at most. Returns how many such requests came from
        that address in this minute, this one included.

        One INSERT ... ON CONFLICT DO UPDATE, in a transaction of its own at READ COMMITTED and
        committed at once: the concurrent requests of one address update one row, which at
        Odoo's REPEATABLE READ would fail them with serialization errors, retried by Odoo after
        sleeping (a flood would put the workers to sleep). Under tests, that transaction is the
        test's own."""
        secret_headers, secret_fields = provider_secrets(None)  # it may come from any provider
        redacted = redact_body(body or b"", secret_fields)
        text = self._decode_body(redacted[:UNAUTHENTICATED_BODY_BYTES])
        if len(text.encode()) > UNAUTHENTICATED_BODY_BYTES:  # escapes of bytes that are not UTF-8
            text = text.encode()[:UNAUTHENTICATED_BODY_BYTES].decode("utf-8", "ignore")
        row = self._request_row(endpoint, provider, headers, remote_addr, secret_headers)
        row.update(
            payload=text,
            payload_size=len(body) if body is not None else size,
            payload_truncated=body is None or len(redacted) > UNAUTHENTICATED_BODY_BYTES,
            state="rejected",
            signature=vals.pop("signature", None),
            error=clean_text(vals.pop("error", None), ERROR_MAX_LENGTH),
            lane=0,
            rate_key=SQL(
                "concat(%s, ' ', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'))", rate_bucket(remote_addr)
            ),
        )
        if vals:
            raise ValueError(f"Unexpected webhook log values: {sorted(vals)}")
        upsert = self._insert_query(
            row,
            SQL(
                """ON CONFLICT (rate_key) WHERE rate_key IS NOT NULL
                   DO UPDATE SET repeat_count = %(table)s.repeat_count + 1,
                                 last_repeat_at = (now() AT TIME ZONE 'UTC')
                   RETURNING repeat_count""",
                table=SQL.identifier(self._table),
            ),
        )
        registry = self.env.registry
        with registry.cursor() as cr:
            if not registry.in_test_mode():
                cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cr.execute(upsert)
            return cr.fetchone()[0] + 1

    @api.model
    def _unauthenticated_per_minute(self):
        """How many requests nobody authenticated an address may send a minute before 429."""
        value = (
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("visionmetrics_whatsapp.webhook_unauthenticated_per_minute", "")
        )
        return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_UNAUTHENTICATED_PER_MINUTE

    @api.model
    def _request_row(self, endpoint, provider, headers, remote_addr, secret_headers):
        """The columns of a log row that say where a request came from."""
        if endpoint:
            company_id = endpoint.company_id
        else:  # a request with an unknown token belongs to no company: file it under the first one
            company_id = self.env["res.company"].sudo().search([], order="id", limit=1).id
        return {
            "integration_id": endpoint.id if endpoint else None,
            "company_id": company_id,
            "provider": provider if provider in providers.PROVIDERS else None,
            "remote_addr": clean_text(remote_addr, 64),
            "headers": self._redact_headers(headers, secret_headers),
            "attempt_count": 0,
            "repeat_count": 0,
        }

    @api.model
    def _insert_query(self, row, suffix):
        """INSERT of ``row`` ({column: value or SQL}), stamped now, followed by ``suffix`` (SQL).
        Its text depends only on the columns: it is composed once per set of columns, and each
        request only adds its values (composing it again cost a fifth of the route's own time)."""
        return SQL(insert_template(self._table, tuple(row)), *row.values(), suffix)

    @api.model
    def _store_repeat(self, integration_id, repeat_key):
        """Count a request on the integration's latest connection-state log when it says the
        same (returns that log), else None: a change of state is always stored and applied, and
        a state that was ignored is tried again every IGNORED_REPEAT_RETRY.

        Repeats come in bursts, in parallel: a request that finds the latest log locked, or
        changed since its transaction began, by a concurrent repeat leaves the counting to it
        rather than waiting or failing (the count is a measure, not a ledger)."""
        table = SQL.identifier(self._table)
        try:
            with self.env.cr.savepoint(flush=False), mute_logger("odoo.sql_db"):
                self.env.cr.execute(
                    SQL(
                        """SELECT id, repeat_key,
                                  state = 'ignored' AND received_at < (now() AT TIME ZONE 'UTC') - %(retry)s
                             FROM %(table)s log
                            WHERE integration_id = %(integration)s AND repeat_key IS NOT NULL
                         ORDER BY id DESC LIMIT 1 FOR UPDATE OF log NOWAIT""",
                        table=table,
                        integration=integration_id,
                        retry=IGNORED_REPEAT_RETRY,
                    )
                )
                row = self.env.cr.fetchone()
                # a state that was ignored (a gateway's first updates arrive before the session that
                # will take them) is stored and applied again every IGNORED_REPEAT_RETRY
                if not row or row[1] != repeat_key or row[2]:
                    return None
                self.env.cr.execute(
                    SQL(
                        """UPDATE %(table)s SET repeat_count = COALESCE(repeat_count, 0) + 1,
                                  last_repeat_at = (now() AT TIME ZONE 'UTC') WHERE id = %(id)s""",
                        table=table,
                        id=row[0],
                    )
                )
                return self.browse(row[0])
        except (pg_errors.LockNotAvailable, pg_errors.SerializationFailure):
            # a concurrent repeat holds or changed the latest log: it is the same state, counted there
            return self._latest_repeat(integration_id, repeat_key)

    @api.model
    def _latest_repeat(self, integration_id, repeat_key):
        self.env.cr.execute(
            SQL(
                """SELECT id, repeat_key FROM %s WHERE integration_id = %s AND repeat_key IS NOT NULL
                ORDER BY id DESC LIMIT 1""",
                SQL.identifier(self._table),
                integration_id,
            )
        )
        row = self.env.cr.fetchone()
        return self.browse(row[0]) if row and row[1] == repeat_key else None

    @api.model
    def _repeat_key(self, events):
        """What a request that holds only connection states says (kind, session, state, reason,
        phone), or None: such a request applied twice changes nothing the second time."""
        if not events or any(event.kind != "connection" for event in events):
            return None
        key = json.dumps([(e.session, e.state, e.reason, e.phone) for e in events], ensure_ascii=True)
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def _body(self):
        return (self.payload or "").encode("utf-8")

    def _headers(self):
        return json.loads(self.headers or "{}")

    @api.model
    def _event_type(self, events):
        return ",".join(sorted({event.kind for event in events}))[:64] or "empty"

    def _set_event_type(self, events):
        event_type = self._event_type(events)
        if self.event_type != event_type:
            self.event_type = event_type

    # ------------------------------------------------------------------ states

    def _record_outcomes(self, outcomes):
        """Write each request's outcome ({log: (state, error)}). A failed request is given its
        next attempt (after 1, 2, 4, ... minutes) until MAX_ATTEMPTS, in a write per group of
        identical values; the others, most of a batch, in one UPDATE per state and note (no field
        of another record depends on these, and Odoo's write of 500 logs cost a tenth of applying
        a batch of returning contacts' messages). A request to apply again at once (``received``,
        see inbox.ConcurrentCreation) wakes its lane up."""
        now = fields.Datetime.now()
        groups, settled, again = {}, defaultdict(list), set()
        for log, (state, error) in outcomes.items():
            error = clean_text(error, ERROR_MAX_LENGTH) or False  # notes may quote what a request held
            if state == "received":  # to apply again at once (inbox.ConcurrentCreation)
                again.add(log.lane)
            if state != "failed":
                settled[(state, error)].append(log.id)
                continue
            attempts = log.attempt_count + 1
            vals = {"state": state, "error": error, "attempt_count": attempts, "processed_at": now}
            vals.update(self._retry_vals(error, attempts, permanent=error == self._no_integration_error()))
            key = tuple(sorted(vals.items()))
            groups.setdefault(key, [vals, self.browse()])[1] |= log
        for vals, logs in groups.values():
            logs.write(vals)
        if settled:
            self.flush_model(["state", "error", "attempt_count", "processed_at", "next_attempt_at"])
            for (state, error), ids in settled.items():
                self.env.cr.execute(
                    SQL(
                        """UPDATE %s SET state = %s, error = %s, attempt_count = coalesce(attempt_count, 0) + 1,
                                  processed_at = %s, next_attempt_at = NULL, write_date = %s, write_uid = %s
                            WHERE id = ANY(%s)""",
                        SQL.identifier(self._table),
                        state,
                        error or None,
                        now,
                        self.env.cr.now(),
                        self.env.uid,
                        ids,
                    )
                )
            self.browse(id_ for ids in settled.values() for id_ in ids).invalidate_recordset(
                ["state", "error", "attempt_count", "processed_at", "next_attempt_at", "write_date", "write_uid"]
            )
        if again:
            self.env["vm.whatsapp.inbox"]._wake_up(again)

    @api.model
    def _retry_vals(self, error, attempts, permanent=False):
        if permanent or attempts >= MAX_ATTEMPTS:
            note = (
                self.env._("Not retried.")
                if permanent
                else self.env._("Gave up after %(count)s attempts.", count=attempts)
            )
            return {"next_attempt_at": False, "error": clean_text(f"{error}\n{note}", ERROR_MAX_LENGTH)}
        delay = RETRY_BASE_DELAY * 2 ** (attempts - 1)
        return {"next_attempt_at": fields.Datetime.now() + delay}

    def _integration_deleted_outcome(self):
        return "failed", self._no_integration_error()

    def _no_integration_error(self):
        return self.env._("The integration of this request was deleted.")

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
        self.env["vm.whatsapp.inbox"]._apply(self)
        return True

    # ------------------------------------------------------------------ scheduled

    @api.autovacuum
    def _gc_old_logs(self):
        """Drop the requests older than the retention period that need nothing more: all but
        those still received or waiting for a retry. Deduplication does not depend on logs: it
        is the unique (integration, message id) of vm.whatsapp.message, kept as long as the
        messages."""
        days = int(
            self.env["ir.config_parameter"]
            .sudo()
            .get_param("visionmetrics_whatsapp.webhook_log_retention_days", DEFAULT_RETENTION_DAYS)
        )
        if days <= 0:
            return
        limit_date = fields.Datetime.now() - timedelta(days=days)
        old = self.sudo().search(
            [
                ("received_at", "<", limit_date),
                ("state", "!=", "received"),
                "|",
                ("state", "!=", "failed"),
                ("next_attempt_at", "=", False),
            ]
        )
        with mute_logger("odoo.models.unlink"):
            old.unlink()
        _logger.info("Removed %s WhatsApp webhook logs older than %s days", len(old), days)
