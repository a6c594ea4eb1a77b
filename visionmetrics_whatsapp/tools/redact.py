"""What the webhook log keeps of a request: nothing credential-like (DESIGN §12); and the
source under which it counts a request nobody authenticated.

No Odoo import. Headers are kept by an allow-list: how the request travelled (type, size,
encoding, client), which proxy relayed it and for whom, and the delivery metadata WAHA adds. Any
other header keeps its name, so that an administrator sees it was sent, with the value
"[redacted]": senders and proxies add headers of their own (custom secrets, JWTs, cookies), and a
deny-list misses every one nobody thought of. On top of the list, a name that looks like a
credential (authorization, cookie, *token*, *secret*, *key*, *sign*...) is always redacted, as is
any name a provider declares secret. Signature headers are redacted too: a signature is not a
secret, but with its body it authenticates that body again (Meta signs no time), and the log's
``signature`` column already says what the check found.

Bodies: the top-level JSON fields that a provider declares secret (Evolution's ``apikey``, its
instance token) are replaced by "[redacted]" and the body serialized again; a body that is not a
JSON object has them redacted in its text.
"""

import functools
import ipaddress
import json
import re

from .text import clean_text

REDACTED = "[redacted]"
LOGGED_HEADERS = frozenset(
    {
        # the request itself
        "accept",
        "accept-encoding",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "host",
        "transfer-encoding",
        "user-agent",
        # proxies
        "forwarded",
        "via",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-real-ip",
        "x-request-id",
        # WAHA's delivery metadata (its signature, X-Webhook-Hmac, is not kept)
        "x-webhook-hmac-algorithm",
        "x-webhook-request-id",
        "x-webhook-timestamp",
    }
)
CREDENTIAL_NAME = re.compile(r"auth|cookie|token|secret|key|sign|passw|credential|session", re.IGNORECASE)
# What one request may add to its log's headers: a sender controls the names and values.
HEADERS_MAX_ITEMS = 32
HEADER_NAME_MAX_LENGTH = 64
HEADER_VALUE_MAX_LENGTH = 512


@functools.lru_cache(maxsize=1024)
def is_logged_header(name, secret_headers=frozenset()):
    """True when the value of header ``name`` may be stored."""
    name = name.lower()
    return name in LOGGED_HEADERS and name not in secret_headers and not CREDENTIAL_NAME.search(name)


def redact_headers(headers, secret_headers=frozenset()):
    """The headers to store ({name: value}, in their order): the values of logged headers (see
    :func:`is_logged_header`), "[redacted]" for the others; at most HEADERS_MAX_ITEMS of them,
    names and values bounded."""
    kept = {}
    items = list(headers.items())
    for name, value in items[:HEADERS_MAX_ITEMS]:
        value = clean_text(str(value), HEADER_VALUE_MAX_LENGTH) if is_logged_header(name, secret_headers) else REDACTED
        kept[clean_text(str(name), HEADER_NAME_MAX_LENGTH)] = value
    if len(items) > HEADERS_MAX_ITEMS:
        kept["…"] = f"{len(items) - HEADERS_MAX_ITEMS} more headers not stored"
    return kept


def redact_body(body, secret_fields=()):
    """``body`` (bytes) as it may be stored: with the values of ``secret_fields`` (top-level keys
    of a JSON object) replaced by "[redacted]". A JSON object that holds one is serialized
    again (a null value stays null); any other body is returned as it came, except that in a
    body that is not JSON (or is cut short) the fields are redacted in the text."""
    if not secret_fields or not any(f'"{field}"'.encode() in body for field in secret_fields):
        return body
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _redact_text(body, secret_fields)
    if not isinstance(payload, dict):
        return body
    present = [field for field in secret_fields if payload.get(field) is not None]
    # a key given twice is read once: the body is serialized again without the other one
    twice = [field for field in secret_fields if body.count(f'"{field}"'.encode()) > 1]
    if not present and not twice:
        return body
    for field in present:
        payload[field] = REDACTED
    try:
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a "\ud800" escape) travels escaped
        return json.dumps(payload).encode("ascii")


def _redact_text(body, secret_fields):
    """``"field": <value>`` of each secret field replaced in a body that is not JSON: a string
    (even one the cut leaves open) or a bare value; null is left alone."""
    names = b"|".join(re.escape(field.encode()) for field in secret_fields)
    pattern = re.compile(rb'("(?:' + names + rb')"\s*:\s*)(?!null\b)("(?:[^"\\]|\\.)*(?:"|\\?$)|[^\s,}\]]+)')
    return pattern.sub(lambda match: match.group(1) + b'"' + REDACTED.encode() + b'"', body)


def rate_bucket(address):
    """The source a rate limit counts: an IPv6 address by its /64 (what one subscriber usually
    holds), an IPv4 address as it is (also when mapped into IPv6), anything else as text."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return clean_text(str(address or ""), 64)
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
