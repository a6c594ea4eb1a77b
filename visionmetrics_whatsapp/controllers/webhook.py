"""The providers' webhook (DESIGN §5).

A request goes, top to bottom: find the integration by the token in the URL (never by the
payload) → authenticate it with the provider adapter (its body, headers and URL query parameters:
a provider that signs nothing gets a webhook URL that carries the secret; the query is never
stored) → check that its body parses → store it in vm.whatsapp.webhook.log, in one INSERT
whatever the outcome (none for an event already stored: a duplicate; a request nobody
authenticated is counted per source address and minute and kept as metadata, answered 429 past
a limit) → answer. The answer is sent after Odoo commits the transaction, so a 200 means the
request is stored. Its events (messages, statuses, connection changes) are applied by the inbox
(vm.whatsapp.inbox), woken up by the request, in batches.
"""

import logging
import re
import time

from werkzeug.exceptions import RequestEntityTooLarge

from odoo import http
from odoo.exceptions import UserError
from odoo.http import request

from ..providers import SIGNATURE_VALID, WebhookPayloadError

_logger = logging.getLogger(__name__)

WEBHOOK_ROUTE = "/vm_whatsapp/webhook/<string:provider>/<string:token>"
DEFAULT_MAX_BYTES = 1024 * 1024
# What a webhook token looks like (secrets.token_urlsafe); anything else, odd bytes included, is
# an unknown token and never reaches a query.
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def _stream_limit(controller):
    """How much of a webhook's body werkzeug reads at most: one byte over our limit, to tell a
    body of exactly the limit from a longer one."""
    return controller._max_body_bytes() + 1


