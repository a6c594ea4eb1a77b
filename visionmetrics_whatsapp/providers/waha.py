"""WAHA (self-hosted WhatsApp HTTP API): QR code or pairing code.

Facts used here (reference/provider-apis.md §2): header ``X-Api-Key``; the session is created with
our webhook (events ``message``, ``message.ack``, ``session.status``) and an HMAC key, so WAHA
signs every body: ``X-Webhook-Hmac`` = hex HMAC-SHA512(raw body, webhook_secret). Bodies are an
envelope ``{id, timestamp, event, session, me, payload, ...}`` whose ``timestamp`` (Unix
milliseconds) is signed with the rest: a request is refused as a replay when that time is more
than 5 minutes (and a few seconds of clock skew) away from :attr:`WahaProvider.now`, either way.
The ``X-Webhook-Timestamp`` header says the same but is not signed (anyone can rewrite or drop
it): it is not read.

Chat ids: ``<digits>@c.us`` (a phone), ``@lid`` (hidden id, never a phone), ``@g.us`` (group:
the contact is ``payload.participant``). WAHA Core serves only the session named ``default``.
"""

import hashlib
import math
import time
from typing import ClassVar
from urllib.parse import quote

from . import register
from .base import AUTH_BY_SIGNATURE, SIGNATURE_INVALID, SIGNATURE_VALID, WhatsAppProvider, event_id_of
from .events import ConnectionUpdate, InboundMessage, SessionInfo, StatusUpdate, UnknownEvent
from .exceptions import WebhookPayloadError, WhatsAppProviderError
from .referral import baileys_referral, message_context_infos
from .utils import (
    as_bool,
    as_dict,
    as_text,
    describe_duration,
    digits_to_e164,
    epoch_to_utc,
    normalize_jid,
    phone_from_jid,
    require_text,
)

SIGNATURE_HEADER = "X-Webhook-Hmac"
# message.any: the contact's messages and those sent from the business's phone (fromMe)
WEBHOOK_EVENTS = ["message.any", "message.ack", "session.status"]
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
# WEBJS ``_data.type`` -> our message type, for messages without downloaded media
DATA_TYPES = {
    "chat": "text",
    "image": "image",
    "video": "video",
    "audio": "audio",
    "ptt": "audio",
    "document": "document",
    "sticker": "sticker",
    "location": "location",
    "vcard": "contact",
    "multi_vcard": "contact",
    "reaction": "reaction",
}


