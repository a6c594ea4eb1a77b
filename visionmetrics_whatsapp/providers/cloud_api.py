"""WhatsApp Cloud API payloads, shared by ``meta`` (Meta itself) and ``dialog360`` (360dialog,
which forwards Meta's webhook bodies unchanged and takes Meta's message bodies).

Webhook shape (reference/provider-apis.md §3.5)::

    {"object": "whatsapp_business_account",
     "entry": [{"id": "<WABA id>", "changes": [{"field": "messages", "value": {
         "metadata": {"phone_number_id": ..}, "contacts": [..], "messages": [..], "statuses": [..]}}]}]}

One POST may batch several entries, changes, messages and statuses. ``contacts[].wa_id`` may be
missing (only the business-scoped ``user_id`` is given); the identity is then the ``user_id`` and
no phone is derived. ``smb_message_echoes`` (messages typed in the WhatsApp Business app of a
coexistence number) become ``from_me`` messages.
"""

from typing import ClassVar

from .base import WhatsAppProvider
from .events import InboundMessage, StatusUpdate, UnknownEvent
from .exceptions import WebhookPayloadError, WhatsAppProviderError
from .referral import cloud_api_referral
from .utils import as_dict, as_list, as_text, digits_to_e164, epoch_to_utc, require_text

MEDIA_TYPES = {
    "image": "image",
    "video": "video",
    "audio": "audio",
    "document": "document",
    "sticker": "sticker",
}


class CloudApiProvider(WhatsAppProvider):
    """Parsing and sending shared by the Cloud API providers (not registered itself)."""

    event_kinds = frozenset({"message", "status"})
    downloads_media = True
    media_through_api_host = False  # 360dialog serves Meta's media URLs through its own host

    MESSAGE_STATUSES: ClassVar[dict] = {
        "sent": "sent",
        "delivered": "delivered",
        "read": "read",
        "played": "read",
        "failed": "failed",
    }
    messages_path = "/messages"  # where messages are posted (Meta prefixes the phone number id)
    media_path = "/media"  # where media are uploaded (Meta prefixes the phone number id)
    sends_media = True
    free_text_window = 24 * 3600  # the customer service window

    # ------------------------------------------------------------------ webhooks

    def parse_webhook(self, body, headers=None):
        payload = self._load_json(body)
        if "entry" not in payload and ("messages" in payload or "statuses" in payload):
            return self._parse_value(payload, "messages", payload)  # a bare ``value`` (older relays)
        if payload.get("object") not in (None, "whatsapp_business_account"):
            return [UnknownEvent(event_type=str(payload.get("object")), raw=payload)]
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise WebhookPayloadError("Cloud API webhook: field 'entry' must be a list.")
        events = []
        for entry in entries:
            changes = as_dict(entry).get("changes")
            if not isinstance(changes, list):
                raise WebhookPayloadError("Cloud API webhook: field 'entry[].changes' must be a list.")
            for change in changes:
                change = as_dict(change)
                field = as_text(change.get("field")) or ""
                value = change.get("value")
                if field not in ("messages", "smb_message_echoes") or not isinstance(value, dict):
                    events.append(UnknownEvent(event_type=field or "unknown", raw=change))
                    continue
                events.extend(self._parse_value(value, field, change))
        return events

    def _parse_value(self, value, field, raw):
        session = as_text(as_dict(value.get("metadata")).get("phone_number_id"))
        contacts = [as_dict(c) for c in as_list(value.get("contacts"))]
        events = []
        for message in as_list(value.get("messages")):
            events.append(self._parse_message(session, as_dict(message), contacts))
        for message in as_list(value.get("message_echoes")):
            events.append(self._parse_message(session, as_dict(message), contacts, from_me=True))
        for status in as_list(value.get("statuses")):
            events.append(self._parse_status(session, as_dict(status), raw))
        if not events:  # errors-only values, history, unknown content
            events.append(UnknownEvent(session=session, event_type=field, raw=raw))
        return events

    @staticmethod
    def _find_contact(contacts, wa_id, user_id):
        for contact in contacts:
            if (wa_id and as_text(contact.get("wa_id")) == wa_id) or (
                user_id and as_text(contact.get("user_id")) == user_id
            ):
                return contact
        return contacts[0] if len(contacts) == 1 else {}

    def _parse_message(self, session, message, contacts, from_me=False):
        message_id = require_text(message, "id", "Cloud API message")
        if from_me:  # echo of a message the business typed: the contact is the recipient
            wa_id, user_id = as_text(message.get("to")), as_text(message.get("to_user_id"))
        else:
            wa_id, user_id = as_text(message.get("from")), as_text(message.get("from_user_id"))
        contact = self._find_contact(contacts, wa_id, user_id)
        wa_id = wa_id or as_text(contact.get("wa_id"))
        user_id = user_id or as_text(contact.get("user_id"))
        identity = wa_id or user_id
        if identity is None:
            raise WebhookPayloadError("Cloud API message: neither 'from', 'wa_id' nor 'user_id' is present.")
        message_type, text, media = _content(message)
        return InboundMessage(
            session=session,
            message_id=message_id,
            contact_identity=identity,
            contact_phone=digits_to_e164(wa_id),
            contact_name=None if from_me else as_text(as_dict(contact.get("profile")).get("name")),
            text=text,
            message_type=message_type,
            media=media,
            timestamp=epoch_to_utc(message.get("timestamp")),
            from_me=from_me,
            is_group=bool(as_text(message.get("group_id"))),
            referral=None if from_me else cloud_api_referral(message),
        )

    def _parse_status(self, session, status, raw):
        value = self.MESSAGE_STATUSES.get(as_text(status.get("status")) or "")
        if value is None:
            return UnknownEvent(session=session, event_type="status", raw=raw)
        first = as_dict(next(iter(as_list(status.get("errors"))), None))
        title = as_text(first.get("title")) or as_text(first.get("message"))
        error = ": ".join(part for part in (as_text(first.get("code")), title) if part) or None
        details = as_text(as_dict(first.get("error_data")).get("details"))
        if error and details and details != title:
            error += f" ({details})"
        return StatusUpdate(
            session=session,
            message_id=require_text(status, "id", "Cloud API status"),
            status=value,
            timestamp=epoch_to_utc(status.get("timestamp")),
            error=error,
            recipient=as_text(status.get("recipient_id")) or as_text(status.get("recipient_user_id")),
        )

    def _error_message(self, response):
        """The Graph API error's message, and its ``error_data.details`` (what to do about it)."""
        message = super()._error_message(response)
        try:
            details = as_text(as_dict(as_dict(as_dict(response.json()).get("error")).get("error_data")).get("details"))
        except ValueError:
            details = None
        return f"{message} ({details[:300]})" if details and details not in message else message

    # ------------------------------------------------------------------ messages

    def send_text(self, to, text):
        """Send a text; ``to`` is a phone (digits or E.164) or a wa_id. Returns the wamid."""
        return self._send(to, "text", {"body": text, "preview_url": False})

    def send_media(self, to, media, caption=None):
        """Send a file by its public ``url`` (``link``) or, with its bytes, uploaded first
        (``POST /media``, then the media ``id``). Audio takes no caption."""
        reference = {"link": media.url} if media.url else {"id": self.upload_media(media)}
        if caption and media.kind != "audio":
            reference["caption"] = caption
        if media.kind == "document" and media.filename:
            reference["filename"] = media.filename
        return self._send(to, media.kind, reference)

    def upload_media(self, media):
        """Upload a file (multipart form); returns the media id to send it with."""
        files = {"file": (media.filename, media.content or b"", media.mimetype)}
        form = {"messaging_product": "whatsapp", "type": media.mimetype}
        data = as_dict(self._request("POST", self.media_path, data=form, files=files))
        media_id = as_text(data.get("id"))
        if not media_id:
            raise WhatsAppProviderError(f"{self.provider_name} did not return a media id.", provider=self.code)
        return media_id

    def _send(self, to, kind, content):
        number = digits_to_e164(to)
        if number is None:
            raise WhatsAppProviderError(f"{self.provider_name}: cannot send to {to!r}.", provider=self.code)
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": number[1:],
            "type": kind,
            kind: content,
        }
        data = self._request("POST", self.messages_path, json_body=body)
        return self._check_answer_id(
            as_text(as_dict(next(iter(as_list(as_dict(data).get("messages"))), None)).get("id"))
        )

    def download_media(self, media):
        """Cloud API media: ``GET /{media id}`` gives a short-lived URL, fetched with our
        credentials (through our API host for providers that proxy it)."""
        media = as_dict(media)
        media_id = as_text(media.get("id"))
        if not media_id:
            raise WhatsAppProviderError(f"{self.provider_name}: the message has no media id.", provider=self.code)
        info = as_dict(self._request("GET", f"/{media_id}"))
        url = as_text(info.get("url"))
        if not url:
            raise WhatsAppProviderError(
                f"{self.provider_name} returned no URL for media {media_id}.", provider=self.code
            )
        if self.media_through_api_host:
            url = self._same_origin_url(url)
        return _download(self, {**media, "mimetype": media.get("mimetype") or as_text(info.get("mime_type"))}, url)