class WhatsAppWebhookController(http.Controller):
    @http.route(
        WEBHOOK_ROUTE,
        type="http",
        auth="none",
        methods=["POST"],
        csrf=False,
        save_session=False,
        readonly=False,
        max_content_length=_stream_limit,
    )
    def vm_whatsapp_webhook(self, provider, token, **_params):
        env_sudo = request.env(su=True)
        Log_sudo = env_sudo["vm.whatsapp.webhook.log"]
        Integration_sudo = env_sudo["vm.whatsapp.integration"]
        httprequest = request.httprequest
        headers = dict(httprequest.headers)

        def store(body, state, **vals):
            return Log_sudo._receive(endpoint, provider, body, headers, httprequest.remote_addr, state=state, **vals)

        def refuse(status, message, body, error, signature=None):
            """Answer a request nobody authenticated; counted per address and minute, it is
            answered 429 past the limit (and logged only when that says something new)."""
            count = Log_sudo._receive_unauthenticated(
                endpoint,
                provider,
                body,
                headers,
                httprequest.remote_addr,
                size=httprequest.content_length,
                signature=signature,
                error=error,
            )
            limit = Log_sudo._unauthenticated_per_minute()
            if count == 1 or count == limit + 1:
                _logger.warning(
                    "WhatsApp webhook rejected (%s) from %s: %s%s",
                    status if count <= limit else 429,
                    httprequest.remote_addr,
                    error,
                    "" if count <= limit else f" ({limit} unauthenticated requests this minute: 429 until the next)",
                )
            if count > limit:
                return self._answer(429, "too many requests", retry_after=60 - int(time.time()) % 60)
            return self._answer(status, message)

        endpoint = self._endpoint(Integration_sudo, token)
        # what the route's max_content_length gave (_stream_limit), read once per request
        limit = (httprequest.max_content_length or _stream_limit(self)) - 1
        try:
            body = self._read_body(limit)
        except OSError as e:  # a chunked body whose framing is malformed, a client gone mid-body
            return refuse(400, "unreadable body", None, f"Body could not be read ({type(e).__name__}: {e}).")
        if body is None:
            length = httprequest.content_length
            error = f"Body over the limit of {limit} bytes ({f'Content-Length: {length}' if length else 'chunked'})."
            return refuse(413, "body too large", None, error)
        if not endpoint or endpoint.provider != provider:
            error = "Unknown webhook token." if not endpoint else f"Token of a {endpoint.provider} integration."
            return refuse(404, "unknown webhook", body, error)
        try:
            adapter = Integration_sudo._get_provider("webhook", endpoint=endpoint)
        except UserError as e:  # no or wrong encryption key: the provider retries later
            log = store(body, "failed", error=str(e))
            _logger.warning("WhatsApp webhook %s not processed (503): %s", log.id, e)
            return self._answer(503, "temporarily unavailable")
        signature, reason = adapter.authenticate_webhook(body, headers, params=httprequest.args.to_dict())
        if signature != SIGNATURE_VALID:
            return refuse(401, "invalid signature", body, reason or f"Signature {signature}.", signature=signature)
        try:
            events = adapter.parse_events(body, headers)
        except WebhookPayloadError as e:
            log = store(body, "rejected", signature=signature, error=str(e))
            _logger.warning("WhatsApp webhook %s rejected (400): %s", log.id, e)
            return self._answer(400, "malformed body")
        log = store(
            body,
            "received",
            signature=signature,
            event_type=Log_sudo._event_type(events),
            lane=env_sudo["vm.whatsapp.inbox"]._lane(endpoint.id, events),
            repeat_key=Log_sudo._repeat_key(events),
            event_id=adapter.webhook_event_id(body, events),
        )
        if not log:  # this event was stored before: a retry of the provider, or a replay
            return self._answer(200, duplicate=True)
        return self._answer(200)

    @http.route(WEBHOOK_ROUTE, type="http", auth="public", methods=["GET"], csrf=False, save_session=False)
    def vm_whatsapp_webhook_handshake(self, provider, token, **params):
        """Meta's verification request: echo hub.challenge when hub.verify_token is ours."""
        Integration_sudo = request.env["vm.whatsapp.integration"].sudo()
        endpoint = self._endpoint(Integration_sudo, token)
        if not endpoint or endpoint.provider != provider:
            return self._answer(404, "unknown webhook")
        # the endpoint is the integration whose webhook token is ``token``: the verify token
        challenge = Integration_sudo._get_provider("parse", endpoint=endpoint).handshake(params, token)
        if challenge is None:
            _logger.warning("WhatsApp webhook handshake refused for integration %s", endpoint.id)
            return request.make_response("Forbidden", status=403, headers=[("Content-Type", "text/plain")])
        return request.make_response(challenge, headers=[("Content-Type", "text/plain")])

    # ------------------------------------------------------------------ helpers

    def _endpoint(self, Integration_sudo, token):
        """The endpoint of ``token``, or None; a token of the wrong shape is never looked up."""
        return Integration_sudo._webhook_endpoint(token) if TOKEN_RE.fullmatch(token) else None

    def _read_body(self, limit):
        """The raw body, or None when it is over ``limit`` bytes (announced or actual). No more
        than ``limit + 1`` bytes are ever read: a body with a Content-Length over the limit is not
        read at all, a chunked one (no Content-Length) no further (_read_chunked). Raises OSError
        when the body cannot be read: a chunked body with a malformed chunk header, a client that
        stopped sending before the end of its body."""
        httprequest = request.httprequest
        length = httprequest.content_length
        if (length or 0) > limit:
            return None
        try:
            body = httprequest.get_data() if length is not None else self._read_chunked(httprequest, limit + 1)
        except RequestEntityTooLarge:
            return None
        return body if len(body) <= limit else None

    def _read_chunked(self, httprequest, size):
        """The first ``size`` bytes of a chunked body, kept as the request's data (Odoo runs the
        route again after a serialization failure, and get_data() then returns them).

        Werkzeug 2.3 and later stop such a body at the route's ``max_content_length``, but the
        Werkzeug 2.2 that Odoo 18 pins for Python 3.11 reads it whole into memory in get_data(),
        so it is read here from the werkzeug request that Odoo's HTTPRequest wraps (which hides
        its stream)."""
        wrapped = getattr(httprequest, "_HTTPRequest__wrapped", None)
        if wrapped is None or getattr(wrapped, "_cached_data", None) is not None:
            return httprequest.get_data()
        stream, parts, read = wrapped.stream, [], 0
        while read < size:
            part = stream.read(size - read)  # a dechunked stream may return less
            if not part:
                break
            parts.append(part)
            read += len(part)
        wrapped._cached_data = body = b"".join(parts)
        return body

    def _max_body_bytes(self):
        value = request.env["ir.config_parameter"].sudo().get_param("visionmetrics_whatsapp.webhook_max_bytes")
        return int(value) if value and value.isdigit() else DEFAULT_MAX_BYTES

    def _answer(self, status, message=None, duplicate=False, retry_after=None):
        payload = {"status": "ok"} if status == 200 else {"status": "error", "error": message}
        if duplicate:
            payload["duplicate"] = True
        headers = [("Retry-After", str(retry_after))] if retry_after else None
        return request.make_json_response(payload, status=status, headers=headers)
