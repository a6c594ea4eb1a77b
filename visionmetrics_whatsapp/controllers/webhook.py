"""The providers' webhook (DESIGN §5).

A request goes, top to bottom: find the integration by the token in the URL (never by the
payload) → store the raw request in vm.whatsapp.webhook.log → authenticate it with the provider
adapter → parse and apply its events → answer. The answer is sent after Odoo commits the
transaction, so a 200 means the request and its effects are stored.
"""

import logging

from odoo import http
from odoo.exceptions import UserError
from odoo.http import request

from ..providers import SIGNATURE_VALID, WebhookPayloadError

_logger = logging.getLogger(__name__)

WEBHOOK_ROUTE = "/vm_whatsapp/webhook/<string:provider>/<string:token>"
DEFAULT_MAX_BYTES = 1024 * 1024


class WhatsAppWebhookController(http.Controller):
    @http.route(
        WEBHOOK_ROUTE, type="http", auth="none", methods=["POST"], csrf=False, save_session=False, readonly=False
    )
    def vm_whatsapp_webhook(self, provider, token, **_params):
        Log = request.env["vm.whatsapp.webhook.log"].sudo()
        httprequest = request.httprequest
        headers = dict(httprequest.headers)
        remote_addr = httprequest.remote_addr
        integration_sudo = self._find_integration(token)
        limit = self._max_body_bytes()
        body = self._read_body(limit)
        if body is None:
            Log._receive(
                integration_sudo,
                provider,
                b"",
                headers,
                remote_addr,
                state="rejected",
                error=f"Body over the limit of {limit} bytes (Content-Length: {httprequest.content_length}).",
            )
            return self._answer(413, "body too large")
        if not integration_sudo or integration_sudo.provider != provider:
            error = (
                "Unknown webhook token."
                if not integration_sudo
                else f"Token of a {integration_sudo.provider} integration."
            )
            Log._receive(integration_sudo, provider, body, headers, remote_addr, state="rejected", error=error)
            _logger.warning("WhatsApp webhook rejected (404) from %s: %s", remote_addr, error)
            return self._answer(404, "unknown webhook")
        log = Log._receive(integration_sudo, provider, body, headers, remote_addr)
        _logger.info("WhatsApp webhook received: log %s, integration %s", log.id, integration_sudo.id)
        try:
            adapter = integration_sudo._get_provider()
        except UserError as e:  # no or malformed encryption key: the provider retries later
            log.write({"state": "failed", "error": str(e)})
            _logger.warning("WhatsApp webhook %s not processed (503): %s", log.id, e)
            return self._answer(503, "temporarily unavailable")
        signature = log._verify(adapter, body, headers)
        if signature != SIGNATURE_VALID:
            _logger.warning("WhatsApp webhook %s rejected (401): signature %s", log.id, signature)
            return self._answer(401, "invalid signature")
        try:
            log._process(adapter, body, headers, signature=signature)
        except WebhookPayloadError as e:
            _logger.warning("WhatsApp webhook %s rejected (400): %s", log.id, e)
            return self._answer(400, "malformed body")
        return self._answer(200, "ok")

    @http.route(WEBHOOK_ROUTE, type="http", auth="public", methods=["GET"], csrf=False, save_session=False)
    def vm_whatsapp_webhook_handshake(self, provider, token, **params):
        """Meta's verification request: echo hub.challenge when hub.verify_token is ours."""
        integration_sudo = self._find_integration(token)
        if not integration_sudo or integration_sudo.provider != provider:
            return self._answer(404, "unknown webhook")
        challenge = integration_sudo._get_provider_class()().handshake(params, integration_sudo.webhook_token)
        if challenge is None:
            _logger.warning("WhatsApp webhook handshake refused for integration %s", integration_sudo.id)
            return request.make_response("Forbidden", status=403, headers=[("Content-Type", "text/plain")])
        return request.make_response(challenge, headers=[("Content-Type", "text/plain")])

    # ------------------------------------------------------------------ helpers

    def _find_integration(self, token):
        Integration = request.env["vm.whatsapp.integration"].sudo()
        return Integration.browse(Integration._id_for_webhook_token(token) if token else None)

    def _read_body(self, limit):
        """The raw body, or None when it is over ``limit`` bytes (announced or actual)."""
        httprequest = request.httprequest
        if (httprequest.content_length or 0) > limit:
            return None
        body = httprequest.get_data()
        return body if len(body) <= limit else None

    def _max_body_bytes(self):
        value = request.env["ir.config_parameter"].sudo().get_param("visionmetrics_whatsapp.webhook_max_bytes")
        return int(value) if value and value.isdigit() else DEFAULT_MAX_BYTES

    def _answer(self, status, message):
        payload = {"status": "ok"} if status == 200 else {"status": "error", "error": message}
        return request.make_json_response(payload, status=status)
