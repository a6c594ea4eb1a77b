"""Z-API (hosted, Brazil): connect a number by QR code.

Facts used here (reference/provider-apis.md §5 and developer.z-api.io): every call goes to
``<API URL>/instances/<instance id>/token/<instance token>/<method>`` (default API URL
``https://api.z-api.io``), with the header ``Client-Token: <account security token>`` once the
account has activated it (before, requests without it are accepted). The QR code changes every
20 seconds. Z-API only calls HTTPS webhook URLs, one per kind of event, and signs nothing.

The integration's settings:

- ``external_id``: the instance id (instances are created in the Z-API panel);
- ``api_key``: ``<instance token>:<client token>``, or only ``<instance token>`` while the account
  security token is not activated (both tokens are shown in the Z-API panel; neither holds a
  colon);
- ``webhook_secret``: generated; the webhook URLs registered with Z-API carry it as the query
  parameter ``vm_secret``, which :meth:`ZapiProvider.verify_webhook` compares in constant time.
  Like the token in the path, it appears in the URL, so also in web server access logs.

Webhook bodies (one event per POST) are told apart by ``type``: ``ReceivedCallback`` (a message,
also those sent from the phone, ``fromMe``, since we register ``update-webhook-received-delivery``),
``MessageStatusCallback`` (``status`` of the message ``ids``), ``ConnectedCallback`` and
``DisconnectedCallback``; ``instanceId`` names the instance. A received message's ``phone`` is
the chat: digits (a phone), ``<digits>@lid`` (a hidden id, never read as a phone), or a group id
(``isGroup``; the contact is then ``participantPhone``/``participantLid``). Group and call
notices (``notification``), status broadcasts and newsletters become unknown events.
"""

from typing import ClassVar
from urllib.parse import quote, urlencode, urlsplit

from . import register
from .base import AUTH_BY_QUERY, WhatsAppProvider
from .events import ConnectionUpdate, InboundMessage, SessionInfo, StatusUpdate, UnknownEvent
from .exceptions import WebhookPayloadError, WhatsAppProviderError
from .utils import as_bool, as_dict, as_list, as_text, digits_to_e164, epoch_to_utc, require_text

QUERY_PARAM = "vm_secret"  # query parameter of our webhook URL that holds the webhook secret
QR_LIFETIME = 20  # seconds: WhatsApp replaces the QR code this often
# update-webhook-<kind> methods that point each kind of event at our URL
WEBHOOK_KINDS = ("received-delivery", "message-status", "connected", "disconnected")
# message kind in a ReceivedCallback -> (our message type, its URL key, its caption/text key)
CONTENT_KINDS = {
    "image": ("image", "imageUrl", "caption"),
    "video": ("video", "videoUrl", "caption"),
    "audio": ("audio", "audioUrl", None),
    "document": ("document", "documentUrl", "caption"),
    "sticker": ("sticker", "stickerUrl", None),
}


