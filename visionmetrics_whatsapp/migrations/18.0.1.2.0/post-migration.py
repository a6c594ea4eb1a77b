"""18.0.1.2.0: the webhook log's integration and company columns lose their foreign keys (each
webhook's INSERT checked and locked both rows; see ReferenceWithoutForeignKey). Odoo does not drop
a foreign key that a field stops declaring."""

from odoo.tools import sql

TABLE = "vm_whatsapp_webhook_log"
FOREIGN_KEYS = (f"{TABLE}_integration_id_fkey", f"{TABLE}_company_id_fkey")


def migrate(cr, version):
    for name in FOREIGN_KEYS:
        if sql.constraint_definition(cr, TABLE, name):
            sql.drop_constraint(cr, TABLE, name)
    cr.execute("DELETE FROM ir_model_constraint WHERE type = 'f' AND name IN %s", [FOREIGN_KEYS])
