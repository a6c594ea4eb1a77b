"""The interface every provider adapter implements.

Adapters are plain classes with no Odoo import: the addon builds one from an integration's
settings (``vm.whatsapp.integration._get_provider()``, the one way it does) and calls the methods
below. All HTTP goes through ``_request()``, which always sets a timeout, adds the provider's auth
headers and maps failures to :mod:`.exceptions`. Webhook bodies reach the addon through
``parse_events()``, which cleans what each adapter's ``parse_webhook()`` returns: the addon never
calls ``parse_webhook()``.
"""

import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from ..tools.text import clean_text
from .exceptions import (
    WebhookPayloadError,
    WhatsAppProviderError,
    WhatsAppProviderOutcomeUnknownError,
    WhatsAppProviderRetryableError,
)

_logger = logging.getLogger(__name__)

SIGNATURE_VALID = "valid"
SIGNATURE_INVALID = "invalid"
SIGNATURE_MISSING = "missing"
EVENT_ID_MAX_LENGTH = 128  # a longer event id is stored as its digest


def event_id_of(*keys):
    """An event id made of ``keys`` (any order), bounded: None when there are none."""
    keys = sorted({clean_text(key) for key in keys if key})
    if not keys:
        return None
    joined = ",".join(keys)
    if len(joined) <= EVENT_ID_MAX_LENGTH:
        return joined
    return "sha256:" + hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()


# How a provider's webhooks prove that they come from it (``WhatsAppProvider.webhook_auth``).
AUTH_BY_SIGNATURE = "signature"  # an HMAC of the raw body, in a header
AUTH_BY_HEADER = "header"  # our webhook secret, sent back in a header
AUTH_BY_QUERY = "query"  # our webhook secret in the URL's query string (nothing is signed)
WEBHOOK_AUTHS = (AUTH_BY_SIGNATURE, AUTH_BY_HEADER, AUTH_BY_QUERY)

# What a provider can do, as booleans read from its class (see WhatsAppProvider): the
# integration mirrors each one as a field ``provider_<name>``, which its views and code read.
CAPABILITIES = (
    "uses_qr",
    "uses_pairing_code",
    "uses_api_url",
    "requires_api_url",
    "uses_api_key",
    "uses_external_id",
    "requires_external_id",
    "uses_verify_token",
    "generates_webhook_secret",
    "registers_webhook",
    "polls_status",
    "downloads_media",
    "sends_media",
    "simulates_messages",
    "sends_conversions",
)


# What a provider can send as media (``OutboundMedia.kind``).
MEDIA_KINDS = ("image", "video", "audio", "document")


@dataclass
class OutboundMedia:
    """A file to send: ``kind`` one of MEDIA_KINDS (the addon chooses it from the mimetype and
    size, tools/media.py), its bytes, or a public ``url`` the provider fetches instead."""

    kind: str
    mimetype: str
    filename: str
    content: bytes | None = None
    url: str | None = None

    def base64(self):
        return base64.b64encode(self.content or b"").decode("ascii")

    def data_url(self):
        return f"data:{self.mimetype};base64,{self.base64()}"


def _never_sent(error):
    """True when a requests ConnectionError happened before the request left: the connection
    could not be opened (refused, name not resolved, connect time-out)."""
    reason = error.args[0] if error.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(error, requests.ConnectTimeout) or isinstance(reason, (NewConnectionError, ConnectTimeoutError))