@register
class ZapiProvider(WhatsAppProvider):
    code = "zapi"
    provider_name = "Z-API"
    sequence = 60
    event_kinds = frozenset({"message", "status", "connection"})
    webhook_auth = AUTH_BY_QUERY
    # Client-Token is ours; a field report sees Z-API send the instance token as z-api-token
    secret_headers = frozenset({"client-token", "z-api-token"})
    uses_qr = True
    requires_external_id = True
    registers_webhook = True
    downloads_media = True
    sends_media = True
    default_api_base_url = "https://api.z-api.io"

    MESSAGE_STATUSES: ClassVar[dict] = {
        "SENT": "sent",
        "RECEIVED": "delivered",
        "READ": "read",
        "PLAYED": "read",
    }

    # ------------------------------------------------------------------ credentials

    def _tokens(self):
        """(instance token, client token), each None when not set, from ``api_key``."""
        instance_token, _sep, client_token = (self.api_key or "").partition(":")
        return instance_token.strip() or None, client_token.strip() or None

    def _auth_headers(self):
        client_token = self._tokens()[1]
        return {"Client-Token": client_token} if client_token else {}

    def _instance_path(self, method):
        instance_token = self._tokens()[0]
        if not self.external_id or not instance_token:
            raise WhatsAppProviderError(
                "Z-API: set the instance id, and the API key to '<instance token>:<client token>' "
                "(or the instance token alone while the account security token is not activated).",
                provider=self.code,
            )
        return f"/instances/{quote(self.external_id, safe='')}/token/{quote(instance_token, safe='')}/{method}"

    def _path_for_log(self, path):
        """The path without the instance token."""
        head, sep, rest = path.partition("/token/")
        return head + sep + "***/" + rest.partition("/")[2] if sep else path

    # ------------------------------------------------------------------ sessions

    def secret_webhook_url(self):
        """Our webhook URL with the webhook secret in its query: what Z-API calls."""
        if not self.webhook_url or not self.webhook_secret:
            raise WhatsAppProviderError(
                "Z-API: set the webhook URL and the webhook secret before connecting.", provider=self.code
            )
        if urlsplit(self.webhook_url).scheme != "https":
            raise WhatsAppProviderError(
                "Z-API only calls HTTPS webhooks: make the server's URL (web.base.url) an https:// URL.",
                provider=self.code,
            )
        separator = "&" if urlsplit(self.webhook_url).query else "?"
        return self.webhook_url + separator + urlencode({QUERY_PARAM: self.webhook_secret})

    def register_webhooks(self):
        """Point received messages (and those sent from the phone), message statuses,
        connections and disconnections at our URL."""
        url = self.secret_webhook_url()
        for kind in WEBHOOK_KINDS:
            self._request("PUT", self._instance_path(f"update-webhook-{kind}"), json_body={"value": url})

    def create_session(self, external_id=None, phone=None):
        """Register our webhooks, then return the connected state or the current QR code.
        ``phone`` is ignored: no pairing code is asked for."""
        if external_id:
            self.external_id = external_id
        self.register_webhooks()
        return self.get_session_status()

    def get_session_status(self, external_id=None):
        """Connected, or waiting for a scan with the current QR code (it changes every 20 s)."""
        if external_id:
            self.external_id = external_id
        status = as_dict(self._request("GET", self._instance_path("status")))
        if status.get("connected") is True:
            return SessionInfo(self.external_id, "connected")
        value = as_text(as_dict(self._request("GET", self._instance_path("qr-code/image"))).get("value"))
        if not value:
            return SessionInfo(self.external_id, "pending", message=as_text(status.get("error")))
        is_image = value.startswith("data:image") or value.startswith("iVBOR")  # base64 of a PNG
        return SessionInfo(
            self.external_id,
            "qr_ready",
            qr_image=value if is_image else None,
            qr_code=None if is_image else value,
            expires_in=QR_LIFETIME,
        )

    def close_session(self, external_id=None):
        """Log the number out (``GET /disconnect``); the instance stays, ready for a new QR."""
        if external_id:
            self.external_id = external_id
        self._request("GET", self._instance_path("disconnect"))
        return SessionInfo(self.external_id, "closed")

    def check_connection(self):
        status = as_dict(self._request("GET", self._instance_path("status")))
        state = "connected" if status.get("connected") is True else as_text(status.get("error")) or "not connected"
        return f"Z-API reachable; instance {self.external_id}: {state}"

    # ------------------------------------------------------------------ messages

    def send_text(self, to, text):
        """POST /send-text; ``to`` is a phone (digits or E.164) or a chat id (``@lid``, group)."""
        return self._send("send-text", {"phone": self._phone(to), "message": text})

    def send_media(self, to, media, caption=None):
        """POST /send-image for an image, /send-document/{extension} for anything else; the
        file by URL or as a base64 data URL."""
        file = media.url or media.data_url()
        body = {"phone": self._phone(to)}
        if caption and media.kind != "audio":
            body["caption"] = caption
        if media.kind == "image":
            return self._send("send-image", {**body, "image": file})
        extension = _extension(media)
        return self._send(
            f"send-document/{quote(extension, safe='')}", {**body, "document": file, "fileName": media.filename}
        )

    def _phone(self, to):
        to = to or ""
        number = to if "@" in to or to.endswith("-group") else (digits_to_e164(to) or "")[1:]
        if not number:
            raise WhatsAppProviderError(f"Z-API: cannot send to {to!r}.", provider=self.code)
        return number

    def _send(self, method, body):
        data = as_dict(self._request("POST", self._instance_path(method), json_body=body))
        return self._check_answer_id(as_text(data.get("messageId")) or as_text(data.get("id")))

    def download_media(self, media):
        """Z-API media URLs are files on its storage, readable without credentials for 30 days:
        fetched over HTTPS, with no Client-Token (it is not sent to another host)."""
        media = as_dict(media)
        url = as_text(media.get("url"))
        if not url or urlsplit(url).scheme != "https":
            raise WhatsAppProviderError("Z-API: the message has no HTTPS media URL.", provider=self.code)
        response = self._request("GET", url, headers={"Accept": "*/*", "Client-Token": None}, raw=True)
        mimetype = media.get("mimetype") or (response.headers.get("Content-Type") or "").split(";")[0] or None
        return response.content, mimetype, media.get("filename")

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, body, headers, params=None):
        """The ``vm_secret`` query parameter of the URL Z-API called, compared in constant time
        with the webhook secret (Z-API signs nothing)."""
        return self._verify_static_secret(as_text((params or {}).get(QUERY_PARAM)))

    def parse_webhook(self, body, headers=None):
        payload = self._load_json(body)
        kind = as_text(payload.get("type"))
        if kind is None:
            raise WebhookPayloadError("Z-API webhook: field 'type' is missing.")
        session = as_text(payload.get("instanceId"))
        if kind == "ReceivedCallback":
            return [self._parse_message(session, payload)]
        if kind == "MessageStatusCallback":
            return self._parse_statuses(session, payload)
        if kind == "ConnectedCallback" and payload.get("connected") is not False:
            return [ConnectionUpdate(session=session, state="connected", phone=digits_to_e164(payload.get("phone")))]
        if kind == "DisconnectedCallback":
            return [ConnectionUpdate(session=session, state="closed", reason=as_text(payload.get("error")))]
        return [UnknownEvent(session=session, event_type=kind, raw=payload)]

    def _parse_message(self, session, payload):
        if payload.get("notification") or as_bool(payload.get("broadcast")) or as_bool(payload.get("isNewsletter")):
            notice = as_text(payload.get("notification")) or "broadcast"
            return UnknownEvent(session=session, event_type=f"ReceivedCallback:{notice}", raw=payload)
        chat = require_text(payload, "phone", "Z-API message")
        from_me, is_group = as_bool(payload.get("fromMe")), as_bool(payload.get("isGroup"))
        contact = chat
        if is_group:
            contact = as_text(payload.get("participantPhone")) or as_text(payload.get("participantLid")) or chat
        message_type, text, media = _content(payload)
        return InboundMessage(
            session=session,
            message_id=require_text(payload, "messageId", "Z-API message"),
            contact_identity=contact,
            contact_phone=digits_to_e164(contact),  # None for a @lid or a group id
            contact_name=None if from_me else as_text(payload.get("senderName")) or as_text(payload.get("chatName")),
            text=text,
            message_type=message_type,
            media=media,
            timestamp=epoch_to_utc(payload.get("momment")),
            from_me=from_me,
            is_group=is_group,
        )

    def _parse_statuses(self, session, payload):
        status = self.MESSAGE_STATUSES.get(as_text(payload.get("status")) or "")
        ids = [as_text(i) for i in as_list(payload.get("ids"))] or [as_text(payload.get("id"))]
        ids = [i for i in ids if i]
        if status is None or not ids:  # READ_BY_ME: read on our own phone; nothing to update
            return [UnknownEvent(session=session, event_type="MessageStatusCallback", raw=payload)]
        recipient = as_text(payload.get("phone"))
        timestamp = epoch_to_utc(payload.get("momment"))
        return [
            StatusUpdate(session=session, message_id=i, status=status, timestamp=timestamp, recipient=recipient)
            for i in ids
        ]