def _download(provider, media, url):
    """GET a media URL with the provider's credentials: (bytes, mimetype, filename)."""
    response = provider._request("GET", url, headers={"Accept": "*/*"}, raw=True)
    mimetype = (media.get("mimetype") or response.headers.get("Content-Type") or "").split(";")[0] or None
    return response.content, mimetype, media.get("filename")


def _content(message):
    """(type, text, media) of a Cloud API message."""
    kind = as_text(message.get("type")) or ""
    body = as_dict(message.get(kind))
    if kind == "text":
        return "text", _str(body.get("body")), None
    if kind in MEDIA_TYPES:
        media = {
            "id": as_text(body.get("id")),
            "url": as_text(body.get("url")),
            "mimetype": as_text(body.get("mime_type")),
            "filename": as_text(body.get("filename")),
            "caption": as_text(body.get("caption")),
            "sha256": as_text(body.get("sha256")),
        }
        return MEDIA_TYPES[kind], _str(body.get("caption")), media
    if kind == "location":
        return "location", _str(body.get("name") or body.get("address")), None
    if kind == "contacts":
        first = as_dict(next(iter(as_list(message.get("contacts"))), None))
        return "contact", _str(as_dict(first.get("name")).get("formatted_name")), None
    if kind == "reaction":
        return "reaction", _str(body.get("emoji")), None
    if kind == "button":  # quick-reply button of a template
        return "text", _str(body.get("text")), None
    if kind == "interactive":
        reply = as_dict(body.get("button_reply")) or as_dict(body.get("list_reply"))
        return "text", _str(reply.get("title")), None
    return "other", "", None


def _str(value):
    return value if isinstance(value, str) else ""
