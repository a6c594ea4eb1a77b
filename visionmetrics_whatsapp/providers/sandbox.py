"""Sandbox provider: built in, no network, for demos and tests.

Its QR code encodes ``<base_url>/vm_whatsapp/sandbox/<external_id>/scan``; opening that URL (as a
phone would) connects the session. Messages reach the addon as signed webhooks through the real
webhook route, authenticated by ``X-VM-Signature: sha256=<hex HMAC-SHA256(raw body, webhook_secret)>``.

Webhook format (JSON object, UTF-8), one event per request:

- an inbound message::

    {"event": "message", "session": "<external_id>",
     "message": {"id": "sbx_...", "from": "5511987654321" or "+5511987654321", "name": "Maria",
                 "text": "oi vm_token:abc", "type": "text", "timestamp": 1760341000,
                 "from_me": false}}

  ``id`` and ``from`` are required; ``type`` is one of :data:`.events.MESSAGE_TYPES` (default
  ``text``); ``timestamp`` is epoch seconds (UTC); ``name`` and ``from_me`` are optional.
- a delivery status::

    {"event": "status", "session": "<external_id>",
     "status": {"id": "sbx_...", "status": "delivered", "timestamp": 1760341005, "error": null}}

  ``status`` is one of :data:`.events.MESSAGE_STATUSES`.
- a connection change::

    {"event": "connection", "session": "<external_id>", "state": "connected", "phone": "+5511..."}

  ``state`` is one of :data:`.events.SESSION_STATES` (``open``/``close`` are accepted too).

Any other ``event`` becomes an :class:`.events.UnknownEvent`. Use :meth:`SandboxProvider.sign`
with :meth:`~SandboxProvider.build_message_payload` or
:meth:`~SandboxProvider.build_connection_payload` to produce a request the addon accepts.
"""

import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime
from typing import ClassVar

from . import register
from .base import WhatsAppProvider
from .events import (
    MESSAGE_TYPES,
    ConnectionUpdate,
    InboundMessage,
    SessionInfo,
    StatusUpdate,
    UnknownEvent,
)
from .exceptions import WebhookPayloadError, WhatsAppProviderError
from .utils import as_bool, as_text, digits_to_e164, epoch_to_utc, require_text

SIGNATURE_HEADER = "X-VM-Signature"