def _content(payload):
    """(type, text, media) of a ReceivedCallback."""
    text = as_dict(payload.get("text"))
    if text:
        return "text", _str(text.get("message")), None
    for key, (message_type, url_key, caption_key) in CONTENT_KINDS.items():
        body = payload.get(key)
        if isinstance(body, dict):
            caption = as_text(body.get(caption_key)) if caption_key else None
            media = {
                "url": as_text(body.get(url_key)),
                "mimetype": as_text(body.get("mimeType")),
                "filename": as_text(body.get("fileName")),
                "caption": caption,
            }
            return message_type, caption or "", media
    location, contact, reaction = (as_dict(payload.get(k)) for k in ("location", "contact", "reaction"))
    if location:
        return "location", _str(location.get("name") or location.get("address")), None
    if contact:
        return "contact", _str(contact.get("displayName")), None
    if reaction:
        return "reaction", _str(reaction.get("value")), None
    return "other", "", None


def _str(value):
    return value if isinstance(value, str) else ""


def _extension(media):
    """The file extension Z-API's send-document wants in its path: the file name's, else the
    mimetype's subtype (``application/pdf`` -> ``pdf``)."""
    name_ext = media.filename.rpartition(".")[2] if "." in (media.filename or "") else ""
    extension = name_ext or (media.mimetype or "").partition("/")[2].partition(";")[0]
    extension = "".join(ch for ch in extension.lower() if ch.isalnum())[:10]
    return extension or "bin"
