"""Meta WhatsApp Cloud API (official): no QR, no session to log out.

"Connecting" validates the access token against the phone number id and reads the number; the
admin pastes our webhook URL and verify token (``webhook_token``) into the App Dashboard. Webhooks
are signed ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body, App Secret)>``; the App Secret
is the integration's ``webhook_secret``. Payload parsing lives in :mod:`.cloud_api`.
"""

import hashlib
import hmac
import re

from . import register
from .base import AUTH_BY_SIGNATURE
from .cloud_api import CloudApiProvider
from .events import SessionInfo
from .exceptions import WhatsAppProviderError
from .utils import as_dict, as_text, digits_to_e164

GRAPH_API_VERSION = "v21.0"
GRAPH_API_URL = "https://graph.facebook.com"
SIGNATURE_HEADER = "X-Hub-Signature-256"


@register
class MetaProvider(CloudApiProvider):
    code = "meta"
    provider_name = "Meta WhatsApp Cloud API"
    sequence = 40
    webhook_auth = AUTH_BY_SIGNATURE
    requires_external_id = True  # the phone number id
    uses_verify_token = True  # the GET handshake, with the token pasted in the App Dashboard
    generates_webhook_secret = False  # the App Secret is copied from the Meta app dashboard
    graph_api_version = GRAPH_API_VERSION
    default_api_base_url = f"{GRAPH_API_URL}/{GRAPH_API_VERSION}"
    sends_conversions = True

    def _auth_headers(self):
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def graph_api(self):
        """The API URL, split into its root and version (the version of this adapter when the URL
        names none), and the access token."""
        match = re.match(r"^(.*?)/(v[0-9]+(?:\.[0-9]+)?)$", self.api_base_url)
        root, version = (match.group(1), match.group(2)) if match else (self.api_base_url, self.graph_api_version)
        return root, version, self.api_key

    def _phone_number_id(self, external_id=None):
        phone_number_id = external_id or self.external_id
        if not phone_number_id:
            raise WhatsAppProviderError("Meta: the phone number id is not set.", provider=self.code)
        if not str(phone_number_id).isdigit():
            raise WhatsAppProviderError("Meta: the phone number id must contain only digits.", provider=self.code)
        return str(phone_number_id)

    @property
    def messages_path(self):
        return f"/{self._phone_number_id()}/messages"

    @property
    def media_path(self):
        return f"/{self._phone_number_id()}/media"

    # ------------------------------------------------------------------ sessions

    def _phone_number_info(self, phone_number_id):
        if not self.api_key:
            raise WhatsAppProviderError("Meta: the access token is not set.", provider=self.code)
        data = self._request("GET", f"/{phone_number_id}", params={"fields": "display_phone_number,verified_name"})
        return as_dict(data)

    def create_session(self, external_id=None, phone=None):
        """Validate the access token and phone number id; the number is then connected."""
        return self.get_session_status(external_id)

    def get_session_status(self, external_id=None):
        phone_number_id = self._phone_number_id(external_id)
        data = self._phone_number_info(phone_number_id)
        display = as_text(data.get("display_phone_number")) or ""
        return SessionInfo(
            external_id=phone_number_id,
            state="connected",
            phone=digits_to_e164("".join(ch for ch in display if ch.isdigit())),
            message=as_text(data.get("verified_name")),
        )

    def close_session(self, external_id=None):
        """Nothing to log out of at Meta: the number stays registered to the app."""
        return SessionInfo(external_id=external_id or self.external_id or "", state="closed")

    def check_connection(self):
        info = self.get_session_status()
        return f"Meta Cloud API: {info.phone or 'number'} ({info.message or 'no verified name'}) is reachable."

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, body, headers, params=None):
        return self._verify_hmac_hex(body, self._header(headers, SIGNATURE_HEADER), hashlib.sha256, prefix="sha256=")

    def handshake(self, params, verify_token):
        """Meta's GET verification: ``hub.mode=subscribe`` and ``hub.verify_token`` equal to our
        token -> the ``hub.challenge`` to echo; anything else -> None (answer 403)."""
        params = params or {}
        mode, token, challenge = (params.get(k) for k in ("hub.mode", "hub.verify_token", "hub.challenge"))
        if mode != "subscribe" or not verify_token or not isinstance(token, str) or not challenge:
            return None
        if not hmac.compare_digest(token.encode(), str(verify_token).encode()):
            return None
        return str(challenge)
