"""Normalized webhook events.

``parse_webhook`` of every provider turns a raw body into a list of these objects, so the
addon's ingest code never looks at a provider's payload shape. ``sanitized()`` makes an event's
values safe to store: no NUL or lone surrogate in any string, ids bounded to what an index holds,
texts to a sane length, enumerated values within their vocabulary, timestamps within reason.
"""

import re
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..tools.text import (
    EVENT_TYPE_MAX_LENGTH,
    NAME_MAX_LENGTH,
    PAIRING_CODE_MAX_LENGTH,
    PHONE_MAX_LENGTH,
    QR_CODE_MAX_LENGTH,
    QR_IMAGE_MAX_LENGTH,
    REASON_MAX_LENGTH,
    TEXT_MAX_LENGTH,
    bounded_id,
    clean_json,
    clean_text,
)
from .exceptions import WebhookPayloadError

# Normalized message types (the selection of ``vm.whatsapp.message.message_type``).
MESSAGE_TYPES = (
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contact",
    "reaction",
    "other",
)
# Normalized message statuses, in the order a message goes through them.
MESSAGE_STATUSES = ("pending", "sent", "delivered", "read", "failed")
# Normalized session states (the selection of ``vm.whatsapp.session.state``).
SESSION_STATES = ("pending", "qr_ready", "connected", "expired", "failed", "closed")
# Where an ad referral came from: Meta's Cloud API ``referral``, or the Baileys ``externalAdReply``
# (or only its conversion markers) of a linked device.
REFERRAL_ORIGINS = ("cloud_api", "baileys")
REFERRAL_TEXT_MAX_LENGTH = 1024  # an ad's headline, primary text or greeting
URL_MAX_LENGTH = 2048
REFERRAL_DELAY_MAX = 30 * 24 * 3600  # seconds from click to message: more is a provider's mistake
# Timestamps outside this range are a provider's mistake (or an attack), not a date to store.
TIMESTAMP_MIN = datetime(1970, 1, 1)
TIMESTAMP_MAX = datetime(2100, 1, 1)
_E164 = re.compile(r"\+[0-9]{6,15}")


@dataclass
class WebhookEvent:
    """Base of every event. ``session`` is the provider's instance/session/phone-number id the
    payload names (None when it names none); the addon ignores events whose session is not the
    integration's."""

    session: str | None = None

    kind = "unknown"

    def sanitized(self):
        """A copy of this event whose values can be stored as they are (see the module's
        docstring). Raises :class:`.exceptions.WebhookPayloadError` when a required id holds
        nothing once cleaned."""
        return replace(self, session=bounded_id(self.session) or None)


@dataclass
class AdReferral:
    """A click-to-WhatsApp ad (or post) that opened the chat, as the first message after the
    click carries it (reference/attribution.md §1). Every field may be missing: desktop clicks,
    Status placements (no ``ctwa_clid``) and Baileys versions that only send the conversion
    markers give less. ``click_delay`` is Baileys' seconds from the click to the message."""

    source_id: str | None = None  # the ad id
    source_url: str | None = None
    source_type: str | None = None  # "ad", "post"
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None  # "image", "video"
    ctwa_clid: str | None = None
    welcome_message: str | None = None
    entry_point: str | None = None  # Baileys entryPointConversionSource ("ctwa_ad"...)
    click_delay: int | None = None
    origin: str = "cloud_api"  # one of REFERRAL_ORIGINS

    def sanitized(self):
        """A bounded copy, or None when nothing identifies an ad (no id, no click id, no URL)."""
        delay = self.click_delay
        referral = AdReferral(
            source_id=bounded_id(self.source_id) or None,
            source_url=_whole(self.source_url, URL_MAX_LENGTH) if _is_http_url(self.source_url) else None,
            source_type=_optional_text(self.source_type, 32),
            headline=_optional_text(self.headline, REFERRAL_TEXT_MAX_LENGTH),
            body=_optional_text(self.body, REFERRAL_TEXT_MAX_LENGTH),
            media_type=_optional_text(self.media_type, 32),
            ctwa_clid=bounded_id(self.ctwa_clid) or None,
            welcome_message=_optional_text(self.welcome_message, REFERRAL_TEXT_MAX_LENGTH),
            entry_point=_optional_text(self.entry_point, 64),
            click_delay=delay
            if isinstance(delay, int) and not isinstance(delay, bool) and 0 <= delay <= REFERRAL_DELAY_MAX
            else None,
            origin=self.origin if self.origin in REFERRAL_ORIGINS else "cloud_api",
        )
        if not (referral.source_id or referral.ctwa_clid or referral.source_url or referral.entry_point):
            return None
        return referral


@dataclass
class InboundMessage(WebhookEvent):
    """A message in a chat: received from a contact, or sent from the business's own phone
    (``from_me``)."""

    message_id: str = ""  # provider message id, the deduplication key
    contact_identity: str = ""  # provider id of the contact: wa_id, JID or LID
    contact_phone: str | None = None  # E.164 ("+5511987654321") when it can be derived
    contact_name: str | None = None
    text: str = ""  # body or caption
    message_type: str = "text"  # one of MESSAGE_TYPES
    media: dict | None = None  # provider media reference: id/url/mimetype/filename/caption
    timestamp: datetime | None = None  # UTC, naive
    from_me: bool = False
    is_group: bool = False
    referral: AdReferral | None = None  # the ad that opened the chat (first message after a click)

    kind = "message"

    def sanitized(self):
        return replace(
            super().sanitized(),
            message_id=_required_id(self.message_id, "message id"),
            contact_identity=_required_id(self.contact_identity, "contact identity"),
            contact_phone=_phone(self.contact_phone),
            contact_name=_optional_text(self.contact_name, NAME_MAX_LENGTH),
            text=clean_text(self.text, TEXT_MAX_LENGTH),
            message_type=self.message_type if self.message_type in MESSAGE_TYPES else "other",
            media=clean_json(self.media) if isinstance(self.media, dict) else None,
            timestamp=_timestamp(self.timestamp),
            from_me=self.from_me is True,
            is_group=self.is_group is True,
            referral=self.referral.sanitized() if isinstance(self.referral, AdReferral) else None,
        )


