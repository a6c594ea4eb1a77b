"""The outbox: sends the outbound messages that users queued (DESIGN §10, README "Replying").

``vm.whatsapp.conversation.action_send_message`` stores a message ``pending`` with
``send_state='queued'`` and wakes this cron up; the user never waits on the provider. A run, one
message at a time, each in its own transactions:

1. claim the oldest queued message that is due (``FOR UPDATE SKIP LOCKED``), mark it
   ``sending`` and count the attempt, and COMMIT, before any request leaves: two cron workers
   never claim the same message, and a message handed to the provider is never claimed again;
2. call the provider (no transaction open, no lock held);
3. record the outcome and COMMIT:

   - accepted: the provider's id becomes the ``external_id``, the status ``sent``; the status
     webhooks then move it to delivered and read (vm.whatsapp.message._apply_status_events);
   - refused for now (the connection could not be opened, HTTP 408, 429, 5xx: the provider
     says it did not take the message): queued again after a growing delay (RETRY_DELAYS),
     at most SEND_MAX_ATTEMPTS attempts, then ``failed``;
   - refused (any other answer, a missing setting): ``failed`` with the provider's reason;
   - outcome unknown (no answer after the request left: read time-out, connection lost):
     ``failed`` at once, with a reason that says so. It is never sent again by itself, since
     the contact may have it already; the user decides (Retry).

A worker that dies between 1 and 3 leaves the message ``sending``: after SENDING_LEASE (far
longer than any request may last) it is ``failed`` as an unknown outcome, for the same reason.
"""

import logging
import threading
import time
from datetime import timedelta

import requests
from psycopg2 import errors as pg_errors

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL, mute_logger

from ..providers import (
    OutboundMedia,
    WhatsAppProviderError,
    WhatsAppProviderOutcomeUnknownError,
    WhatsAppProviderRetryableError,
)
from ..tools.text import REASON_MAX_LENGTH, clean_text

_logger = logging.getLogger(__name__)

CRON = "visionmetrics_whatsapp.ir_cron_outbox_send"
RUN_LIMIT = 50  # messages per cron run; the cron runs again at once while some remain
SEND_MAX_ATTEMPTS = 6
RETRY_DELAYS = (30, 120, 600, 1800, 3600)  # seconds before attempts 2, 3, ... (the last repeats)
SENDING_LEASE = timedelta(minutes=10)
STATUS_WEBHOOK_TIMEOUT = 10  # seconds, for the sandbox's simulated status webhooks


def retry_delay(attempts):
    """Seconds to wait after ``attempts`` failed attempts."""
    return RETRY_DELAYS[min(max(attempts, 1), len(RETRY_DELAYS)) - 1]


def _post_status_webhooks(url, webhooks):
    """Post the sandbox's status webhooks ([(delay, body, headers)]) to ``url`` in order, from a
    thread of their own, as the provider's servers would, after the commit that made the
    message's id known."""

    def run():
        for delay, body, headers in webhooks:
            time.sleep(delay)
            try:
                response = requests.post(url, data=body, headers=headers, timeout=STATUS_WEBHOOK_TIMEOUT)
            except requests.RequestException as e:
                _logger.warning("Sandbox status webhook not delivered to %s: %s", url, type(e).__name__)
                return
            if not response.ok:
                _logger.warning("Sandbox status webhook: %s answered HTTP %s", url, response.status_code)

    threading.Thread(target=run, name="vm-whatsapp-sandbox-statuses", daemon=True).start()


