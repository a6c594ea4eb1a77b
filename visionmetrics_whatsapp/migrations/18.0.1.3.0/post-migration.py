"""18.0.1.3.0: the inbox moves to vm.whatsapp.inbox, with lanes and bounded retries.

- The two scheduled actions of the webhook log (noupdate records, which Odoo does not remove
  by itself) give way to the inbox's lanes and retry cron.
- Requests waiting before the upgrade are in lane 0; failed ones get a retry due now (or none
  once they used their attempts).
- The index the old inbox searched is dropped (Odoo keeps an index a field stops declaring).
"""

from odoo import SUPERUSER_ID, api

OLD_CRONS = ("ir_cron_process_webhook_logs", "ir_cron_retry_webhook_logs")
MAX_ATTEMPTS = 8


def migrate(cr, version):
    env = api.Environment(cr, SUPERUSER_ID, {})
    for xmlid in OLD_CRONS:
        cron = env.ref(f"visionmetrics_whatsapp.{xmlid}", raise_if_not_found=False)
        if cron:
            cron.unlink()
    cr.execute("UPDATE vm_whatsapp_webhook_log SET lane = 0 WHERE lane IS NULL")
    cr.execute("UPDATE vm_whatsapp_webhook_log SET repeat_count = 0 WHERE repeat_count IS NULL")
    cr.execute(
        """UPDATE vm_whatsapp_webhook_log SET next_attempt_at = now() AT TIME ZONE 'UTC'
            WHERE state = 'failed' AND signature = 'valid' AND integration_id IS NOT NULL
              AND attempt_count < %s""",
        [MAX_ATTEMPTS],
    )
    cr.execute("DROP INDEX IF EXISTS vm_whatsapp_webhook_log_todo_idx")
