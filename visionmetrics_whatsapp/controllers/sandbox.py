"""The sandbox provider's "phone": opening the URL its QR encodes connects the session.

The sandbox has no server of its own, so the scan applies the connection directly
(``_apply_connection_update``, the method a provider's connection webhook ends in) rather than
posting a webhook to itself.
"""

import re

from odoo import http
from odoo.http import request

SANDBOX_PHONE_PREFIX = "+55119999"  # sandbox numbers: +55119999 + 5 digits of the integration id
# What a sandbox session id looks like (secrets.token_urlsafe); anything else is not found.
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


class VmWhatsappSandboxController(http.Controller):
    @http.route(
        "/vm_whatsapp/sandbox/<string:external_id>/scan",
        type="http",
        auth="public",
        methods=["GET", "POST"],
        csrf=False,
        save_session=False,
    )
    def sandbox_scan(self, external_id, **kwargs):
        """Connect the sandbox session ``external_id`` (random and unguessable), as scanning its QR
        with a phone would. Sandbox sessions only; anything else (odd bytes included) is not found.

        Public: the session id is the credential. Only the scan that connects the session is told
        which integration and number it connected; opening the URL again (from a browser history,
        a forwarded link) tells nothing of them."""
        if not SESSION_ID_RE.fullmatch(external_id):
            return self._page("unknown", status=404)
        session_sudo = (
            request.env["vm.whatsapp.session"]
            .sudo()
            .search([("external_id", "=", external_id), ("integration_id.provider", "=", "sandbox")], limit=1)
        )
        if not session_sudo:
            return self._page("unknown", status=404)
        if session_sudo.state in ("pending", "qr_ready"):
            session_sudo._expire_if_stale()
        if session_sudo.state in ("pending", "qr_ready"):
            phone = f"{SANDBOX_PHONE_PREFIX}{session_sudo.integration_id.id % 100000:05d}"
            session_sudo._apply_connection_update("connected", phone=phone)
            return self._page("connected", session_sudo)
        if session_sudo.state == "connected":
            return self._page("already_connected")
        return self._page("expired", status=410)

    def _page(self, outcome, session_sudo=None, status=200):
        values = {
            "outcome": outcome,
            "integration_name": session_sudo.integration_id.name if session_sudo else "",
            "phone": session_sudo.integration_id.phone_number if session_sudo else "",
        }
        response = request.render("visionmetrics_whatsapp.sandbox_scan_page", values)
        response.status_code = status
        return response
