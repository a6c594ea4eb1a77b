"""The VisionMetrics marketing token in a message text: ``vm_token:<token>``.

No Odoo import. The prefix is matched in any case and with spaces around the colon; the token is
letters, digits and dashes, and is returned as written.
"""

import re

TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_])vm_token\s*:\s*([A-Za-z0-9\-]+)", re.IGNORECASE)


def extract_token(text):
    """The first token in ``text``, or None."""
    if not text:
        return None
    match = TOKEN_RE.search(text)
    return match.group(1) if match else None
