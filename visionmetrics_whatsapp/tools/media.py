"""How a file is sent on WhatsApp: its media kind, from its mimetype and size (no Odoo import).

The limits are the WhatsApp Cloud API's (the strictest of the providers): an image is a JPEG or
a PNG of at most 5 MB, a video an MP4 or 3GPP of at most 16 MB, audio AAC, AMR, MP3, MP4 audio or
OGG of at most 16 MB. Any other file, or a picture or video over its limit, is sent as a
document, of at most 100 MB.
"""

MB = 1024 * 1024
DOCUMENT_MAX_SIZE = 100 * MB
# kind -> (mimetypes, maximum size)
MEDIA_RULES = {
    "image": ({"image/jpeg", "image/png"}, 5 * MB),
    "video": ({"video/mp4", "video/3gpp"}, 16 * MB),
    "audio": ({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}, 16 * MB),
}
# Kinds whose message carries the text as a caption (audio has none).
CAPTION_KINDS = ("image", "video", "document")
CAPTION_MAX_LENGTH = 1024
TEXT_MAX_LENGTH = 4096


def media_kind(mimetype, size):
    """``image``, ``video``, ``audio`` or ``document`` for a file of ``mimetype`` and ``size``
    bytes; None when it is too large to send at all."""
    base = (mimetype or "").split(";")[0].strip().lower()
    for kind, (mimetypes, max_size) in MEDIA_RULES.items():
        if base in mimetypes and size <= max_size:
            return kind
    return "document" if size <= DOCUMENT_MAX_SIZE else None
