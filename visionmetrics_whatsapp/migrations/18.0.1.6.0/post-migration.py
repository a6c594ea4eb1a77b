"""18.0.1.6.0: vm.whatsapp.message.integration_id has no index of its own any more (the unique
(integration_id, external_id) index serves its searches, and every message stored paid for the
other one). Odoo keeps an index that a field no longer asks for: it is dropped here."""

from odoo.tools import sql


def migrate(cr, version):
    sql.drop_index(cr, "vm_whatsapp_message__integration_id_index", "vm_whatsapp_message")
