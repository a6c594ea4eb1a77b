"""Normalized webhook events.

``parse_webhook`` of every provider turns a raw body into a list of these objects, so the
addon's ingest code never looks at a provider's payload shape.
"""

from dataclasses import dataclass, field
from datetime import datetime

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


@dataclass
class WebhookEvent:
    """Base of every event. ``session`` is the provider's instance/session/phone-number id the
    payload names (None when it names none); the addon ignores events whose session is not the
    integration's."""

    session: str | None = None

    kind = "unknown"


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

    kind = "message"


@dataclass
class StatusUpdate(WebhookEvent):
    """Delivery status of a message (usually one the business sent)."""

    message_id: str = ""
    status: str = "sent"  # one of MESSAGE_STATUSES
    timestamp: datetime | None = None
    error: str | None = None
    recipient: str | None = None

    kind = "status"


@dataclass
class ConnectionUpdate(WebhookEvent):
    """The provider session changed state."""

    state: str = "pending"  # one of SESSION_STATES
    phone: str | None = None  # E.164 of the connected number, when known
    reason: str | None = None

    kind = "connection"


@dataclass
class QrUpdate(WebhookEvent):
    """A new QR code (or pairing code) for a session waiting to be scanned."""

    qr_code: str | None = None  # raw QR payload to encode
    qr_image: str | None = None  # data URL or base64 PNG given by the provider
    pairing_code: str | None = None

    kind = "qr"


@dataclass
class UnknownEvent(WebhookEvent):
    """An event the addon does not handle; logged and ignored."""

    event_type: str = ""
    raw: dict = field(default_factory=dict)

    kind = "unknown"


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
