import logging

from werkzeug.datastructures import ImmutableMultiDict

from odoo import models
from odoo.http import request

_logger = logging.getLogger(__name__)

WEBHOOK_PREFIX = "/vm_whatsapp/webhook/"


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    # Odoo's ir.http._pre_dispatch returns nothing: there is nothing to return
    def _pre_dispatch(cls, rule, args):  # pylint: disable=missing-return
        """A webhook has no form: it gets none, and reads its raw body itself, up to its limit
        (controllers/webhook.py). Odoo would otherwise parse the body as a form before the route
        runs: a form-encoded one read whole into memory, and one over the limit refused by
        werkzeug before the webhook could log it."""
        super()._pre_dispatch(rule, args)
        httprequest = request.httprequest
        if httprequest.method == "POST" and httprequest.path.startswith(WEBHOOK_PREFIX):
            httprequest.form = ImmutableMultiDict()
            httprequest.files = ImmutableMultiDict()

    @classmethod
    def _serve_fallback(cls):
        """A path that no route matched: Odoo looks for an attachment of that URL, and
        PostgreSQL refuses a query holding a NUL byte (a 500 with a traceback in the log). No URL
        holds one: such a path is simply not found (404)."""
        if "\x00" in request.httprequest.path:
            return None
        return super()._serve_fallback()

    @classmethod
    def _handle_error(cls, exception):
        """A webhook that fails for a reason we could not handle (the database after Odoo's own
        retries, a bug) answers 503 without details, so the provider delivers it again later;
        never a traceback, never a 4xx that some providers (Evolution) do not retry."""
        if request and request.httprequest.path.startswith(WEBHOOK_PREFIX) and not getattr(exception, "code", None):
            _logger.error("WhatsApp webhook failed, answering 503: %s", type(exception).__name__, exc_info=exception)
            return request.make_json_response({"status": "error", "error": "temporarily unavailable"}, status=503)
        return super()._handle_error(exception)
