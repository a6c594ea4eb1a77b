import logging

from odoo import models
from odoo.http import request

_logger = logging.getLogger(__name__)

WEBHOOK_PREFIX = "/vm_whatsapp/webhook/"


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    def _handle_error(cls, exception):
        """A webhook that fails for a reason we could not handle (the database after Odoo's own
        retries, a bug) answers 503 without details, so the provider delivers it again later;
        never a traceback, never a 4xx that some providers (Evolution) do not retry."""
        if request and request.httprequest.path.startswith(WEBHOOK_PREFIX) and not getattr(exception, "code", None):
            _logger.error("WhatsApp webhook failed, answering 503: %s", type(exception).__name__, exc_info=exception)
            return request.make_json_response({"status": "error", "error": "temporarily unavailable"}, status=503)
        return super()._handle_error(exception)