@register
class SandboxProvider(WhatsAppProvider):
    code = "sandbox"
    provider_name = "Sandbox"
    uses_qr = True
    polls_status = False  # the state changes only through the scan URL and webhooks
    qr_lifetime = 60  # seconds

    SESSION_STATES: ClassVar[dict] = {
        "pending": "pending",
        "qr_ready": "qr_ready",
        "connected": "connected",
        "open": "connected",
        "expired": "expired",
        "failed": "failed",
        "closed": "closed",
        "close": "closed",
    }
    MESSAGE_STATUSES: ClassVar[dict] = {
        "pending": "pending",
        "sent": "sent",
        "delivered": "delivered",
        "read": "read",
        "failed": "failed",
    }

    # ------------------------------------------------------------------ sessions

    def create_session(self, external_id=None, phone=None):
        """A new session with an unguessable id (unless ``external_id`` is given) whose QR is the
        scan URL. ``phone`` is ignored: the sandbox has no pairing code."""
        external_id = external_id or secrets.token_urlsafe(24)
        return SessionInfo(
            external_id=external_id,
            state="qr_ready",
            qr_code=self.scan_url(external_id),
            expires_in=self.qr_lifetime,
        )

    def scan_url(self, external_id):
        return f"{self.base_url}/vm_whatsapp/sandbox/{external_id}/scan"

    def get_session_status(self, external_id=None):
        """The sandbox has no server to ask: the returned ``state`` is None, which means "unknown,
        keep the state you have" (it changes only through the scan URL and webhooks)."""
        return SessionInfo(external_id=external_id or self.external_id or "", state=None)

    def close_session(self, external_id=None):
        """Nothing to log out of."""
        return SessionInfo(external_id=external_id or self.external_id or "", state="closed")

    def check_connection(self):
        return "Sandbox: no server, always reachable."

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, body, headers):
        return self._verify_hmac_hex(body, self._header(headers, SIGNATURE_HEADER), hashlib.sha256, prefix="sha256=")

    def parse_webhook(self, body, headers=None):
        payload = self._load_json(body)
        event = as_text(payload.get("event"))
        if event is None:
            raise WebhookPayloadError("Sandbox webhook: field 'event' is missing.")
        session = as_text(payload.get("session"))
        if event == "message":
            return [self._parse_message(session, payload.get("message"))]
        if event == "status":
            return [self._parse_status(session, payload.get("status"), payload)]
        if event == "connection":
            state = self.SESSION_STATES.get(as_text(payload.get("state")) or "")
            if state is None:
                return [UnknownEvent(session=session, event_type="connection", raw=payload)]
            return [ConnectionUpdate(session=session, state=state, phone=digits_to_e164(payload.get("phone")))]
        return [UnknownEvent(session=session, event_type=event, raw=payload)]

    def _parse_message(self, session, message):
        if not isinstance(message, dict):
            raise WebhookPayloadError("Sandbox webhook: field 'message' must be an object.")
        sender = require_text(message, "from", "Sandbox message")
        identity = sender.removeprefix("+")
        message_type = as_text(message.get("type")) or "text"
        text = message.get("text")
        return InboundMessage(
            session=session,
            message_id=require_text(message, "id", "Sandbox message"),
            contact_identity=identity,
            contact_phone=digits_to_e164(identity),
            contact_name=as_text(message.get("name")),
            text=text if isinstance(text, str) else "",
            message_type=message_type if message_type in MESSAGE_TYPES else "other",
            timestamp=epoch_to_utc(message.get("timestamp")),
            from_me=as_bool(message.get("from_me")),
        )

    def _parse_status(self, session, status, payload):
        if not isinstance(status, dict):
            raise WebhookPayloadError("Sandbox webhook: field 'status' must be an object.")
        value = self.MESSAGE_STATUSES.get(as_text(status.get("status")) or "")
        if value is None:
            return UnknownEvent(session=session, event_type="status", raw=payload)
        return StatusUpdate(
            session=session,
            message_id=require_text(status, "id", "Sandbox status"),
            status=value,
            timestamp=epoch_to_utc(status.get("timestamp")),
            error=as_text(status.get("error")),
            recipient=as_text(status.get("to")),
        )

    # ------------------------------------------------------------------ messages

    def send_text(self, to, text):
        """Nothing leaves the machine; returns a new message id."""
        return self.new_message_id()

    @staticmethod
    def new_message_id():
        return "sbx_" + secrets.token_hex(10)

    # ------------------------------------------------------------------ helpers for the addon

    @staticmethod
    def build_message_payload(session, sender, text, name=None, message_id=None, timestamp=None):
        """Body (bytes) of an inbound-message webhook. ``timestamp``: datetime (naive = UTC) or
        epoch seconds; now when omitted."""
        message = {
            "id": message_id or SandboxProvider.new_message_id(),
            "from": sender,
            "name": name,
            "text": text,
            "type": "text",
            "timestamp": _epoch_seconds(timestamp),
        }
        return _dump({"event": "message", "session": session, "message": message})

    @staticmethod
    def build_status_payload(session, message_id, status, timestamp=None, error=None, recipient=None):
        """Body (bytes) of a status webhook; ``recipient`` is the contact the message went to."""
        status_obj = {
            "id": message_id,
            "to": recipient,
            "status": status,
            "timestamp": _epoch_seconds(timestamp),
            "error": error,
        }
        return _dump({"event": "status", "session": session, "status": status_obj})

    @staticmethod
    def build_connection_payload(session, state, phone=None):
        """Body (bytes) of a connection webhook."""
        return _dump({"event": "connection", "session": session, "state": state, "phone": phone})

    def sign(self, body):
        """Headers that authenticate ``body`` (bytes) with this integration's webhook secret."""
        if not self.webhook_secret:
            raise WhatsAppProviderError("Sandbox: set a webhook secret before signing.", provider=self.code)
        if isinstance(body, str):
            body = body.encode("utf-8")
        digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        return {SIGNATURE_HEADER: "sha256=" + digest, "Content-Type": "application/json"}


def _epoch_seconds(timestamp):
    if timestamp is None:
        return int(time.time())
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:  # naive means UTC
            return int((timestamp - datetime(1970, 1, 1)).total_seconds())
        return int(timestamp.timestamp())
    return int(timestamp)


def _dump(payload):
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
