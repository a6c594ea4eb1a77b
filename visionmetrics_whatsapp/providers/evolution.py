"""Evolution API v2 (self-hosted, Baileys): QR code or pairing code.

Facts used here (reference/provider-apis.md §1, and the answers of a real 2.3.6 server recorded in
tests/samples/evolution/): header ``apikey``; the instance is created with our webhook (URL, events
and the ``X-VM-Webhook-Secret`` header, since Evolution signs nothing); ``/instance/connect``
answers ``{"count": 0}`` while no QR exists yet; every route of an unknown instance answers 404
``{"response": {"message": ["The \"x\" instance does not exist"]}}``; ``connectionState`` says
``close`` between two reconnect attempts too, and only the instance's record (fetchInstances
``disconnectionReasonCode``) tells a final close; webhook events are lower-case dotted
(``messages.upsert``), one message per POST.

Contacts: the identity is ``key.remoteJid`` (device suffix dropped), which may be a ``@lid``; the
phone comes only from a phone JID: ``remoteJid`` itself, else ``remoteJidAlt``, else ``senderPn``.
In groups the contact is the participant (``participantAlt`` holds its phone when it is a LID).
"""

import base64
import binascii
import hashlib
import logging
import re
import secrets
from typing import ClassVar
from urllib.parse import quote

from . import register
from .base import AUTH_BY_HEADER, WhatsAppProvider
from .events import ConnectionUpdate, InboundMessage, QrUpdate, SessionInfo, StatusUpdate, UnknownEvent
from .exceptions import WebhookPayloadError, WhatsAppProviderError, WhatsAppSessionNotFoundError
from .referral import baileys_referral, message_context_infos
from .utils import (
    as_bool,
    as_dict,
    as_list,
    as_text,
    digits_to_e164,
    epoch_to_utc,
    is_phone_jid,
    normalize_jid,
    phone_from_jid,
    require_text,
)

_logger = logging.getLogger(__name__)

