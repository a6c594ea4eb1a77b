"""18.0.1.5.0: conversations are mail threads; each WhatsApp message is shown there by a
mail.message that mirrors it (vm.whatsapp.message._mirror_in_threads).

The messages stored before the upgrade get their mirrors here, oldest first, by chunks; nobody
is notified of them (they are history, not news)."""

from odoo import SUPERUSER_ID, api

CHUNK = 2000


def migrate(cr, version):
    env = api.Environment(cr, SUPERUSER_ID, {})
    Message = env["vm.whatsapp.message"]
    cr.execute(
        """SELECT m.id FROM vm_whatsapp_message m
            WHERE NOT EXISTS (SELECT 1 FROM mail_message mm WHERE mm.vm_whatsapp_message_id = m.id)
         ORDER BY m.sent_at, m.id"""
    )
    ids = [row[0] for row in cr.fetchall()]
    for start in range(0, len(ids), CHUNK):
        Message.browse(ids[start : start + CHUNK])._create_thread_messages()
        env.flush_all()
        env.invalidate_all()