@register
class WahaProvider(WhatsAppProvider):
    code = "waha"
    provider_name = "WAHA"
    sequence = 30
    event_kinds = frozenset({"message", "status", "connection"})
    webhook_auth = AUTH_BY_SIGNATURE
    uses_qr = True
    uses_pairing_code = True
    registers_webhook = True  # in the session's config
    downloads_media = True
    sends_media = True
    default_session = "default"
    replay_window = 300  # seconds a signed request may be old (or ahead of our clock)
    clock_skew = 5  # seconds of clock difference tolerated on top
    now = staticmethod(time.time)  # clock in epoch seconds; tests replace it

    SESSION_STATES: ClassVar[dict] = {
        "STOPPED": "closed",
        "STARTING": "pending",
        "SCAN_QR_CODE": "qr_ready",
        "WORKING": "connected",
        "FAILED": "failed",
        "PASSKEY_REQUIRED": "pending",
        "PASSKEY_CONFIRMATION_REQUIRED": "pending",
    }
    # ackName -> our message status (ack numbers are turned into names through ACK_NAMES)
    MESSAGE_STATUSES: ClassVar[dict] = {
        "ERROR": "failed",
        "PENDING": "pending",
        "SERVER": "sent",
        "DEVICE": "delivered",
        "READ": "read",
        "PLAYED": "read",
    }

    def _auth_headers(self):
        return {"X-Api-Key": self.api_key} if self.api_key else {}

    def _name(self, external_id=None):
        return quote(external_id or self.external_id or self.default_session, safe="")

    # ------------------------------------------------------------------ sessions

    def webhook_config(self):
        if not self.webhook_url or not self.webhook_secret:
            raise WhatsAppProviderError(
                "WAHA: set the webhook URL and the webhook secret before connecting.", provider=self.code
            )
        return {
            "url": self.webhook_url,
            "events": list(WEBHOOK_EVENTS),
            "hmac": {"key": self.webhook_secret},
            "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 15},
        }

    def create_session(self, external_id=None, phone=None):
        """Create and start the session with our webhook (or update and start an existing one),
        then return its state with the QR, and a pairing code for ``phone`` once WAHA waits for a
        scan. While WAHA is still STARTING the state is pending: poll get_session_status."""
        name = external_id or self.external_id or self.default_session
        config = {"webhooks": [self.webhook_config()]}
        try:
            data = self._request("POST", "/api/sessions", json_body={"name": name, "start": True, "config": config})
        except WhatsAppProviderError as e:
            if e.status_code not in (409, 422) or "exist" not in e.message.lower():
                raise
            self._request("PUT", f"/api/sessions/{self._name(name)}", json_body={"name": name, "config": config})
            data = self._request("POST", f"/api/sessions/{self._name(name)}/start")
        info = self._session_info(name, as_dict(data))
        if info.state == "qr_ready" and digits_to_e164(phone):
            info.pairing_code = self.request_pairing_code(phone, name)
        return info

    def request_pairing_code(self, phone, external_id=None):
        """A code to type in WhatsApp (Linked devices > Link with phone number) instead of a scan."""
        number = digits_to_e164(phone)
        if number is None:
            raise WhatsAppProviderError(f"WAHA: {phone!r} is not a phone number.", provider=self.code)
        path = f"/api/{self._name(external_id)}/auth/request-code"
        return as_text(as_dict(self._request("POST", path, json_body={"phoneNumber": number[1:]})).get("code"))

    def get_session_status(self, external_id=None):
        name = external_id or self.external_id or self.default_session
        return self._session_info(name, as_dict(self._request("GET", f"/api/sessions/{self._name(name)}")))

    def _session_info(self, name, data):
        raw = as_text(data.get("status")) or ""
        state = self.SESSION_STATES.get(raw)
        info = SessionInfo(
            external_id=as_text(data.get("name")) or name,
            state=state or "pending",
            phone=phone_from_jid(as_dict(data.get("me")).get("id")),
            message=None if state else f"WAHA status {raw or 'unknown'}: check the WAHA server.",
        )
        if info.state == "qr_ready":
            qr = self._request("GET", f"/api/{self._name(name)}/auth/qr", params={"format": "raw"})
            info.qr_code = as_text(as_dict(qr).get("value"))
        return info

    def close_session(self, external_id=None):
        """Log out (the session keeps its config). An unknown session is not an error."""
        name = external_id or self.external_id or self.default_session
        try:
            self._request("POST", f"/api/sessions/{self._name(name)}/logout")
        except WhatsAppProviderError as e:
            if e.status_code != 404:
                raise
        return SessionInfo(external_id=name, state="closed")

    def check_connection(self):
        info = self.get_session_status()
        return f"WAHA reachable; session {info.external_id} is {info.state}."

    # ------------------------------------------------------------------ messages

    def send_text(self, to, text):
        """POST /api/sendText; ``to`` is a phone (digits or E.164) or a chat id."""
        return self._send("/api/sendText", {"chatId": self._chat_id(to), "text": text})

    def send_media(self, to, media, caption=None):
        """POST /api/sendImage for an image, /api/sendFile for anything else; the file by URL
        or as base64 ``data``."""
        file = {"mimetype": media.mimetype, "filename": media.filename}
        file.update({"url": media.url} if media.url else {"data": media.base64()})
        body = {"chatId": self._chat_id(to), "file": file}
        if caption and media.kind != "audio":
            body["caption"] = caption
        return self._send("/api/sendImage" if media.kind == "image" else "/api/sendFile", body)

    def _chat_id(self, to):
        chat_id = to if "@" in (to or "") else ((digits_to_e164(to) or "")[1:] + "@c.us")
        if chat_id == "@c.us":
            raise WhatsAppProviderError(f"WAHA: cannot send to {to!r}.", provider=self.code)
        return chat_id

    def _send(self, path, body):
        data = as_dict(self._request("POST", path, json_body={"session": self._session_name(), **body}))
        raw_id = data.get("id")
        message_id = as_text(as_dict(raw_id).get("_serialized")) or as_text(raw_id)  # WEBJS: {"_serialized"}
        message_id = message_id or as_text(as_dict(data.get("key")).get("id"))  # NOWEB
        return self._check_answer_id(message_id)

    def _session_name(self):
        return self.external_id or self.default_session

    # ------------------------------------------------------------------ webhooks

    def download_media(self, media):
        """WAHA serves downloaded media at ``media.url`` on its own server (with the X-Api-Key)."""
        media = as_dict(media)
        if not as_text(media.get("url")):
            raise WhatsAppProviderError(
                media.get("error") or "WAHA did not download this media (media download is disabled).",
                provider=self.code,
            )
        response = self._request("GET", self._same_origin_url(media["url"]), headers={"Accept": "*/*"}, raw=True)
        mimetype = media.get("mimetype") or (response.headers.get("Content-Type") or "").split(";")[0] or None
        return response.content, mimetype, media.get("filename")

    def verify_webhook(self, body, headers, params=None):
        return self.authenticate_webhook(body, headers, params)[0]

    def authenticate_webhook(self, body, headers, params=None):
        """The HMAC of the raw body, then the time the body says it was sent (signed with it): a
        captured request replayed later is refused, whatever headers come with it."""
        verdict = self._verify_hmac_hex(body, self._header(headers, SIGNATURE_HEADER), hashlib.sha512)
        if verdict != SIGNATURE_VALID:
            return verdict, None
        sent_at = self._signed_time(body)
        if sent_at is None:
            return SIGNATURE_INVALID, (
                "Replay protection: the signed body has no timestamp (Unix milliseconds), so its age "
                "cannot be checked. WAHA versions that date their webhooks send one."
            )
        age = self.now() - sent_at
        limit = self.replay_window + self.clock_skew
        window = describe_duration(self.replay_window)
        if age > limit:
            return SIGNATURE_INVALID, (
                f"Replay refused: the request was signed {describe_duration(age)} ago, too old "
                f"(accepted within {window})."
            )
        if age < -limit:
            return SIGNATURE_INVALID, (
                f"Replay refused: the request is dated {describe_duration(-age)} ahead of this server's clock "
                f"(accepted within {window}); check the clocks of WAHA and Odoo."
            )
        return SIGNATURE_VALID, None

    def _signed_time(self, body):
        """The envelope's ``timestamp`` in epoch seconds, or None when it has none."""
        try:
            stamp = self._load_json(body).get("timestamp")
        except WebhookPayloadError:
            return None
        if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
            return None
        try:
            seconds = stamp / 1000.0
        except OverflowError:
            return None
        return seconds if math.isfinite(seconds) else None

    def webhook_event_id(self, body, events):
        """The envelope's ``id`` (``evt_<ulid>``): signed, one per event, kept by WAHA's retries."""
        try:
            event_id = as_text(self._load_json(body).get("id"))
        except WebhookPayloadError:
            event_id = None
        return event_id_of(event_id) or super().webhook_event_id(body, events)

    def parse_webhook(self, body, headers=None):
        envelope = self._load_json(body)
        event = as_text(envelope.get("event"))
        if event is None:
            raise WebhookPayloadError("WAHA webhook: field 'event' is missing.")
        session = as_text(envelope.get("session"))
        payload = envelope.get("payload")
        if event in ("message", "message.any", "session.status", "message.ack") and not isinstance(payload, dict):
            raise WebhookPayloadError(f"WAHA {event}: field 'payload' must be an object.")
        if event in ("message", "message.any"):
            return [self._parse_message(session, payload)]
        if event == "message.ack":
            return [self._parse_ack(session, payload, envelope)]
        if event == "session.status":
            state = self.SESSION_STATES.get(as_text(payload.get("status")) or "")
            if state is None:
                return [UnknownEvent(session=session, event_type=event, raw=envelope)]
            phone = phone_from_jid(as_dict(envelope.get("me")).get("id"))
            return [ConnectionUpdate(session=session, state=state, phone=phone)]
        return [UnknownEvent(session=session, event_type=event, raw=envelope)]

    def _parse_message(self, session, payload):
        from_me = as_bool(payload.get("fromMe"))
        chat = normalize_jid(payload.get("to") if from_me else payload.get("from"))
        if chat is None:
            raise WebhookPayloadError("WAHA message: field 'from' (or 'to' for own messages) is missing.")
        is_group = chat.endswith("@g.us")
        contact = normalize_jid(payload.get("participant")) if is_group else chat
        contact = contact or chat
        data = as_dict(payload.get("_data"))
        name = as_text(data.get("notifyName")) or as_text(data.get("pushName"))
        name = name or as_text(as_dict(data.get("Info")).get("PushName"))  # GOWS
        message_type, media = _type_and_media(payload, data)
        text = payload.get("body")
        return InboundMessage(
            session=session,
            message_id=require_text(payload, "id", "WAHA message"),
            contact_identity=contact,
            contact_phone=phone_from_jid(contact),
            contact_name=None if from_me else name,
            text=text if isinstance(text, str) else "",
            message_type=message_type,
            media=media,
            timestamp=epoch_to_utc(payload.get("timestamp")),
            from_me=from_me,
            is_group=is_group,
            # NOWEB's raw Baileys message; WAHA normalizes no ad field (reference/attribution.md §1)
            referral=None if from_me else baileys_referral(*message_context_infos(data.get("message"))),
        )

    def _parse_ack(self, session, payload, envelope):
        ack = payload.get("ack")
        name = as_text(payload.get("ackName"))
        if not name and isinstance(ack, int) and not isinstance(ack, bool):
            name = ACK_NAMES.get(ack)
        status = self.MESSAGE_STATUSES.get(name or "")
        if status is None:
            return UnknownEvent(session=session, event_type="message.ack", raw=envelope)
        return StatusUpdate(
            session=session,
            message_id=require_text(payload, "id", "WAHA ack"),
            status=status,
            timestamp=epoch_to_utc(payload.get("timestamp") or envelope.get("timestamp")),
            error="WAHA reported an ERROR ack" if status == "failed" else None,
            recipient=normalize_jid(payload.get("to") or payload.get("from")),
        )


def _type_and_media(payload, data):
    """(type, media reference) of a WAHA message. ``media.url`` is served by WAHA (needs the
    X-Api-Key); ``hasMedia`` with no ``media`` means WAHA did not download it."""
    media = payload.get("media")
    if isinstance(media, dict) or as_bool(payload.get("hasMedia")):
        media = as_dict(media)
        mimetype = as_text(media.get("mimetype")) or ""
        if mimetype == "image/webp" or data.get("type") == "sticker":
            kind = "sticker"
        elif mimetype.split("/")[0] in ("image", "video", "audio"):
            kind = mimetype.split("/")[0]
        else:
            kind = DATA_TYPES.get(as_text(data.get("type")) or "", "document")
        reference = {
            "id": as_text(payload.get("id")),
            "url": as_text(media.get("url")),
            "mimetype": mimetype or None,
            "filename": as_text(media.get("filename")),
            "caption": as_text(payload.get("body")),
            "error": as_text(media.get("error")),
        }
        return kind, reference
    kind = DATA_TYPES.get(as_text(data.get("type")) or "")
    if kind:
        return kind, None
    if payload.get("location") or data.get("lat"):
        return "location", None
    return "text", None