WEBHOOK_AUTH_HEADER = "X-VM-Webhook-Secret"
WEBHOOK_EVENTS = ["QRCODE_UPDATED", "CONNECTION_UPDATE", "MESSAGES_UPSERT", "MESSAGES_UPDATE", "SEND_MESSAGE"]
# message.<key> -> our message type, in the order they are looked for
MESSAGE_KINDS = {
    "conversation": "text",
    "extendedTextMessage": "text",
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "documentWithCaptionMessage": "document",
    "stickerMessage": "sticker",
    "locationMessage": "location",
    "liveLocationMessage": "location",
    "contactMessage": "contact",
    "contactsArrayMessage": "contact",
    "reactionMessage": "reaction",
}
MEDIA_KINDS = (
    "imageMessage",
    "videoMessage",
    "ptvMessage",
    "audioMessage",
    "documentMessage",
    "stickerMessage",
)
WRAPPERS = ("ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "documentWithCaptionMessage")
STATUS_NAMES = ("ERROR", "PENDING", "SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED")  # v1 sent the index
# Baileys close codes after which Evolution does not reconnect (loggedOut, forbidden, 402, 406)
FINAL_CLOSE_CODES = (401, 402, 403, 406)
# the 404 of an unknown instance: 'The "x" instance does not exist' (fetchInstances: 'Instance "x" not found')
UNKNOWN_INSTANCE_RE = re.compile(r'"(?P<name>[^"]*)" instance does not exist|Instance "(?P<other>[^"]*)" not found')
# The 500 of a send while the instance has no WhatsApp socket (never connected, or logged out):
# "Cannot read properties of undefined (reading 'onWhatsApp')" (2.3.6). Retrying cannot help.
NO_SOCKET_RE = re.compile(r"Cannot read properties of undefined")


@register
class EvolutionProvider(WhatsAppProvider):
    code = "evolution"
    provider_name = "Evolution API"
    sequence = 20
    event_kinds = frozenset({"message", "status", "connection", "qr"})
    webhook_auth = AUTH_BY_HEADER
    uses_qr = True
    uses_pairing_code = True
    registers_webhook = True  # with the instance, or /webhook/set
    downloads_media = True
    sends_media = True
    # Our webhook secret; the API key, should a proxy or a header setting pass it on; and the
    # instance token Evolution puts in every webhook body (``apikey``, null unless it exposes it).
    secret_headers = frozenset({WEBHOOK_AUTH_HEADER.lower(), "apikey"})
    secret_body_fields = ("apikey",)

    # Baileys connection state (+ Evolution's "refused": QR limit reached) -> our session state.
    # "connecting" is pending: get_session_status turns it into qr_ready when a QR is available.
    SESSION_STATES: ClassVar[dict] = {
        "open": "connected",
        "connecting": "pending",
        "close": "closed",
        "refused": "expired",
    }
    MESSAGE_STATUSES: ClassVar[dict] = {
        "ERROR": "failed",
        "PENDING": "pending",
        "SERVER_ACK": "sent",
        "DELIVERY_ACK": "delivered",
        "READ": "read",
        "PLAYED": "read",
    }

    def _auth_headers(self):
        return {"apikey": self.api_key} if self.api_key else {}

    def _name(self, external_id=None):
        name = external_id or self.external_id
        if not name:
            raise WhatsAppProviderError("Evolution API: the instance name is not set.", provider=self.code)
        return name

    def _path(self, template, name):
        return template.format(quote(name, safe=""))

    def _request(self, method, path, **kwargs):
        """Evolution's 404 for an unknown instance becomes a WhatsAppSessionNotFoundError; its
        500 for a message sent while the instance is not connected, a (final) WhatsAppProviderError
        that says so."""
        try:
            return super()._request(method, path, **kwargs)
        except WhatsAppSessionNotFoundError:
            raise
        except WhatsAppProviderError as e:
            if e.status_code == 500 and path.startswith("/message/") and NO_SOCKET_RE.search(e.message):
                raise WhatsAppProviderError(
                    "Evolution API: the instance is not connected to WhatsApp, so nothing was sent. "
                    "Connect the number again (scan the QR code), then retry.",
                    status_code=500,
                    provider=self.code,
                ) from None
            match = e.status_code == 404 and UNKNOWN_INSTANCE_RE.search(e.message)
            if not match:
                raise
            name = match["name"] if match["name"] is not None else match["other"]
            raise WhatsAppSessionNotFoundError(
                f'Evolution API: the instance "{name}" does not exist on this server (deleted, or never '
                "created there). Connect again to create it.",
                status_code=404,
                provider=self.code,
            ) from None

    # ------------------------------------------------------------------ sessions

    def webhook_config(self):
        """The ``webhook`` object given to /instance/create and /webhook/set."""
        if not self.webhook_url or not self.webhook_secret:
            raise WhatsAppProviderError(
                "Evolution API: set the webhook URL and the webhook secret before connecting.",
                provider=self.code,
            )
        return {
            "enabled": True,
            "url": self.webhook_url,
            "byEvents": False,
            "base64": False,
            "headers": {WEBHOOK_AUTH_HEADER: self.webhook_secret},
            "events": list(WEBHOOK_EVENTS),
        }

    def create_session(self, external_id=None, phone=None):
        """Create the instance with our webhook; when it already exists, set the webhook and ask
        /instance/connect for the current QR instead."""
        name = external_id or self.external_id or "vm-" + secrets.token_hex(6)
        number = digits_to_e164(phone)
        body = {
            "instanceName": name,
            "integration": "WHATSAPP-BAILEYS",
            "qrcode": True,
            "webhook": self.webhook_config(),
        }
        if number:
            body["number"] = number[1:]
        try:
            data = self._request("POST", "/instance/create", json_body=body)
        except WhatsAppProviderError as e:
            if e.status_code not in (400, 403) or "already in use" not in e.message.lower():
                raise
            _logger.info("evolution: instance %s exists, reconnecting it", name)
            self._request("POST", self._path("/webhook/set/{}", name), json_body={"webhook": self.webhook_config()})
            params = {"number": number[1:]} if number else None
            data = self._request("GET", self._path("/instance/connect/{}", name), params=params)
            return self._session_from_connect(name, as_dict(data))
        data = as_dict(data)
        self._raise_for_error_body(data)
        info = self._session_from_connect(name, as_dict(data.get("qrcode")))
        if info.state == "pending":
            state = self.SESSION_STATES.get(as_text(as_dict(data.get("instance")).get("status")) or "")
            info.state = "connected" if state == "connected" else "pending"
        return info

    def get_session_status(self, external_id=None):
        name = self._name(external_id)
        try:
            data = as_dict(self._request("GET", self._path("/instance/connectionState/{}", name)))
        except WhatsAppSessionNotFoundError as e:
            return SessionInfo(name, "failed", message=e.message)
        self._raise_for_error_body(data)
        raw_state = as_text(as_dict(data.get("instance")).get("state"))
        if raw_state is None:
            return SessionInfo(name, "failed", message=f"Evolution API does not know the instance {name}.")
        if raw_state == "connecting":  # waiting for a scan: fetch the current QR
            data = self._request("GET", self._path("/instance/connect/{}", name))
            return self._session_from_connect(name, as_dict(data))
        if raw_state == "close":
            return self._closed_or_reconnecting(name)
        info = SessionInfo(name, self.SESSION_STATES.get(raw_state, "pending"), message=f"Evolution state: {raw_state}")
        if info.state == "connected":
            record = self._instance_record(name)
            owner = record.get("ownerJid") or as_dict(record.get("instance")).get("owner")
            info.phone = phone_from_jid(owner)
        return info

    def _closed_or_reconnecting(self, name):
        """``connectionState`` says ``close`` between two reconnect attempts as well as after a
        logout: the close is final only when the instance's record says it closed with a code
        after which Evolution does not reconnect. Otherwise the session is still waiting."""
        record = self._instance_record(name)
        code = record.get("disconnectionReasonCode")
        if record.get("connectionStatus") == "close" and code in FINAL_CLOSE_CODES:
            return SessionInfo(name, "closed", message=f"Evolution API closed the instance (reason {code}).")
        return SessionInfo(name, "pending", message="Evolution API is reconnecting the instance to WhatsApp.")

    def _instance_record(self, name):
        """The instance as fetchInstances lists it (``connectionStatus``, ``ownerJid``,
        ``disconnectionReasonCode``...), or {} when it cannot be read."""
        try:
            data = self._request("GET", "/instance/fetchInstances", params={"instanceName": name})
        except WhatsAppProviderError as e:
            _logger.info("evolution: cannot read the instance %s: %s", name, e)
            return {}
        items = [as_dict(item) for item in as_list(data) or [data]]
        return next((item for item in items if item.get("name") == name), items[0] if items else {})

    def _session_from_connect(self, name, data):
        """SessionInfo from a /instance/connect answer (or the ``qrcode`` of a create answer)."""
        self._raise_for_error_body(data)
        instance_state = as_text(as_dict(data.get("instance")).get("state"))
        if instance_state:
            return SessionInfo(name, self.SESSION_STATES.get(instance_state, "pending"))
        code, image = as_text(data.get("code")), as_text(data.get("base64"))
        if code or image:
            return SessionInfo(
                name, "qr_ready", qr_code=code, qr_image=image, pairing_code=as_text(data.get("pairingCode"))
            )
        return SessionInfo(
            name,
            "pending",
            message="Evolution API has no QR code yet; if this lasts, check that the Evolution server "
            "reaches WhatsApp (web.whatsapp.com) and runs a current release.",
        )

    def _raise_for_error_body(self, data):
        """Evolution answers some failures with HTTP 200 and ``{"error": true, "message": ...}``."""
        if isinstance(data, dict) and data.get("error") is True:
            message = data.get("message") or as_dict(data.get("response")).get("message") or "unknown error"
            raise WhatsAppProviderError(f"Evolution API: {message}", provider=self.code)

    def close_session(self, external_id=None):
        """Log out (the instance stays, ready for a new QR). Not connected, or an instance that
        no longer exists, is not an error."""
        name = self._name(external_id)
        try:
            self._request("DELETE", self._path("/instance/logout/{}", name))
        except WhatsAppSessionNotFoundError:
            _logger.info("evolution: instance %s does not exist, nothing to log out", name)
        except WhatsAppProviderError as e:
            if e.status_code != 400 or "not connected" not in e.message.lower():
                raise
        return SessionInfo(name, "closed")

    def check_connection(self):
        if self.external_id:
            data = as_dict(self._request("GET", self._path("/instance/connectionState/{}", self.external_id)))
            self._raise_for_error_body(data)
            state = as_text(as_dict(data.get("instance")).get("state")) or "unknown"
            return f"Evolution API reachable; instance {self.external_id} is {state}."
        data = self._request("GET", "/instance/fetchInstances")
        return f"Evolution API reachable; {len(as_list(data))} instance(s) visible with this key."

    # ------------------------------------------------------------------ messages

    def send_text(self, to, text):
        """POST /message/sendText/{instance}; ``to`` is a phone (digits or E.164) or a JID."""
        return self._send("/message/sendText/{}", {"number": self._number(to), "text": text})

    def send_media(self, to, media, caption=None):
        """POST /message/sendMedia/{instance} (``mediatype`` image, video or document, the file
        as base64 or a URL); audio goes to /message/sendWhatsAppAudio/{instance} (a voice note,
        no caption)."""
        number, file = self._number(to), media.url or media.base64()
        if media.kind == "audio":
            return self._send("/message/sendWhatsAppAudio/{}", {"number": number, "audio": file})
        body = {
            "number": number,
            "mediatype": media.kind,
            "mimetype": media.mimetype,
            "media": file,
            "fileName": media.filename,
        }
        if caption:
            body["caption"] = caption
        return self._send("/message/sendMedia/{}", body)

    def _number(self, to):
        number = to if "@" in (to or "") else (digits_to_e164(to) or "")[1:]
        if not number:
            raise WhatsAppProviderError(f"Evolution API: cannot send to {to!r}.", provider=self.code)
        return number

    def _send(self, template, body):
        data = as_dict(self._request("POST", self._path(template, self._name()), json_body=body))
        self._raise_for_error_body(data)
        return self._check_answer_id(as_text(as_dict(data.get("key")).get("id")))

    def download_media(self, media):
        """Evolution gives no usable file URL (unless it stores media on S3): ask it to decrypt
        the message's media, POST /chat/getBase64FromMediaMessage/{instance}."""
        media = as_dict(media)
        if as_text(media.get("url")):
            response = self._request("GET", self._same_origin_url(media["url"]), headers={"Accept": "*/*"}, raw=True)
            return response.content, media.get("mimetype"), media.get("filename")
        message_id = as_text(media.get("id"))
        if not message_id:
            raise WhatsAppProviderError("Evolution API: the message has no id to fetch its media.", provider=self.code)
        path = self._path("/chat/getBase64FromMediaMessage/{}", self._name())
        data = as_dict(
            self._request("POST", path, json_body={"message": {"key": {"id": message_id}}, "convertToMp4": False})
        )
        try:
            content = base64.b64decode(as_text(data.get("base64")) or "", validate=True)
        except (binascii.Error, ValueError):
            content = b""
        if not content:
            raise WhatsAppProviderError("Evolution API returned no media content.", provider=self.code)
        return (
            content,
            as_text(data.get("mimetype")) or media.get("mimetype"),
            as_text(data.get("fileName")) or media.get("filename"),
        )

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, body, headers, params=None):
        return self._verify_static_secret(self._header(headers, WEBHOOK_AUTH_HEADER))

    def webhook_event_id(self, body, events):
        """Messages and statuses by their ids (the default). A connection or QR update has no
        id, but its body, dated to the millisecond (``date_time``), is one per event and the same
        in Evolution's retries: its digest is the event's id."""
        event_id = super().webhook_event_id(body, events)
        if event_id or not events:
            return event_id
        try:
            dated = self._load_json(body).get("date_time") is not None
        except WebhookPayloadError:
            dated = False
        return "sha256:" + hashlib.sha256(body).hexdigest() if dated else None

    def parse_webhook(self, body, headers=None):
        payload = self._load_json(body)
        event = as_text(payload.get("event"))
        if event is None:
            raise WebhookPayloadError("Evolution webhook: field 'event' is missing.")
        event = event.lower().replace("_", ".").replace("-", ".")
        session = as_text(payload.get("instance"))
        data = payload.get("data")
        items = data if isinstance(data, list) else [data]
        if event in ("messages.upsert", "send.message"):
            return [self._parse_message(session, item) for item in items]
        if event == "messages.update":
            return [self._parse_status(session, item, payload) for item in items]
        if event == "connection.update":
            return [self._parse_connection(session, as_dict(data), payload)]
        if event == "qrcode.updated":
            return [self._parse_qr(session, as_dict(data), payload)]
        return [UnknownEvent(session=session, event_type=event, raw=payload)]

    def _parse_message(self, session, data):
        if not isinstance(data, dict):
            raise WebhookPayloadError("Evolution message: field 'data' must be an object.")
        key = data.get("key")
        if not isinstance(key, dict):
            raise WebhookPayloadError("Evolution message: field 'data.key' must be an object.")
        remote_jid = normalize_jid(key.get("remoteJid"))
        if remote_jid is None:
            raise WebhookPayloadError("Evolution message: field 'key.remoteJid' is missing.")
        from_me = as_bool(key.get("fromMe"))
        is_group = remote_jid.endswith("@g.us")
        if is_group:
            participant = normalize_jid(key.get("participant") or data.get("participant"))
            identity = participant or remote_jid
            candidates = (key.get("participantAlt"), participant)
        else:
            identity = remote_jid
            candidates = (
                remote_jid,
                key.get("remoteJidAlt"),
                key.get("senderPn"),
                key.get("previousRemoteJid"),
            )
        phone = next((phone_from_jid(c) for c in candidates if is_phone_jid(c)), None)
        if phone is None and not is_group:
            phone = digits_to_e164(key.get("senderPn"))  # some versions send bare digits
        message = as_dict(data.get("message"))
        message_type, text, media = _extract_content(message, as_text(data.get("messageType")))
        if media is not None:
            media["id"] = as_text(key.get("id"))
        return InboundMessage(
            session=session,
            message_id=require_text(key, "id", "Evolution message key"),
            contact_identity=identity,
            contact_phone=phone,
            contact_name=None if from_me else as_text(data.get("pushName")),
            text=text,
            message_type=message_type,
            media=media,
            timestamp=epoch_to_utc(data.get("messageTimestamp")),
            from_me=from_me,
            is_group=is_group,
            # Evolution lifts the content's contextInfo to data.contextInfo (2.3); older and
            # 2.4 builds leave it in the content only
            referral=None if from_me else baileys_referral(data.get("contextInfo"), *message_context_infos(message)),
        )

    def _parse_status(self, session, data, payload):
        if not isinstance(data, dict):
            raise WebhookPayloadError("Evolution status: field 'data' must be an object.")
        key = as_dict(data.get("key"))
        message_id = as_text(data.get("keyId")) or as_text(key.get("id"))
        if message_id is None:
            raise WebhookPayloadError("Evolution status: neither 'keyId' nor 'key.id' is present.")
        raw_status = data.get("status", as_dict(data.get("update")).get("status"))
        if isinstance(raw_status, int) and not isinstance(raw_status, bool) and 0 <= raw_status < len(STATUS_NAMES):
            raw_status = STATUS_NAMES[raw_status]
        status = self.MESSAGE_STATUSES.get(as_text(raw_status) or "")
        if status is None:  # DELETED, poll updates...
            return UnknownEvent(session=session, event_type="messages.update", raw=payload)
        return StatusUpdate(
            session=session,
            message_id=message_id,
            status=status,
            error="Evolution API reported ERROR" if status == "failed" else None,
            recipient=normalize_jid(data.get("remoteJid") or key.get("remoteJid")),
        )

    def _parse_connection(self, session, data, payload):
        state = self.SESSION_STATES.get(as_text(data.get("state")) or "")
        if state is None:
            return UnknownEvent(session=session, event_type="connection.update", raw=payload)
        reason = as_text(data.get("statusReason"))
        return ConnectionUpdate(
            session=session or as_text(data.get("instance")),
            state=state,
            phone=phone_from_jid(data.get("wuid")),
            reason=None if reason == "200" else reason,
        )

    def _parse_qr(self, session, data, payload):
        qrcode = data.get("qrcode")
        if isinstance(qrcode, dict):
            return QrUpdate(
                session=session or as_text(qrcode.get("instance")),
                qr_code=as_text(qrcode.get("code")),
                qr_image=as_text(qrcode.get("base64")),
                pairing_code=as_text(qrcode.get("pairingCode")),
            )
        if data.get("message") or data.get("statusCode"):  # "QR code limit reached, please login again"
            return ConnectionUpdate(session=session, state="expired", reason=as_text(data.get("message")))
        return UnknownEvent(session=session, event_type="qrcode.updated", raw=payload)


