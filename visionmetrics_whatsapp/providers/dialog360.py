"""360dialog (official BSP hosting the Cloud API): no QR, no session to log out.

"Connecting" validates the channel's ``D360-API-KEY`` by registering our webhook with
``POST /v1/configs/webhook``, whose ``headers`` make 360dialog send ``X-VM-Webhook-Secret`` with
every webhook (360dialog does not sign messaging webhooks). The bodies are Meta's Cloud API
payloads, parsed by :mod:`.cloud_api`; messages are sent with ``POST /messages``.
"""

from . import register
from .base import AUTH_BY_HEADER
from .cloud_api import CloudApiProvider
from .events import SessionInfo
from .exceptions import WhatsAppProviderError
from .meta import GRAPH_API_URL, GRAPH_API_VERSION
from .utils import as_dict, as_text

WEBHOOK_AUTH_HEADER = "X-VM-Webhook-Secret"
WEBHOOK_CONFIG_PATH = "/v1/configs/webhook"


@register
class Dialog360Provider(CloudApiProvider):
    code = "dialog360"
    provider_name = "360dialog"
    sequence = 50
    webhook_auth = AUTH_BY_HEADER
    requires_external_id = True  # the phone number id
    registers_webhook = True  # POST /v1/configs/webhook
    media_through_api_host = True
    secret_headers = frozenset({WEBHOOK_AUTH_HEADER.lower(), "d360-api-key"})
    default_api_base_url = "https://waba-v2.360dialog.io"
    messages_path = "/messages"
    sends_conversions = True

    def _auth_headers(self):
        return {"D360-API-KEY": self.api_key} if self.api_key else {}

    def graph_api(self):
        """Meta's own Graph API: the D360-API-KEY is not a Graph token, so the integration's
        Conversions API token is used (None here)."""
        return GRAPH_API_URL, GRAPH_API_VERSION, None

    def _check_key(self):
        if not self.api_key:
            raise WhatsAppProviderError("360dialog: the API key is not set.", provider=self.code)

    # ------------------------------------------------------------------ sessions

    def register_webhook(self):
        """Point the channel's webhook at our URL, with our secret header."""
        self._check_key()
        if not self.webhook_url or not self.webhook_secret:
            raise WhatsAppProviderError(
                "360dialog: set the webhook URL and the webhook secret before connecting.", provider=self.code
            )
        body = {"url": self.webhook_url, "headers": {WEBHOOK_AUTH_HEADER: self.webhook_secret}}
        return self._request("POST", WEBHOOK_CONFIG_PATH, json_body=body)

    def create_session(self, external_id=None, phone=None):
        """Register the webhook (which also proves the API key works); the number is connected."""
        self.register_webhook()
        return SessionInfo(
            external_id=external_id or self.external_id or "",
            state="connected",
            message="Webhook registered with 360dialog.",
        )

    def get_session_status(self, external_id=None):
        """Connected while the API key is accepted; the message says where webhooks go."""
        url = self._webhook_target()
        same = bool(self.webhook_url) and url == self.webhook_url
        return SessionInfo(
            external_id=external_id or self.external_id or "",
            state="connected",
            message=f"Webhook: {url or 'not set'}" + ("" if same else " (not this integration's URL)"),
        )

    def _webhook_target(self):
        self._check_key()
        return as_text(as_dict(self._request("GET", WEBHOOK_CONFIG_PATH)).get("url"))

    def close_session(self, external_id=None):
        """Nothing to log out of at 360dialog."""
        return SessionInfo(external_id=external_id or self.external_id or "", state="closed")

    def check_connection(self):
        url = self._webhook_target()
        return f"360dialog: API key accepted; webhook: {url or 'not set'}."

    # ------------------------------------------------------------------ webhooks

    def verify_webhook(self, body, headers, params=None):
        return self._verify_static_secret(self._header(headers, WEBHOOK_AUTH_HEADER))
