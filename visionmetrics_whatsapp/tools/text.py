"""Text from outside made safe to store in PostgreSQL.

No Odoo import. PostgreSQL rejects NUL in text, psycopg2 cannot encode a lone UTF-16 surrogate
(JSON ``"\\ud800"`` decodes to one), and a btree index row holds at most about 2,700 bytes: a
value from a webhook is cleaned of the first two and bounded before it reaches a write.
"""

import hashlib
import itertools
import math
import re

ELLIPSIS = "…"
# Identifiers: provider message ids, contact identities (wa_id, JID, LID), session names,
# recipients. 200 characters are at most 800 bytes in UTF-8, well inside an index row.
ID_MAX_LENGTH = 200
NAME_MAX_LENGTH = 256  # a contact's profile name
TEXT_MAX_LENGTH = 65536  # a message body or caption
REASON_MAX_LENGTH = 1024  # a provider's error or disconnection reason
EVENT_TYPE_MAX_LENGTH = 64  # the event name of an event the addon does not handle
PHONE_MAX_LENGTH = 16  # "+" and the 15 digits of E.164
QR_CODE_MAX_LENGTH = 7089  # the most characters a QR code holds (version 40, numeric)
QR_IMAGE_MAX_LENGTH = 1024 * 1024  # a PNG data URL (about 100 kB in practice)
PAIRING_CODE_MAX_LENGTH = 64  # "ABCD-EFGH" in practice
# A JSON-like structure (a media reference): each string, each key, the nesting and the size.
JSON_STRING_MAX_LENGTH = 8192
JSON_KEY_MAX_LENGTH = 64
JSON_MAX_DEPTH = 4
JSON_MAX_ITEMS = 64

_HASH_LENGTH = 32  # hex digits of SHA-256 kept in a bounded id (128 bits)
# C0 control characters except tab, line feed and carriage return
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_LEFT_OUT = object()  # what _clean_json returns for a value to leave out


def clean_text(value, max_length=None):
    """``value`` without C0 control characters (tab, line feed and carriage return are kept),
    its lone surrogates replaced by U+FFFD (a surrogate pair becomes the character it encodes),
    and, when longer than ``max_length``, cut to ``max_length`` characters ending with "…".
    Anything that is not a ``str`` (None included) is returned unchanged."""
    if not isinstance(value, str):
        return value
    value = _CONTROLS.sub("", value)
    if _SURROGATES.search(value):
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if max_length is not None and len(value) > max_length:
        value = value[: max_length - len(ELLIPSIS)] + ELLIPSIS if max_length >= len(ELLIPSIS) else ""
    return value


def bounded_id(value, max_length=ID_MAX_LENGTH):
    """An identifier cleaned like :func:`clean_text` and at most ``max_length`` characters. A
    longer one becomes ``<its first characters>~<32 hex digits of the SHA-256 of all of it>``,
    exactly ``max_length`` long: the same id always gives the same value and two ids that differ
    anywhere give different values, so deduplication by id keeps working."""
    if max_length <= _HASH_LENGTH + 1:
        raise ValueError(f"An id bounded to {max_length} characters has no room for its hash.")
    value = clean_text(value)
    if not isinstance(value, str) or len(value) <= max_length:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    return f"{value[: max_length - _HASH_LENGTH - 1]}~{digest}"


def clean_json(
    value,
    max_length=JSON_STRING_MAX_LENGTH,
    max_key_length=JSON_KEY_MAX_LENGTH,
    max_depth=JSON_MAX_DEPTH,
    max_items=JSON_MAX_ITEMS,
):
    """A JSON-like value (dicts, lists, strings, numbers, booleans, None) with every string and
    key cleaned and bounded by :func:`clean_text`; keys that are not strings become strings. A
    dict or list keeps its first ``max_items`` items and at most ``max_depth`` levels of
    containers; deeper containers, non-finite floats and values of any other type are left out
    (None when it is ``value`` itself)."""
    cleaned = _clean_json(value, max_length, max_key_length, max_depth, max_items)
    return None if cleaned is _LEFT_OUT else cleaned


def _clean_json(value, max_length, max_key_length, max_depth, max_items):
    if isinstance(value, str):
        return clean_text(value, max_length)
    if value is None or isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if max_depth <= 0 or not isinstance(value, dict | list | tuple):
        return _LEFT_OUT
    limits = (max_length, max_key_length, max_depth - 1, max_items)
    if isinstance(value, dict):
        items = ((clean_text(str(key), max_key_length), _clean_json(child, *limits)) for key, child in value.items())
        return dict(itertools.islice(((k, v) for k, v in items if v is not _LEFT_OUT), max_items))
    children = (_clean_json(child, *limits) for child in value)
    return list(itertools.islice((child for child in children if child is not _LEFT_OUT), max_items))