def _unwrap(message):
    """Strip ephemeral / view-once / document-with-caption wrappers."""
    for _depth in range(4):
        inner = next((as_dict(message[w]).get("message") for w in WRAPPERS if isinstance(message.get(w), dict)), None)
        if not isinstance(inner, dict):
            break
        message = inner
    return message


def _extract_content(message, message_type_hint):
    """(type, text, media) of a Baileys message. Text order: conversation, extendedTextMessage.text
    (v1 / pre-2.2 bodies), then captions. Binary and Long fields (2.3.6) are never read."""
    media_url = as_text(message.get("mediaUrl"))  # set only when Evolution stores media on S3
    message = _unwrap(message)
    kind = message_type_hint if message_type_hint in MESSAGE_KINDS and message_type_hint in message else None
    kind = kind or next((k for k in MESSAGE_KINDS if k in message), None)
    body = as_dict(message.get(kind)) if kind else {}
    text = message.get("conversation") if kind == "conversation" else None
    if kind == "extendedTextMessage" or (kind is None and isinstance(message.get("extendedTextMessage"), dict)):
        text = as_dict(message.get("extendedTextMessage")).get("text")
        kind = "extendedTextMessage"
    media = None
    if kind in MEDIA_KINDS:
        text = body.get("caption")
        media = {
            "mimetype": as_text(body.get("mimetype")),
            "filename": as_text(body.get("fileName")),
            "caption": as_text(body.get("caption")),
            "url": media_url,
        }
    elif kind == "reactionMessage":
        text = body.get("text")
    elif kind in ("locationMessage", "liveLocationMessage"):
        text = body.get("name") or body.get("address")
    elif kind in ("contactMessage", "contactsArrayMessage"):
        text = body.get("displayName")
    return MESSAGE_KINDS.get(kind, "other"), text if isinstance(text, str) else "", media