@dataclass
class StatusUpdate(WebhookEvent):
    """Delivery status of a message (usually one the business sent)."""

    message_id: str = ""
    status: str = "sent"  # one of MESSAGE_STATUSES
    timestamp: datetime | None = None
    error: str | None = None
    recipient: str | None = None

    kind = "status"

    def sanitized(self):
        """No status is harmless to guess: one outside MESSAGE_STATUSES makes an UnknownEvent."""
        if self.status not in MESSAGE_STATUSES:
            return UnknownEvent(session=self.session, event_type=self.kind).sanitized()
        return replace(
            super().sanitized(),
            message_id=_required_id(self.message_id, "message id"),
            timestamp=_timestamp(self.timestamp),
            error=_optional_text(self.error, REASON_MAX_LENGTH),
            recipient=bounded_id(self.recipient) or None,
        )


@dataclass
class ConnectionUpdate(WebhookEvent):
    """The provider session changed state."""

    state: str = "pending"  # one of SESSION_STATES
    phone: str | None = None  # E.164 of the connected number, when known
    reason: str | None = None

    kind = "connection"

    def sanitized(self):
        """No state is harmless to guess: one outside SESSION_STATES makes an UnknownEvent."""
        if self.state not in SESSION_STATES:
            return UnknownEvent(session=self.session, event_type=self.kind).sanitized()
        return replace(
            super().sanitized(),
            phone=_phone(self.phone),
            reason=_optional_text(self.reason, REASON_MAX_LENGTH),
        )


@dataclass
class QrUpdate(WebhookEvent):
    """A new QR code (or pairing code) for a session waiting to be scanned."""

    qr_code: str | None = None  # raw QR payload to encode
    qr_image: str | None = None  # data URL or base64 PNG given by the provider
    pairing_code: str | None = None

    kind = "qr"

    def sanitized(self):
        """A QR payload, image or pairing code cut short is useless: one too long is dropped."""
        return replace(
            super().sanitized(),
            qr_code=_whole(self.qr_code, QR_CODE_MAX_LENGTH),
            qr_image=_whole(self.qr_image, QR_IMAGE_MAX_LENGTH),
            pairing_code=_whole(self.pairing_code, PAIRING_CODE_MAX_LENGTH),
        )


@dataclass
class UnknownEvent(WebhookEvent):
    """An event the addon does not handle; logged and ignored."""

    event_type: str = ""
    raw: dict = field(default_factory=dict)

    kind = "unknown"

    def sanitized(self):
        """``raw`` is dropped: the webhook log keeps the body as received."""
        event_type = clean_text(self.event_type, EVENT_TYPE_MAX_LENGTH)
        return replace(super().sanitized(), event_type=event_type if isinstance(event_type, str) else "", raw={})


# The kinds of event an adapter can return besides "unknown": the inbox applies each one
# (vm.whatsapp.inbox.HANDLERS), and an adapter declares those it emits (event_kinds).
EVENT_KINDS = frozenset(cls.kind for cls in (InboundMessage, StatusUpdate, ConnectionUpdate, QrUpdate))


def _required_id(value, what):
    value = bounded_id(value)
    if not value:
        raise WebhookPayloadError(f"The {what} is empty or holds only control characters.")
    return value


def _optional_text(value, max_length):
    return clean_text(value, max_length) or None


def _whole(value, max_length):
    """``value`` cleaned, or None when it is empty or longer than ``max_length``."""
    value = clean_text(value)
    return value if isinstance(value, str) and 0 < len(value) <= max_length else None


def _is_http_url(value):
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://"))


def _phone(value):
    """An E.164 number, or None for anything else."""
    value = _whole(value, PHONE_MAX_LENGTH)
    return value if value and _E164.fullmatch(value) else None


def _timestamp(value):
    """A naive datetime within TIMESTAMP_MIN..TIMESTAMP_MAX, else None."""
    if isinstance(value, datetime) and value.tzinfo is None and TIMESTAMP_MIN <= value <= TIMESTAMP_MAX:
        return value
    return None


@dataclass
class SessionInfo:
    """What ``create_session`` and ``get_session_status`` return."""

    external_id: str
    # one of SESSION_STATES; None (sandbox get_session_status only) means "unknown: keep the
    # state you have", because the sandbox learns about scans from its own route, not by polling
    state: str | None
    qr_code: str | None = None  # raw QR payload, to be rendered
    qr_image: str | None = None  # PNG as data URL or base64, when the provider renders it
    pairing_code: str | None = None
    phone: str | None = None  # E.164 of the connected number
    expires_in: int | None = None  # seconds the QR stays valid, when known
    message: str | None = None  # provider's explanation (e.g. why it failed)
