import base64
import binascii
import io
import logging
from datetime import timedelta

import psycopg2
import qrcode

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..providers import WhatsAppProviderError
from ..tools.phone import mask, to_e164

_logger = logging.getLogger(__name__)

OPEN_STATES = ("pending", "qr_ready")
ENDED_STATES = ("expired", "failed", "closed")
DEFAULT_QR_LIFETIME = 60  # seconds, when the provider does not say
SESSION_MAX_AGE = timedelta(minutes=10)  # an unscanned session older than this is expired
HEALTH_CHECK_INTERVAL = timedelta(minutes=15)  # connected sessions are checked this often
MAX_BACKOFF_MINUTES = 30
MONITOR_BATCH = 50  # sessions checked per cron run; the cron is re-triggered for the rest
MONITOR_TIMEOUT = 5  # seconds per provider call in the monitor (the next run retries)
POLL_MIN_INTERVAL = timedelta(seconds=2)  # the wizard asks the provider at most this often

# our session state -> the integration's state
INTEGRATION_STATES = {
    "pending": "connecting",
    "qr_ready": "connecting",
    "connected": "connected",
    "expired": "disconnected",
    "closed": "disconnected",
    "failed": "error",
}


def render_qr_png(payload):
    """PNG bytes of a QR code encoding ``payload``."""
    qr = qrcode.QRCode(box_size=8, border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(payload)
    qr.make(fit=True)
    buffer = io.BytesIO()
    qr.make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def provider_png(image):
    """PNG bytes of a provider image given as a data URL or bare base64; None when unusable."""
    if not image:
        return None
    data = image.split(",", 1)[1] if image.startswith("data:") else image
    try:
        png = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None
    return png if png.startswith(b"\x89PNG") else None


class VmWhatsappSession(models.Model):
    _name = "vm.whatsapp.session"
    _inherit = ["vm.whatsapp.company.guard"]
    _description = "WhatsApp Connection Session"
    _order = "create_date desc, id desc"
    _check_company_auto = True

    integration_id = fields.Many2one(
        "vm.whatsapp.integration", required=True, index=True, ondelete="cascade", check_company=True
    )
    company_id = fields.Many2one(
        related="integration_id.company_id", store=True, index=True, precompute=True, required=True
    )
    provider = fields.Selection(related="integration_id.provider")
    # What links a phone to the number (the QR, the pairing code, and the sandbox session id in
    # its scan URL) is for WhatsApp administrators only.
    external_id = fields.Char(
        "Provider Session",
        index="btree_not_null",
        copy=False,
        groups="visionmetrics_whatsapp.group_whatsapp_manager",
        help="Instance / session id at the provider.",
    )
    state = fields.Selection(
        [
            ("pending", "Pending"),
            ("qr_ready", "QR Ready"),
            ("connected", "Connected"),
            ("expired", "Expired"),
            ("failed", "Failed"),
            ("closed", "Closed"),
        ],
        required=True,
        default="pending",
        index=True,
        readonly=True,
    )
    qr_code = fields.Char(
        "QR Payload", readonly=True, copy=False, groups="visionmetrics_whatsapp.group_whatsapp_manager"
    )
    qr_image = fields.Binary(
        "QR Code", attachment=False, readonly=True, copy=False, groups="visionmetrics_whatsapp.group_whatsapp_manager"
    )
    pairing_code = fields.Char(readonly=True, copy=False, groups="visionmetrics_whatsapp.group_whatsapp_manager")
    qr_expires_at = fields.Datetime("QR Expires At", readonly=True)
    connected_at = fields.Datetime(readonly=True)
    closed_at = fields.Datetime(readonly=True)
    last_checked_at = fields.Datetime(readonly=True)
    check_count = fields.Integer(readonly=True)
    failure_count = fields.Integer(
        "Consecutive Failures",
        readonly=True,
        copy=False,
        help="Failed provider checks in a row (the monitor backs off).",
    )
    error_message = fields.Text(readonly=True)

    def _compute_display_name(self):
        for session in self:
            session.display_name = f"{session.integration_id.display_name} / {session.create_date or ''}".strip(" /")

    # ------------------------------------------------------------------ state updates

    @api.model
    def _create_from_info(self, integration, info):
        """Record the session a provider just started (``info``: SessionInfo) and apply its state."""
        session = self.create({"integration_id": integration.id, "external_id": info.external_id or False})
        _logger.info(
            "WhatsApp session created: integration %s (%s), session %s",
            integration.id,
            integration.provider,
            session.id,
        )
        session._apply_session_info(info)
        if session.state in OPEN_STATES:
            integration.write({"state": "connecting", "last_error": False})
        return session

    def _apply_session_info(self, info):
        """Apply what the provider says about this session (a SessionInfo from create_session or
        get_session_status). A state of None means "unknown, keep yours"."""
        self.ensure_one()
        if info.state is None:
            return
        if info.state in OPEN_STATES and (info.qr_code or info.qr_image):
            if self._is_new_qr(info):
                self._apply_qr_update(info.qr_code, info.qr_image, info.pairing_code, expires_in=info.expires_in)
            return
        if info.state in OPEN_STATES:
            if self.state == "pending" and info.message and info.message != self.error_message:
                self.error_message = info.message
            return
        self._apply_connection_update(info.state, phone=info.phone, reason=info.message)

    def _is_new_qr(self, info):
        """Whether a SessionInfo holds another QR than the one shown: another QR payload, or for
        a provider that gives only an image, another image (the same QR polled again keeps its
        expiry)."""
        if info.qr_code:
            return info.qr_code != self.qr_code or bool(info.qr_image and not self.qr_image)
        png = provider_png(info.qr_image)
        shown = self.qr_image.decode() if isinstance(self.qr_image, bytes) else self.qr_image
        return bool(png) and base64.b64encode(png).decode() != shown

    def _apply_qr_update(self, qr_code=None, qr_image=None, pairing_code=None, expires_in=None):
        """Store a new QR (rendered from ``qr_code``, or the provider's PNG / data URL) and/or
        pairing code; the session becomes qr_ready with a new expiry."""
        self.ensure_one()
        png = provider_png(qr_image) or (render_qr_png(qr_code) if qr_code else None)
        if not png and not pairing_code:
            return
        refreshed = bool(self.qr_image or self.pairing_code)
        self.write(
            {
                "state": "qr_ready",
                "qr_code": qr_code or False,
                "qr_image": base64.b64encode(png) if png else False,
                "pairing_code": pairing_code or False,
                "qr_expires_at": fields.Datetime.now() + timedelta(seconds=expires_in or DEFAULT_QR_LIFETIME),
                "error_message": False,
            }
        )
        if self.integration_id.state not in ("connecting", "connected"):
            self.integration_id.state = "connecting"
        _logger.info(
            "WhatsApp QR %s: integration %s, session %s",
            "refreshed" if refreshed else "ready",
            self.integration_id.id,
            self.id,
        )

    def _apply_connection_update(self, state, phone=None, reason=None):
        """Move the session to ``state`` (one of our session states) and its integration along.
        Idempotent: applying the current state again changes nothing."""
        self.ensure_one()
        if state not in INTEGRATION_STATES:
            raise ValueError(f"Unknown WhatsApp session state: {state!r}")
        phone = to_e164(phone) if phone else None
        integration = self.integration_id
        now = fields.Datetime.now()
        if state == self.state and (
            state != "connected"
            or (integration.state == "connected" and (not phone or phone == integration.phone_number))
        ):
            return
        vals = {"state": state}
        if state == "connected":
            vals.update(connected_at=self.connected_at or now, closed_at=False, error_message=False, failure_count=0)
        elif state in ("expired", "failed", "closed"):
            vals.update(closed_at=now, qr_image=False, qr_code=False, pairing_code=False)
            if reason:
                vals["error_message"] = reason
        self.write(vals)
        if state == "connected":
            integration_vals = {"state": "connected", "last_error": False}
            if phone:
                integration_vals["phone_number"] = phone
            if self.external_id:
                integration_vals["external_id"] = self.external_id
            integration.write(integration_vals)
            # a connection replaces every other attempt of the same integration
            others = integration.session_ids.filtered(lambda s: s != self and s.state in (*OPEN_STATES, "connected"))
            others.write({"state": "closed", "closed_at": now})
            _logger.info(
                "WhatsApp connected: integration %s, session %s, number %s",
                integration.id,
                self.id,
                mask(phone or integration.phone_number) or "-",
            )
            return
        latest_open = integration.session_ids.filtered(lambda s: s.state in (*OPEN_STATES, "connected"))
        if state in OPEN_STATES or not latest_open:
            # no other attempt or connection is alive: the integration follows this session
            integration_vals = {"state": INTEGRATION_STATES[state]}
            if state == "failed" and reason:
                integration_vals["last_error"] = reason
            integration.write(integration_vals)
        if state in ("closed", "failed") or (state == "expired" and self.connected_at):
            _logger.info(
                "WhatsApp disconnected: integration %s, session %s, number %s, state %s, reason: %s",
                integration.id,
                self.id,
                mask(integration.phone_number) or "-",
                state,
                reason or "-",
            )
        elif state == "expired":
            _logger.info("WhatsApp QR expired: integration %s, session %s", integration.id, self.id)

    # ------------------------------------------------------------------ inbox

    @api.model
    def _apply_session_events(self, items):
        """The inbox's handler of QR codes and connection updates, in arrival order (a QR code
        then the connection that follows its scan): each applied to the session it names, else
        to the integration's open or connected session. One (state, note) per item."""
        results = []
        for item in items:
            event = item.event
            sessions = item.integration.session_ids
            session = (
                sessions.filtered(lambda s, name=event.session: name and s.external_id == name)[:1]
                or sessions.filtered(lambda s: s.state in (*OPEN_STATES, "connected"))[:1]
            )
            if not session:
                note = (
                    self.env._("QR code with no session waiting for it.")
                    if event.kind == "qr"
                    else self.env._("Connection update with no session to apply it to.")
                )
                results.append(("ignored", note))
                continue
            if session.state in ENDED_STATES and (event.kind == "qr" or event.state in OPEN_STATES):
                # A gateway that keeps reconnecting (Evolution after a logout) does not reopen an
                # attempt that ended: only connecting again (action_connect) starts a new one.
                note = self.env._("This connection attempt has ended; connect again to start a new one.")
                results.append(("ignored", note))
                continue
            if event.kind == "qr":
                session._apply_qr_update(
                    qr_code=event.qr_code, qr_image=event.qr_image, pairing_code=event.pairing_code
                )
            else:
                session._apply_connection_update(event.state, phone=event.phone, reason=event.reason)
            results.append(("processed", False))
        return results

    # ------------------------------------------------------------------ checks

    def _check_with_provider(self, provider=None):
        """Ask the provider for this session's state and apply it. Raises WhatsAppProviderError."""
        self.ensure_one()
        provider = provider or self.integration_id._get_provider()
        now = fields.Datetime.now()
        self.write({"last_checked_at": now, "check_count": self.check_count + 1})
        info = provider.get_session_status(self.external_id or None)
        self._apply_session_info(info)
        if self.failure_count:
            self.write({"failure_count": 0})

    def _expire_if_stale(self):
        """An open session whose QR has expired, or that waited too long, becomes expired."""
        self.ensure_one()
        if self.state not in OPEN_STATES:
            return False
        now = fields.Datetime.now()
        qr_expired = self.qr_expires_at and self.qr_expires_at < now
        too_old = self.create_date and self.create_date < now - SESSION_MAX_AGE
        if not (qr_expired or too_old):
            return False
        self._apply_connection_update("expired", reason=self.env._("The QR code expired without being scanned."))
        return True

    def _record_failure(self, error):
        """Note a failed provider check (the monitor backs off); credentials the provider rejects
        fail an open session and put the integration in error."""
        self.ensure_one()
        message = str(error)
        self.write(
            {
                "error_message": message,
                "failure_count": self.failure_count + 1,
                "last_checked_at": fields.Datetime.now(),
            }
        )
        self.integration_id.last_error = message
        rejected = isinstance(error, WhatsAppProviderError) and error.status_code in (401, 403)
        if rejected:
            if self.state in OPEN_STATES:
                self._apply_connection_update("failed", reason=message)
            elif self.integration_id.state != "error":
                self.integration_id.state = "error"
        _logger.warning(
            "WhatsApp session %s (integration %s): check failed (%s in a row): %s",
            self.id,
            self.integration_id.id,
            self.failure_count,
            message,
        )

    def _is_due(self, now):
        """Whether the monitor should check this session now (health checks are spaced out;
        failures back off exponentially, up to MAX_BACKOFF_MINUTES)."""
        self.ensure_one()
        if not self.last_checked_at:
            return True
        if self.failure_count:
            backoff = timedelta(minutes=min(2**self.failure_count, MAX_BACKOFF_MINUTES))
            if self.last_checked_at + backoff > now:
                return False
        if self.state == "connected":
            return self.last_checked_at + HEALTH_CHECK_INTERVAL <= now
        return True

    def _poll_state(self):
        """What the connect wizard shows: the session's state, checked with the provider when it
        polls (at most every POLL_MIN_INTERVAL) and expired when stale."""
        self.ensure_one()
        now = fields.Datetime.now()
        message = self.error_message or False
        recently = self.last_checked_at and self.last_checked_at + POLL_MIN_INTERVAL > now
        if self.state in OPEN_STATES and self.integration_id.provider_polls_status and not recently:
            try:
                self._check_with_provider()
            except (WhatsAppProviderError, UserError) as e:
                self._record_failure(e)
                message = self.env._("Still waiting: %(error)s", error=e)
        self._expire_if_stale()
        return {
            "session_id": self.id,
            "state": self.state,
            "qr_image": f"data:image/png;base64,{self.qr_image.decode()}" if self.qr_image else False,
            "qr_code": self.qr_code or False,
            "pairing_code": self.pairing_code or False,
            "phone": self.integration_id.phone_number or False,
            "message": message,
        }

    # ------------------------------------------------------------------ cron

    @api.model
    def _cron_monitor_sessions(self):
        """Check open sessions with their provider, expire stale ones and check connected
        integrations' health. Each session runs in its own savepoint so that one provider's
        timeout, error answer or rejected credentials never stops the others."""
        now = fields.Datetime.now()
        sessions_sudo = self.sudo().search([("state", "in", OPEN_STATES)], order="last_checked_at asc nulls first, id")
        connected_sudo = self.sudo().search(
            [("state", "=", "connected"), ("integration_id.state", "in", ("connected", "error"))],
            order="last_checked_at asc nulls first, id",
        )
        due_sudo = (sessions_sudo | connected_sudo).filtered(lambda s: s._is_due(now))
        batch_sudo, rest_sudo = due_sudo[:MONITOR_BATCH], due_sudo[MONITOR_BATCH:]
        for session_sudo in batch_sudo:
            try:
                with self.env.cr.savepoint():
                    session_sudo._monitor_one()
            except psycopg2.OperationalError as e:
                # changed concurrently (a webhook or the scan route): the next run sees the new state
                _logger.info("WhatsApp session %s changed during the check (%s); next run", session_sudo.id, e)
            except Exception:
                # a bug for one session must not stop the monitor for the others
                _logger.exception("WhatsApp session %s: unexpected error in the monitor", session_sudo.id)
        self.env["ir.cron"]._notify_progress(done=len(batch_sudo), remaining=len(rest_sudo))

    def _monitor_one(self):
        """One session's check in the monitor: ask the provider (short timeout, no retry: the next
        run retries) when it polls, then expire the session if stale."""
        self.ensure_one()
        integration = self.integration_id
        if integration.provider_polls_status:
            try:
                provider = integration._get_provider()
                provider.timeout = MONITOR_TIMEOUT
                provider.get_retries = 0
                self._check_with_provider(provider)
            except (WhatsAppProviderError, UserError) as e:
                self._record_failure(e)
        elif self.state == "connected":
            self.last_checked_at = fields.Datetime.now()
        self._expire_if_stale()
