import { registry } from "@web/core/registry";

/**
 * A salesperson works a WhatsApp conversation from the lead (tests/test_chat_tour.py): the
 * WhatsApp tab shows the customer's messages as bubbles; a reply typed in the composer (with an
 * emoji) is queued and shown on the right; then the customer answers and the reply is read, and
 * both appear without a page reload (the bus).
 */
registry.category("web_tour.tours").add("vm_whatsapp_chat_tour", {
    steps: () => [
        {
            content: "The lead opens on its WhatsApp tab, with the customer's message on the left",
            trigger: ".o_notebook .nav-link.active:contains(WhatsApp)",
        },
        {
            content: "The inbound bubble",
            trigger: ".o_vm_whatsapp_chat .o-vm-wa-inbound .o-mail-Message-body:contains(Quanto custa o sofá?)",
            run() {
                window.__vmWhatsappNoReload = true; // gone if the page reloads
            },
        },
        {
            content: "Write a reply",
            trigger: ".o_vm_whatsapp_chat .o-mail-Composer-input",
            run: "edit Bom dia! Custa R$ 1.200",
        },
        {
            content: "Open Odoo's emoji picker",
            trigger: ".o_vm_whatsapp_chat .o-mail-Composer button[aria-label='Emojis']",
            run: "click",
        },
        {
            content: "Pick an emoji",
            trigger: ".o-EmojiPicker .o-Emoji:contains('🙂')",
            run: "click",
        },
        {
            content: "Send it",
            trigger: ".o_vm_whatsapp_chat .o-mail-Composer-send:enabled",
            run: "click",
        },
        {
            content: "The reply is on the right, waiting to be sent",
            trigger: ".o_vm_whatsapp_chat .o-vm-wa-outbound:contains(Bom dia! Custa R$ 1.200) .o_vm_whatsapp_status[data-status]",
        },
        {
            content: "The customer's answer arrives live (a webhook applied by the inbox)",
            trigger: ".o_vm_whatsapp_chat .o-vm-wa-inbound .o-mail-Message-body:contains(Fechado, pode mandar o link)",
            timeout: 20000,
        },
        {
            content: "The reply's ticks reach read live (a status webhook)",
            trigger: ".o_vm_whatsapp_chat .o-vm-wa-outbound:contains(Bom dia!) .o_vm_whatsapp_status[data-status=read] .o_vm_whatsapp_read",
            timeout: 20000,
            run() {
                if (!window.__vmWhatsappNoReload) {
                    throw new Error("The page was reloaded");
                }
            },
        },
    ],
});