class WhatsAppProvider:
    """Base class. A provider is described once, by the class attributes below, and registered
    with ``@register`` (providers/__init__.py): the integration's provider selection, the fields
    its form shows and the adapters the addon builds all read that registry. Subclasses set
    ``code`` and ``provider_name`` and override the methods that raise ``NotImplementedError``."""

    code = None  # selection code of vm.whatsapp.integration.provider
    provider_name = None  # human name, shown to administrators and in error messages
    label = None  # the name in the provider selection, when it is not provider_name
    sequence = 100  # order in the provider selection
    # the event kinds (events.EVENT_KINDS) that parse_webhook can return, besides "unknown"
    event_kinds: ClassVar[frozenset] = frozenset()
    webhook_auth = AUTH_BY_SIGNATURE  # one of WEBHOOK_AUTHS
    # What of a webhook request is a credential, never stored (the webhook log keeps headers by
    # an allow-list anyway): lower-case names of headers that carry one, and top-level keys of the
    # JSON body that hold one (replaced by "[redacted]" before the body is stored).
    secret_headers: ClassVar[frozenset] = frozenset()
    secret_body_fields: ClassVar[tuple] = ()

    # Capabilities (CAPABILITIES):
    uses_qr = False  # a number connects by scanning a QR code
    uses_pairing_code = False  # ... or by typing a code the provider gives (create_session(phone=))
    uses_api_url = True  # the integration's api_base_url is the provider's server or API root
    # requires_api_url: uses_api_url and no default_api_base_url (see capabilities())
    uses_api_key = True  # the integration's api_key authenticates our calls
    uses_external_id = True  # the integration's external_id names the instance/session/number
    requires_external_id = False  # ... and it must be given (it is not created by connecting)
    uses_verify_token = False  # the provider checks our webhook URL with a token (handshake())
    # True when we choose the webhook secret and give it to the provider; False when the
    # administrator copies it from the provider (Meta's App Secret)
    generates_webhook_secret = True
    registers_webhook = False  # connecting registers our webhook URL with the provider
    polls_status = True  # False when session state only arrives by webhook (sandbox)
    downloads_media = False  # download_media() fetches the file of an inbound message
    sends_media = False  # send_media() sends images, videos, audio and documents
    simulates_messages = False  # build_message_payload() and sign() make test webhooks (sandbox)
    sends_conversions = False  # conversion events go to Meta's Conversions API (graph_api())

    # Seconds after the contact's last message during which free-form messages may be sent
    # (the Cloud API's customer service window); None: no such limit.
    free_text_window = None
    default_api_base_url = None
    timeout = 15  # seconds, for every HTTP call
    get_retries = 2  # extra attempts for idempotent GETs on a retryable failure
    # provider session state -> our session state (pending, qr_ready, connected, expired, failed, closed)
    SESSION_STATES: ClassVar[dict] = {}
    # provider message status -> our message status (pending, sent, delivered, read, failed)
    MESSAGE_STATUSES: ClassVar[dict] = {}

    @classmethod
    def capabilities(cls):
        """{capability: bool} for every name of CAPABILITIES."""
        values = {name: bool(getattr(cls, name, False)) for name in CAPABILITIES}
        values["requires_api_url"] = cls.uses_api_url and not cls.default_api_base_url
        return values

    def __init__(
        self,
        api_base_url=None,
        api_key=None,
        external_id=None,
        webhook_secret=None,
        webhook_url=None,
        base_url=None,
        http=None,
        timeout=None,
    ):
        """
        :param api_base_url: provider server / API root (``default_api_base_url`` when empty)
        :param api_key: credential sent with every API call
        :param external_id: instance / session / phone-number id at the provider
        :param webhook_secret: secret that authenticates the provider's webhooks
        :param webhook_url: our webhook URL, registered with the provider where it allows
        :param base_url: public URL of the Odoo server (used by the sandbox)
        :param http: a ``requests.Session`` (tests may pass their own)
        :param timeout: seconds for each HTTP call
        """
        self.api_base_url = (api_base_url or self.default_api_base_url or "").rstrip("/")
        self.api_key = api_key
        self.external_id = external_id
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.base_url = (base_url or "").rstrip("/")
        self._http = http
        if timeout:
            self.timeout = timeout

    @property
    def http(self):
        """The ``requests.Session`` of this adapter, made on first use (webhook verification,
        the hot path, never needs one)."""
        if self._http is None:
            self._http = requests.Session()
        return self._http

    # ------------------------------------------------------------------ sessions

    def create_session(self, external_id=None, phone=None):
        """Start a connection. Returns a :class:`.events.SessionInfo` with a QR and/or a pairing
        code (``phone`` asks for a pairing code where the provider offers one). Official providers
        validate the credentials instead and return the connected state."""
        raise NotImplementedError

    def get_session_status(self, external_id=None):
        """Return the current :class:`.events.SessionInfo` of a session."""
        raise NotImplementedError

    def close_session(self, external_id=None):
        """Log the session out at the provider. Closing a session that is already closed is not
        an error."""
        raise NotImplementedError

    def check_connection(self):
        """Check that the server is reachable and the credentials are accepted; returns a short
        human description. Raises :class:`.exceptions.WhatsAppProviderError` otherwise."""
        raise NotImplementedError

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, body, headers, params=None):
        """Authenticate a raw webhook request: its body (bytes), headers and the query parameters
        of its URL (a mapping; ``webhook_auth`` says which of them this provider reads). Returns
        ``SIGNATURE_VALID``, ``SIGNATURE_INVALID`` or ``SIGNATURE_MISSING``. Fails closed: with no
        ``webhook_secret`` nothing is valid."""
        raise NotImplementedError

    def authenticate_webhook(self, body, headers, params=None):
        """``(verdict, reason)``: the verdict of :meth:`verify_webhook` and, for a request that is
        not valid, why, when the verdict alone does not say it (a sentence for the webhook log;
        None otherwise). Adapters that refuse signed requests for another reason (a replay)
        override this method."""
        return self.verify_webhook(body, headers, params=params), None

    def parse_events(self, body, headers=None):
        """The events of a raw body (bytes), cleaned for storage: what the addon calls, never
        :meth:`parse_webhook` directly. Values from a provider can hold NUL characters, lone
        surrogates or ids longer than an index row; every event goes through
        :meth:`.events.WebhookEvent.sanitized`. Raises :class:`.exceptions.WebhookPayloadError`
        (and nothing else) for a malformed body."""
        return [event.sanitized() for event in self.parse_webhook(body, headers)]

    def parse_webhook(self, body, headers=None):
        """Turn a raw body (bytes) into a list of :mod:`.events` objects, as the provider gave
        them (the addon calls :meth:`parse_events`, which cleans them). Raises
        :class:`.exceptions.WebhookPayloadError` (and nothing else) for a malformed body; an event
        this adapter does not handle becomes an ``UnknownEvent``."""
        raise NotImplementedError

    def webhook_event_id(self, body, events):
        """The provider's id of what an authenticated request carries (``events``, parsed from
        ``body``): the same every time the provider delivers it (its retries, a replay) and
        different for anything else; None when there is none. The webhook stores and applies a
        request once per integration and event id, and answers the others "duplicate".

        By default, the ids of the request's messages, and of its statuses (message id and
        status), when it holds nothing else than those and events nobody applies: a connection
        or QR update has no id of its own (two identical ones may well be two events)."""
        keys = []
        for event in events:
            if event.kind == "message":
                keys.append(f"message:{event.message_id}")
            elif event.kind == "status":
                keys.append(f"status:{event.message_id}:{event.status}")
            elif event.kind != "unknown":
                return None
        return event_id_of(*keys)

    def handshake(self, params, verify_token):
        """Answer a provider's GET verification request. Returns the body to send back, or None
        when the request is not a valid handshake (the provider has none by default)."""

    # ------------------------------------------------------------------ messages

    def send_message(self, to, text="", media=None):
        """Send a text, or a file (:class:`OutboundMedia`) with ``text`` as its caption, to the
        contact ``to`` (a conversation's ``contact_identity``); returns the provider message id.
        Raises :class:`.exceptions.WhatsAppProviderError`: its subclass
        ``WhatsAppProviderRetryableError`` when the provider said it did not take the message
        and may later (time-out before connecting, 5xx, 429), and
        ``WhatsAppProviderOutcomeUnknownError`` when the message may have been sent."""
        if media is not None:
            if not self.sends_media:
                raise WhatsAppProviderError(f"{self.provider_name} cannot send files.", provider=self.code)
            return self.send_media(to, media, caption=text or None)
        return self.send_text(to, text)

    def send_text(self, to, text):
        """Send a text message; returns the provider message id."""
        raise NotImplementedError

    def graph_api(self):
        """``(root URL, version, access token or None)`` of Meta's Graph API for this number's
        Conversions API calls (providers with ``sends_conversions``); None as the token when the
        provider's credential is not a Graph API token."""
        raise WhatsAppProviderError(f"{self.provider_name} does not send conversions to Meta.", provider=self.code)

    def send_media(self, to, media, caption=None):
        """Send an :class:`OutboundMedia`; returns the provider message id."""
        raise NotImplementedError

    def _check_answer_id(self, message_id):
        """``message_id``, or a WhatsAppProviderError when the provider accepted a message
        without saying which id it got (the outcome cannot be followed)."""
        if not message_id:
            raise WhatsAppProviderError(f"{self.provider_name} did not return a message id.", provider=self.code)
        return message_id

    def download_media(self, media):
        """Fetch the file of an inbound message's media reference (``InboundMessage.media``).
        Returns ``(content bytes, mimetype, filename)``."""
        raise WhatsAppProviderError(f"{self.provider_name} offers no media download.", provider=self.code)

    def _same_origin_url(self, url):
        """``url`` moved onto our API server: a URL from a payload never receives our API key
        on another host."""
        parts, ours = urlsplit(url or ""), urlsplit(self.api_base_url)
        return urlunsplit((ours.scheme, ours.netloc, parts.path, parts.query, ""))

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _header(headers, name):
        """Case-insensitive header lookup on any mapping (werkzeug headers or a dict)."""
        if not headers:
            return None
        value = headers.get(name)
        if value is None and isinstance(headers, dict):
            lowered = name.lower()
            value = next((v for k, v in headers.items() if k.lower() == lowered), None)
        return value

    @staticmethod
    def _load_json(body):
        """Decode a raw body into a JSON object, or raise WebhookPayloadError."""
        try:
            if isinstance(body, (bytes, bytearray)):
                body = body.decode("utf-8")
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError, TypeError) as e:
            raise WebhookPayloadError(f"The body is not valid JSON: {e}") from None
        except RecursionError:
            raise WebhookPayloadError("The body is not valid JSON: nested too deeply.") from None
        if not isinstance(payload, dict):
            raise WebhookPayloadError("The body is not a JSON object.")
        return payload

    def _verify_hmac_hex(self, body, received, digestmod, prefix=""):
        """Constant-time check of ``received`` against ``prefix + hex(HMAC(secret, body))``."""
        if not received:
            return SIGNATURE_MISSING
        if not self.webhook_secret:
            return SIGNATURE_INVALID
        if isinstance(body, str):
            body = body.encode("utf-8")
        expected = prefix + hmac.new(self.webhook_secret.encode(), body, digestmod).hexdigest()
        # hex digits are compared case-insensitively (some proxies upper-case them)
        if hmac.compare_digest(expected.encode(), received.strip().lower().encode("utf-8", "replace")):
            return SIGNATURE_VALID
        return SIGNATURE_INVALID

    def _verify_static_secret(self, received):
        """Constant-time check of a shared secret sent as a header."""
        if not received:
            return SIGNATURE_MISSING
        if not self.webhook_secret:
            return SIGNATURE_INVALID
        if hmac.compare_digest(self.webhook_secret.encode(), received.strip().encode("utf-8", "replace")):
            return SIGNATURE_VALID
        return SIGNATURE_INVALID

    def _auth_headers(self):
        """Headers that authenticate our calls to the provider."""
        return {}

    def _path_for_log(self, path):
        """``path`` as it may be logged: a provider whose paths hold a credential masks it."""
        return path

    def _error_message(self, response):
        """Best human message from an error response body."""
        try:
            data = response.json()
        except ValueError:
            return (response.text or "").strip()[:300] or response.reason or ""
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict):
                return str(err.get("message") or err)[:300]
            for key in ("message", "response", "error", "detail"):
                if data.get(key):
                    value = data[key]
                    if isinstance(value, dict) and value.get("message"):
                        value = value["message"]
                    if isinstance(value, list):  # Evolution: {"response": {"message": ["..."] or [["..."]]}}
                        value = "; ".join(_flatten(value))
                    return str(value)[:300]
        return str(data)[:300]

    def _request(self, method, path, json_body=None, params=None, headers=None, raw=False, data=None, files=None):
        """The one way adapters talk HTTP. Returns the decoded JSON (or the response itself with
        ``raw=True``). ``data`` and ``files`` send a multipart form instead of ``json_body``.
        Idempotent GETs are retried on retryable failures."""
        absolute = path.startswith(("https://", "http://"))
        if not self.api_base_url and not absolute:
            raise WhatsAppProviderError(f"{self.provider_name}: the API URL is not set.", provider=self.code)
        url = path if absolute else self.api_base_url + path
        all_headers = {"Accept": "application/json", **self._auth_headers(), **(headers or {})}
        attempts = 1 + (self.get_retries if method.upper() == "GET" else 0)
        for attempt in range(1, attempts + 1):
            try:
                return self._request_once(method, url, json_body, params, all_headers, raw, data, files)
            except WhatsAppProviderRetryableError:
                if attempt == attempts:
                    raise
                shown = self._path_for_log(path)
                _logger.info("%s: retrying %s %s (attempt %s)", self.code, method, shown, attempt + 1)
        raise AssertionError("unreachable")

    def _request_once(self, method, url, json_body, params, headers, raw, data=None, files=None):
        name = self.provider_name
        extra = {"data": data, "files": files} if files or data else {}
        try:
            response = self.http.request(
                method, url, json=json_body, params=params, headers=headers, timeout=self.timeout, **extra
            )
        except requests.ConnectionError as e:
            if _never_sent(e):
                raise WhatsAppProviderRetryableError(
                    f"Cannot reach {name} at {self.api_base_url}.", provider=self.code
                ) from None
            raise WhatsAppProviderOutcomeUnknownError(
                f"Cannot reach {name} at {self.api_base_url}: the connection was lost after the request was sent.",
                provider=self.code,
            ) from None
        except requests.Timeout:  # a read time-out: the request was sent
            raise WhatsAppProviderOutcomeUnknownError(
                f"{name} did not answer within {self.timeout} seconds.", provider=self.code
            ) from None
        except requests.RequestException as e:
            raise WhatsAppProviderError(f"{name} request failed: {type(e).__name__}", provider=self.code) from None
        if response.status_code >= 400:
            message = self._error_message(response)
            text = f"{name} answered HTTP {response.status_code}: {message}"
            if response.status_code in (401, 403):
                text = f"{name} rejected the credentials (HTTP {response.status_code}): {message}"
            error_class = (
                WhatsAppProviderRetryableError
                if response.status_code >= 500 or response.status_code in (408, 429)
                else WhatsAppProviderError
            )
            raise error_class(text, status_code=response.status_code, provider=self.code)
        if raw:
            return response
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise WhatsAppProviderError(
                f"{name} answered something that is not JSON.",
                status_code=response.status_code,
                provider=self.code,
            ) from None


def _flatten(values):
    """The strings of a nested list, in order."""
    for value in values:
        if isinstance(value, list):
            yield from _flatten(value)
        else:
            yield str(value)
