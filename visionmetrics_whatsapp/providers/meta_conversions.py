"""Meta's Conversions API for Business Messaging (reference/attribution.md §2): plain Python, no
Odoo import.

Two Graph API calls, both with ``Authorization: Bearer <token>``:

- ``POST <root>/<version>/<WABA id>/dataset`` with ``dataset_name``: the WABA's dataset (``{id}``;
  one per WABA, asking again returns the existing one);
- ``POST <root>/<version>/<dataset id>/events`` with ``{"data": [event, ...]}``: conversion events
  (``event_name``, ``event_time``, ``action_source: "business_messaging"``,
  ``messaging_channel: "whatsapp"``, ``user_data.ctwa_clid``...). Meta answers
  ``{"events_received": n, "fbtrace_id": ...}``.

Failures are :class:`MetaApiError` (permanent: fix the settings, then retry) or
:class:`MetaApiRetryableError` (try again later), each with Meta's answer when there was one. No
message holds the token.
"""

import json
import re

import requests

from .exceptions import WhatsAppProviderError, WhatsAppProviderRetryableError

ACTION_SOURCE = "business_messaging"
MESSAGING_CHANNEL = "whatsapp"
ANSWER_MAX_LENGTH = 4000  # characters of Meta's answer kept with an error
# Graph error codes that say "later" (https://developers.facebook.com/docs/graph-api/guides/error-handling):
# unknown/temporary (1, 2), rate limits (4, 17, 32, 341, 613, 80004).
TRANSIENT_GRAPH_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80004})
GRAPH_ID_RE = re.compile(r"^[0-9]{1,32}$")


class MetaApiError(WhatsAppProviderError):
    """A Graph API call failed in a way that retrying as it is will not fix. ``answer`` is Meta's
    response body (text, bounded) when there was one."""

    def __init__(self, message, status_code=None, answer=None):
        super().__init__(message, status_code=status_code, provider="meta")
        self.answer = answer


class MetaApiRetryableError(MetaApiError, WhatsAppProviderRetryableError):
    """A transient failure (time-out, connection, 5xx, 429, a Graph rate limit): try again later."""


def check_graph_id(value, what):
    """``value`` as a Graph object id (digits only); MetaApiError otherwise."""
    value = str(value or "").strip()
    if not GRAPH_ID_RE.match(value):
        raise MetaApiError(f"The {what} must be a Meta id made of digits, not {value[:40]!r}.")
    return value


class MetaConversionsClient:
    """Calls the Graph API at ``root`` (e.g. https://graph.facebook.com) in ``version``."""

    timeout = 15  # seconds, for every call

    def __init__(self, root, version, token, http=None, timeout=None):
        if not token:
            raise MetaApiError("No Meta access token is set for the Conversions API.")
        self.root = (root or "").rstrip("/")
        self.version = (version or "").strip("/")
        if not self.root.startswith(("https://", "http://")) or not re.match(r"^v[0-9]+(\.[0-9]+)?$", self.version):
            raise MetaApiError(f"Invalid Graph API address {self.root!r} / version {self.version!r}.")
        self.token = token
        self.http = http or requests.Session()
        if timeout:
            self.timeout = timeout

    def url(self, object_id, edge):
        return f"{self.root}/{self.version}/{object_id}/{edge}"

    # ------------------------------------------------------------------ calls

    def create_dataset(self, waba_id, name):
        """The dataset id of the WhatsApp Business Account ``waba_id`` (created when it has none)."""
        waba_id = check_graph_id(waba_id, "WhatsApp Business Account ID")
        answer = self._post(self.url(waba_id, "dataset"), {"dataset_name": name})
        dataset_id = str(answer.get("id") or "") if isinstance(answer, dict) else ""
        if not GRAPH_ID_RE.match(dataset_id):
            raise MetaApiError("Meta answered without a dataset id.", answer=_bounded(answer))
        return dataset_id

    def send_events(self, dataset_id, body):
        """POST ``body`` (``{"data": [...]}``) to the dataset's events; Meta's answer (a dict)."""
        dataset_id = check_graph_id(dataset_id, "dataset ID")
        answer = self._post(self.url(dataset_id, "events"), body)
        if not isinstance(answer, dict) or not answer.get("events_received"):
            raise MetaApiError("Meta did not acknowledge the event.", status_code=200, answer=_bounded(answer))
        return answer

    # ------------------------------------------------------------------ HTTP

    def _post(self, url, body):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        try:
            response = self.http.post(url, json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise MetaApiRetryableError(f"Meta did not answer within {self.timeout} seconds.") from None
        except requests.ConnectionError:
            raise MetaApiRetryableError(f"Cannot reach the Graph API at {self.root}.") from None
        except requests.RequestException as e:
            raise MetaApiError(f"Graph API request failed: {type(e).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 400 or (isinstance(answer, dict) and isinstance(answer.get("error"), dict)):
            raise self._error(response, answer)
        if answer is None:
            raise MetaApiError(
                "Meta answered something that is not JSON.",
                status_code=response.status_code,
                answer=_bounded(response.text),
            )
        return answer

    @staticmethod
    def _error(response, answer):
        """The MetaApiError (or retryable one) of an error response."""
        status = response.status_code
        error = answer.get("error") if isinstance(answer, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        parts = [str(error.get("message") or response.reason or "error")[:300]]
        for key in ("code", "error_subcode", "fbtrace_id"):
            if error.get(key) is not None:
                parts.append(f"{key} {str(error[key])[:60]}")
        message = f"Meta answered HTTP {status}: " + ", ".join(parts)
        transient = (
            status >= 500
            or status in (408, 429)
            or error.get("is_transient") is True
            or (isinstance(code, int) and code in TRANSIENT_GRAPH_CODES)
        )
        error_class = MetaApiRetryableError if transient else MetaApiError
        answer = _bounded(answer if answer is not None else response.text)
        return error_class(message, status_code=status, answer=answer)


def _bounded(answer):
    """Meta's answer as text for the log, at most ANSWER_MAX_LENGTH characters."""
    text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False, sort_keys=True)
    return text[:ANSWER_MAX_LENGTH]


def build_event(event_name, event_time, ctwa_clid, event_id=None, waba_id=None, value=None, currency=None):
    """One Conversions API event of a click-to-WhatsApp conversation. ``event_time`` in Unix
    seconds; ``value`` and ``currency`` (ISO 4217) go to ``custom_data`` when given."""
    if not ctwa_clid:
        raise MetaApiError("The conversation has no click id (ctwa_clid): Meta cannot attribute the event.")
    user_data = {"ctwa_clid": ctwa_clid}
    if waba_id:
        user_data = {"whatsapp_business_account_id": str(waba_id), **user_data}
    event = {
        "event_name": event_name,
        "event_time": int(event_time),
        "action_source": ACTION_SOURCE,
        "messaging_channel": MESSAGING_CHANNEL,
        "user_data": user_data,
    }
    if event_id:
        event["event_id"] = event_id
    if value is not None and currency:
        event["custom_data"] = {"value": round(float(value), 2), "currency": currency}
    return event
