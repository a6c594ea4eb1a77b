import re

from odoo import models

CHANNEL = re.compile(r"vm\.whatsapp\.conversation_(\d{1,18})")


class IrWebsocket(models.AbstractModel):
    _inherit = "ir.websocket"

    def _build_bus_channel_list(self, channels):
        return super()._build_bus_channel_list(self._vm_whatsapp_channels(channels))

    def _vm_whatsapp_channels(self, channels):
        """An open WhatsApp thread subscribes to ``vm.whatsapp.conversation_<id>``: the channel
        becomes the conversation itself, only if the user may read it (else it is dropped)."""
        kept, ids = [], []
        for channel in channels:
            match = isinstance(channel, str) and CHANNEL.fullmatch(channel)
            if match:
                ids.append(int(match[1]))
            else:
                kept.append(channel)
        if ids and self.env.user and not self.env.user._is_public():
            conversations = self.env["vm.whatsapp.conversation"].browse(ids).exists()
            kept.extend(conversations._filtered_access("read"))
        return kept
