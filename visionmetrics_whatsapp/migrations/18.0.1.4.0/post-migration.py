"""18.0.1.4.0: webhook logs keep nothing credential-like, and only metadata of the requests
nobody authenticated.

The logs stored before the upgrade are cleaned the same way, so that no credential waits there
for the retention period: every row's headers go through the allow-list, the bodies lose the
fields their provider declares secret (Evolution's ``apikey``), and the bodies of the requests
nobody authenticated are cut to their first 2 kB (marked truncated, their size kept).
"""

import json

from odoo.addons.visionmetrics_whatsapp.models.vm_whatsapp_webhook_log import (
    UNAUTHENTICATED_BODY_BYTES,
    provider_secrets,
)
from odoo.addons.visionmetrics_whatsapp.tools.redact import redact_body, redact_headers

BATCH = 2000
UPDATE = """UPDATE vm_whatsapp_webhook_log AS log
               SET headers = v.headers, payload = v.payload, payload_size = v.size, payload_truncated = v.truncated
              FROM (VALUES %s) AS v(id, headers, payload, size, truncated)
             WHERE log.id = v.id"""


def clean(provider, headers, payload, authenticated):
    """(headers, payload, size, truncated) of a stored request, cleaned as they are stored now."""
    secret_headers, secret_fields = provider_secrets(provider if authenticated else None)
    try:
        kept = json.loads(headers or "{}")
    except ValueError:
        kept = {}
    headers = json.dumps(redact_headers(kept if isinstance(kept, dict) else {}, secret_headers), ensure_ascii=False)
    body = (payload or "").encode("utf-8", "surrogateescape")
    size = len(body)
    body = redact_body(body, secret_fields)
    truncated = not authenticated and len(body) > UNAUTHENTICATED_BODY_BYTES
    if not authenticated:
        body = body[:UNAUTHENTICATED_BODY_BYTES]
    return headers, body.decode("utf-8", "ignore"), size, truncated


def migrate(cr, version):
    last_id = 0
    while True:
        cr.execute(
            """SELECT id, provider, headers, payload, state = 'rejected' AND signature IS DISTINCT FROM 'valid'
                 FROM vm_whatsapp_webhook_log WHERE id > %s ORDER BY id LIMIT %s""",
            [last_id, BATCH],
        )
        rows = cr.fetchall()
        if not rows:
            return
        values = [
            (log_id, *clean(provider, headers, payload, not refused))
            for log_id, provider, headers, payload, refused in rows
        ]
        cr.execute_values(UPDATE, values)
        last_id = rows[-1][0]
