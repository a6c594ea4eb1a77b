"""18.0.1.1.0: webhook requests are processed by the inbox cron. The log table keeps only the
indexes its queries use (Odoo keeps the indexes of fields that are no longer indexed)."""

from odoo.tools import sql

OLD_INDEXES = ("integration_id", "company_id", "state", "received_at")


def migrate(cr, version):
    for column in OLD_INDEXES:
        sql.drop_index(cr, f"vm_whatsapp_webhook_log__{column}_index", "vm_whatsapp_webhook_log")
