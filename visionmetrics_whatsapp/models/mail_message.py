from odoo import fields, models


class MailMessage(models.Model):
    """A WhatsApp message shown in its conversation's thread (the chatter's Thread and Message
    components) is a mail.message mirroring the vm.whatsapp.message, which stays the provider's
    record; the web client reads the WhatsApp part (direction, ticks, failure) from
    ``vm_whatsapp`` in the message's store data."""

    _inherit = "mail.message"

    vm_whatsapp_message_id = fields.Many2one(
        "vm.whatsapp.message", "WhatsApp Message", readonly=True, index="btree_not_null", ondelete="cascade"
    )

    def _to_store(self, store, /, *, fields=None, **kwargs):
        super()._to_store(store, fields=fields, **kwargs)
        # sudo: mail.message - the WhatsApp record of a message the user may read
        for message in self.sudo().filtered("vm_whatsapp_message_id"):
            store.add(self.browse(message.id), {"vm_whatsapp": message.vm_whatsapp_message_id._thread_data()})
