import json
import logging
from datetime import timedelta

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import mute_logger, sql

from ..providers import SIGNATURE_VALID, WebhookPayloadError
from .vm_whatsapp_conversation import ConcurrentConversationError
from .vm_whatsapp_integration import PROVIDER_SELECTION

_logger = logging.getLogger(__name__)

# Headers that carry credentials: stored as "[redacted]".
SECRET_HEADERS = frozenset(
    {"authorization", "cookie", "apikey", "x-api-key", "d360-api-key", "x-vm-webhook-secret", "proxy-authorization"}
)
DEFAULT_RETENTION_DAYS = 30
MAX_ATTEMPTS = 8


class VmWhatsappWebhookLog(models.Model):
    _name = "vm.whatsapp.webhook.log"
    _description = "WhatsApp Webhook Log"
    _order = "received_at desc, id desc"
    _rec_name = "event_type"
    # Logs are only created by the webhook with the integration's company: no per-create
    # company check on the hot path.
    _check_company_auto = False

    integration_id = fields.Many2one(
        "vm.whatsapp.integration", index="btree_not_null", ondelete="set null", readonly=True, check_company=True
    )
    company_id = fields.Many2one(
        "res.company", required=True, index=True, readonly=True, default=lambda self: self.env.company
    )
    provider = fields.Selection(PROVIDER_SELECTION, readonly=True)
    event_type = fields.Char(readonly=True)
    received_at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now, index=True)
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
        index=True,
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
    def _receive(self, integration, provider, body, headers, remote_addr, state="received", error=None):
        """Store a webhook request before anything else is done with it."""
        return self.create(
            {
                "received_at": fields.Datetime.now(),
                "attempt_count": 0,
                "integration_id": integration.id,
                # a request with an unknown token belongs to no company: file it under the first one
                "company_id": integration.company_id.id or self.env["res.company"].search([], order="id", limit=1).id,
                "provider": provider if provider in dict(PROVIDER_SELECTION) else False,
                "remote_addr": remote_addr,
                "headers": self._redact_headers(headers),
                "payload": self._decode_body(body),
                "state": state,
                "error": error,
            }
        )

    def _body(self):
        return (self.payload or "").encode("utf-8")

    # ------------------------------------------------------------------ processing

    def _verify(self, provider, body, headers):
        """The signature check of the request: valid, invalid or missing. A request that is not
        valid is marked rejected."""
        self.ensure_one()
        signature = provider.verify_webhook(body, headers)
        if signature != SIGNATURE_VALID:
            self.write({"signature": signature, "state": "rejected", "error": f"Signature {signature}."})
        return signature

    def _process(self, provider, body, headers=None, signature=None):
        """Parse and apply the events of an authenticated request, then record the outcome in one
        write. Raises WebhookPayloadError for a malformed body (state rejected)."""
        self.ensure_one()
        outcome = {"attempt_count": self.attempt_count + 1, "processed_at": fields.Datetime.now()}
        if signature:
            outcome["signature"] = signature
        try:
            events = provider.parse_webhook(body, headers or {})
        except WebhookPayloadError as e:
            self.write({**outcome, "state": "rejected", "error": str(e)})
            raise
        outcome["event_type"] = ",".join(sorted({event.kind for event in events}))[:64] or "empty"
        try:
            with self.env.cr.savepoint():
                results = [self._process_event(event) for event in events]
        except ConcurrentConversationError:
            error = self.env._("A concurrent request created this contact's conversation; processed again shortly.")
            self.write({**outcome, "state": "failed", "error": error})
            self.env.ref("visionmetrics_whatsapp.ir_cron_retry_webhook_logs")._trigger()
            return
        except psycopg2.OperationalError:
            raise  # serialization failure, lock: the whole request is retried by Odoo
        except Exception as e:  # noqa: BLE001 - any bug in processing: keep the request, retry later
            _logger.exception("WhatsApp webhook log %s failed", self.id)
            self.write({**outcome, "state": "failed", "error": f"{type(e).__name__}: {e}"})
            return
        notes = "\n".join(note for _state, note in results if note)
        self.write({**outcome, "state": self._state_from_outcomes(results), "error": notes or False})

    # event kind -> method; each returns (state, note) with state processed, duplicate or ignored
    _EVENT_HANDLERS = {
        "message": "_process_message",
        "status": "_process_status",
        "connection": "_process_connection",
        "qr": "_process_qr",
    }

    def _process_event(self, event):
        integration = self.integration_id
        if event.session and integration.external_id and event.session != integration.external_id:
            if event.session not in integration.session_ids.mapped("external_id"):
                return "ignored", self.env._(
                    "Event for session %(session)s, not this integration's.", session=event.session
                )
        handler = self._EVENT_HANDLERS.get(event.kind)
        if not handler:
            return "ignored", self.env._(
                "Event %(type)s is not handled.", type=getattr(event, "event_type", event.kind)
            )
        return getattr(self, handler)(event)

    def _process_message(self, event):
        if event.is_group:
            return "ignored", self.env._("Group message %(id)s: groups are not conversations.", id=event.message_id)
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
        states = {state for state, _note in outcomes}
        for state in ("processed", "duplicate"):
            if state in states:
                return state
        return "ignored"

    # ------------------------------------------------------------------ actions

    def action_reprocess(self):
        """Process again requests whose signature was verified when they arrived (the stored
        headers are redacted, so an unverified request cannot be authenticated afterwards)."""
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
            provider = log.integration_id._get_provider()
            try:
                log._process(provider, log._body(), json.loads(log.headers or "{}"))
            except WebhookPayloadError:
                continue  # state rejected with the parser's message
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
