from odoo import fields, models


class MailMessage(models.Model):
    """A WhatsApp message shown in its conversation's thread (the chatter's Thread and Message
    components) is a mail.message mirroring the vm.whatsapp.message, which stays the provider's
    record, and holds its text: the web client gets the text as the message's body, and the
    WhatsApp part (direction, ticks, failure) as ``vm_whatsapp``, in the message's store data."""

    _inherit = "mail.message"

    vm_whatsapp_message_id = fields.Many2one(
        "vm.whatsapp.message", "WhatsApp Message", readonly=True, index="btree_not_null", ondelete="cascade"
    )

    # the parent method returns nothing
    # pylint: disable-next=missing-return
    def _to_store(self, store, /, *, fields=None, **kwargs):
        super()._to_store(store, fields=fields, **kwargs)
        # sudo: mail.message - the WhatsApp record of a message the user may read
        for message in self.sudo().filtered("vm_whatsapp_message_id"):
            whatsapp = message.vm_whatsapp_message_id
            values = {"vm_whatsapp": whatsapp._thread_data()}
            if not fields or "body" in fields:
                values["body"] = message.body or whatsapp._thread_body()
            store.add(self.browse(message.id), values)
