"""Small, defensive helpers shared by the provider parsers.

Webhook bodies come from servers we do not control: every helper here accepts any JSON value and
returns ``None`` (or an empty container) rather than raising, so that a parser only raises
:class:`.exceptions.WebhookPayloadError`, and only where it decides to.
"""

import math
import re
from datetime import datetime, timedelta

from ..tools.phone import to_e164
from .exceptions import WebhookPayloadError

_EPOCH = datetime(1970, 1, 1)
_PHONE_DIGITS = re.compile(r"[0-9]{6,15}")
# JID servers whose user part is a phone number; ``lid`` (hidden id) and ``g.us`` (group) are not.
PHONE_JID_SERVERS = ("s.whatsapp.net", "c.us")


def as_dict(value):
    return value if isinstance(value, dict) else {}


def as_list(value):
    return value if isinstance(value, list) else []


def as_text(value):
    """A non-empty string from a string or an integer (ids sometimes arrive as numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def as_bool(value):
    """True only for JSON true or the string "true" (any case)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def require_text(mapping, key, what):
    """``mapping[key]`` as text, or a WebhookPayloadError naming what is missing."""
    value = as_text(as_dict(mapping).get(key))
    if value is None:
        raise WebhookPayloadError(f"{what}: field '{key}' is missing or not a string.")
    return value


def long_to_int(value):
    """Decode a protobuf int64 serialised as ``{"low": .., "high": .., "unsigned": ..}``."""
    low, high = value.get("low"), value.get("high")
    if not isinstance(low, int) or isinstance(low, bool) or not isinstance(high, int) or isinstance(high, bool):
        return None
    return (high << 32) | (low & 0xFFFFFFFF)


def epoch_to_utc(value):
    """A naive UTC datetime from epoch seconds or milliseconds (int, float, numeric string or a
    protobuf Long object); None when the value is absent or absurd."""
    if isinstance(value, dict):
        value = long_to_int(value)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    if seconds > 1e11:  # milliseconds (1e11 s is the year 5138)
        seconds /= 1000.0
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None


def describe_duration(seconds):
    """``seconds`` in words, in its largest whole unit: "2 days", "1 hour", "40 seconds"."""
    seconds = int(abs(seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def digits_to_e164(value):
    """E.164 from international digits (``"5511987654321"`` or ``"+5511987654321"``, as wa_ids
    and JID user parts are), normalized by :func:`..tools.phone.to_e164`; None for anything that
    is not 6 to 15 ASCII digits or not a possible phone number."""
    text = as_text(value)
    if text is None:
        return None
    text = text.removeprefix("+")
    return to_e164("+" + text) if _PHONE_DIGITS.fullmatch(text) else None


def split_jid(jid):
    """``("5511987654321", "s.whatsapp.net")`` from ``"5511987654321:12@s.whatsapp.net"`` (the
    device suffix dropped); ``(jid, "")`` when there is no server part."""
    text = as_text(jid)
    if text is None:
        return None, ""
    user, sep, server = text.rpartition("@")
    if not sep:
        return text, ""
    server = server.lower()
    if server in PHONE_JID_SERVERS or server == "lid":
        user = user.split(":", 1)[0]
    return user, server


def normalize_jid(jid):
    """The JID without its device suffix, or None when it is not a non-empty string."""
    user, server = split_jid(jid)
    if not user:
        return None
    return f"{user}@{server}" if server else user


def is_phone_jid(jid):
    return split_jid(jid)[1] in PHONE_JID_SERVERS


def phone_from_jid(jid):
    """E.164 from a phone JID (``@s.whatsapp.net``, ``@c.us``); None for ``@lid``, groups and
    anything else: a LID is never a phone number."""
    user, server = split_jid(jid)
    return digits_to_e164(user) if server in PHONE_JID_SERVERS else None
