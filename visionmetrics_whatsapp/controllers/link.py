"""The QR code of a campaign link, to download as PNG or SVG (for print)."""

import io
import re

import qrcode
import qrcode.image.svg
from werkzeug.exceptions import NotFound

from odoo import http
from odoo.exceptions import AccessError, MissingError
from odoo.http import content_disposition, request

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def qr_image(data, fmt):
    """The QR code of ``data`` as PNG or SVG bytes (error correction M: survives a smudge)."""
    factory = qrcode.image.svg.SvgPathImage if fmt == "svg" else None
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4)
    qr.add_data(data)
    qr.make(fit=True)
    buffer = io.BytesIO()
    qr.make_image(image_factory=factory).save(buffer)
    return buffer.getvalue()


class VmWhatsappLinkController(http.Controller):
    @http.route("/vm_whatsapp/link/<int:link_id>/qr.<string:fmt>", type="http", auth="user", methods=["GET"])
    def link_qr(self, link_id, fmt):
        if fmt not in FORMATS:
            raise NotFound()
        link = request.env["vm.whatsapp.link"].browse(link_id)
        try:
            link.check_access("read")
            short_url = link.short_url
        except (AccessError, MissingError):
            raise NotFound() from None
        if not short_url:
            raise NotFound()
        name = re.sub(r"[^\w.-]+", "-", link.name or "link").strip("-")[:60] or "link"
        return request.make_response(
            qr_image(short_url, fmt),
            headers=[
                ("Content-Type", FORMATS[fmt]),
                ("Content-Disposition", content_disposition(f"whatsapp-qr-{name}.{fmt}")),
                ("Cache-Control", "private, no-store"),
            ],
        )