class VmWhatsappOutbox(models.AbstractModel):
    _name = "vm.whatsapp.outbox"
    _description = "WhatsApp Outbox"

    @api.model
    def _wake_up(self, at=None):
        """Run the outbox cron soon (after the current transaction commits), or at ``at``."""
        self.env.ref(CRON)._trigger(at)

    # ------------------------------------------------------------------ scheduled

    @api.model
    def _cron_send(self, limit=RUN_LIMIT):
        """Send due queued messages, one per transaction (see the module's docstring); the
        commits are those of this documented cron loop."""
        self._fail_interrupted()
        # a queue: each claim and outcome is committed around the HTTP call
        # pylint: disable-next=invalid-commit
        self.env.cr.commit()
        done = 0
        while done < limit:
            message = self._claim_next()
            if not message:
                break
            # a queue: each claim and outcome is committed around the HTTP call
            # pylint: disable-next=invalid-commit
            self.env.cr.commit()  # the attempt is recorded before the request leaves
            self._send(message)
            # a queue: each claim and outcome is committed around the HTTP call
            # pylint: disable-next=invalid-commit
            self.env.cr.commit()
            done += 1
        else:
            self.env["ir.cron"]._notify_progress(done=done, remaining=self._due_count())

    @api.model
    def _due_count(self):
        now = fields.Datetime.now()
        return self.env["vm.whatsapp.message"].search_count(
            [("send_state", "=", "queued"), "|", ("next_attempt_at", "=", False), ("next_attempt_at", "<=", now)],
            limit=RUN_LIMIT,
        )

    @api.model
    def _claim_next(self):
        """The oldest due queued message, now ``sending`` with one more attempt counted; an empty
        recordset when none is due, or when the one found is held by another worker."""
        Message = self.env["vm.whatsapp.message"]
        Message.flush_model()
        now = fields.Datetime.now()
        try:
            with self.env.cr.savepoint(flush=False), mute_logger("odoo.sql_db"):
                self.env.cr.execute(
                    SQL(
                        """UPDATE %(table)s
                              SET send_state = 'sending', attempt_count = COALESCE(attempt_count, 0) + 1,
                                  sending_started_at = %(now)s, write_date = %(now)s, write_uid = %(uid)s
                            WHERE id = (SELECT id FROM %(table)s
                                         WHERE send_state = 'queued'
                                           AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
                                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                        RETURNING id""",
                        table=SQL.identifier(Message._table),
                        now=now,
                        uid=self.env.uid,
                    )
                )
                ids = [row[0] for row in self.env.cr.fetchall()]
        except pg_errors.SerializationFailure:
            # changed by another transaction since this one began: leave it to the next run
            self._wake_up()
            return Message.browse()
        messages = Message.browse(ids)
        messages.invalidate_recordset(["send_state", "attempt_count", "sending_started_at", "write_date"])
        return messages

    @api.model
    def _fail_interrupted(self):
        """Messages left ``sending`` by a worker that died: failed, outcome unknown (never
        sent again by themselves)."""
        Message = self.env["vm.whatsapp.message"]
        stale = Message.search(
            [("send_state", "=", "sending"), ("sending_started_at", "<", fields.Datetime.now() - SENDING_LEASE)]
        )
        for message in stale:
            _logger.warning("WhatsApp message %s: sending was interrupted; marked failed (outcome unknown)", message.id)
            self._failed(
                message,
                self.env._(
                    "Sending was interrupted before the provider answered: the message may or may not have "
                    "reached the contact, so it is not sent again automatically. Check with the contact, "
                    "then use Retry if it did not arrive."
                ),
            )

    @api.model
    def _send(self, message):
        """Send a claimed (``sending``) message with its integration's provider and record the
        outcome (see the module's docstring)."""
        conversation = message.conversation_id
        conversation.invalidate_recordset(["can_send_free_text", "send_window_message"])
        if not conversation.can_send_free_text:  # disconnected, or the window closed meanwhile
            return self._failed(message, conversation.send_window_message)
        try:
            adapter = message.integration_id._get_provider()
            media = self._media(message)
        except (UserError, WhatsAppProviderError, ValueError) as e:
            return self._failed(message, str(e))
        try:
            provider_id = adapter.send_message(conversation.contact_identity, message.body or "", media)
        except WhatsAppProviderOutcomeUnknownError as e:
            return self._failed(message, self._unknown_outcome_reason(e))
        except WhatsAppProviderRetryableError as e:
            return self._retry_later(message, str(e))
        except WhatsAppProviderError as e:
            return self._failed(message, str(e))
        except Exception as e:  # a defect after the request may have left: never send it blindly again
            _logger.exception("WhatsApp message %s: unexpected error while sending", message.id)
            return self._failed(message, self._unknown_outcome_reason(e))
        self._accepted(message, provider_id)
        if adapter.simulates_messages:
            webhooks = adapter.status_webhooks(provider_id, recipient=conversation.contact_identity)
            url = message.integration_id.sudo().webhook_url
            self.env.cr.postcommit.add(lambda: _post_status_webhooks(url, webhooks))
        return True

    @api.model
    def _media(self, message):
        """The message's file as the adapter sends it, or None for a text."""
        attachment = message.attachment_id.sudo()
        if not attachment:
            return None
        return OutboundMedia(
            kind=message.message_type if message.message_type in ("image", "video", "audio") else "document",
            mimetype=attachment.mimetype or "application/octet-stream",
            filename=attachment.name or f"whatsapp-{message.id}",
            content=attachment.raw or b"",
        )

    @api.model
    def _unknown_outcome_reason(self, error):
        return self.env._(
            "The provider did not confirm the message (%(error)s): it may or may not have reached the "
            "contact, so it is not sent again automatically. Check with the contact, then use Retry if "
            "it did not arrive.",
            error=error,
        )

    @api.model
    def _accepted(self, message, provider_id):
        """Store the provider's id. Its echo (the message as the provider reports it back, e.g.
        Evolution's send.message) may have been stored first by the inbox, under that id: the
        echo is then merged into this message, so the message appears once."""
        # a queue: each claim and outcome is committed around the HTTP call
        # pylint: disable-next=invalid-commit
        self.env.cr.commit()  # a new snapshot: an echo committed during the request is visible
        for _attempt in range(3):
            try:
                with mute_logger("odoo.sql_db"), self.env.cr.savepoint():
                    self._write_accepted(message, provider_id)
                    message.flush_recordset()
                return
            except pg_errors.UniqueViolation:
                # a queue: each claim and outcome is committed around the HTTP call
                # pylint: disable-next=invalid-commit
                self.env.cr.commit()  # nothing pending: see the echo's transaction
                self._absorb_echo(message, provider_id)
        _logger.error(
            "WhatsApp message %s was sent as %s, but that id is taken; kept without it", message.id, provider_id
        )
        message.write({"status": "sent", "send_state": False, "failure_reason": False})

    @api.model
    def _write_accepted(self, message, provider_id, status="sent"):
        rank = message._STATUS_RANK
        message.write(
            {
                "external_id": provider_id,
                "status": max(status, "sent", message.status, key=lambda s: rank.get(s, 0)),
                "send_state": False,
                "failure_reason": False,
                "next_attempt_at": False,
            }
        )

    @api.model
    def _absorb_echo(self, message, provider_id):
        echo = message.sudo().search(
            [
                ("integration_id", "=", message.integration_id.id),
                ("external_id", "=", provider_id),
                ("id", "!=", message.id),
            ]
        )
        if echo:
            status = max(echo.mapped("status"), key=lambda s: message._STATUS_RANK.get(s, 0))
            echo.unlink()
            with self.env.cr.savepoint():
                self._write_accepted(message, provider_id, status)

    @api.model
    def _retry_later(self, message, error):
        if message.attempt_count >= SEND_MAX_ATTEMPTS:
            return self._failed(
                message,
                self.env._("%(error)s (gave up after %(count)s attempts)", error=error, count=message.attempt_count),
            )
        at = fields.Datetime.now() + timedelta(seconds=retry_delay(message.attempt_count))
        message.write(
            {
                "send_state": "queued",
                "next_attempt_at": at,
                "failure_reason": clean_text(error, REASON_MAX_LENGTH),
            }
        )
        _logger.info("WhatsApp message %s: attempt %s failed, next at %s", message.id, message.attempt_count, at)
        self._wake_up(at)
        return False

    @api.model
    def _failed(self, message, reason):
        message.write(
            {
                "status": "failed",
                "send_state": False,
                "next_attempt_at": False,
                "failure_reason": clean_text(reason or "", REASON_MAX_LENGTH) or self.env._("Unknown error"),
            }
        )
        _logger.info("WhatsApp message %s failed: %s", message.id, message.failure_reason)
        return False
