import { registry } from "@web/core/registry";

/**
 * Settings > WhatsApp > "Connect WhatsApp (QR)": the wizard shows the sandbox QR; opening the URL
 * the QR encodes (as a phone would) connects the session, and the open wizard switches to
 * connected by itself, without a page reload.
 */
registry.category("web_tour.tours").add("vm_whatsapp_connect_tour", {
    url: "/odoo/settings",
    steps: () => [
        {
            content: "Open the WhatsApp settings",
            trigger: ".settings_tab .tab[data-key='visionmetrics_whatsapp']",
            run: "click",
        },
        {
            content: "Connect WhatsApp",
            trigger: ".app_settings_block[data-key='visionmetrics_whatsapp'] button[name='action_vm_whatsapp_connect']",
            run: "click",
        },
        {
            content: "The wizard shows the QR code, then the phone opens the URL it encodes",
            trigger: ".modal .o_vm_whatsapp_connect_qr img.o_vm_whatsapp_qr_image[src^='data:image/png']",
            async run() {
                window.__vmWhatsappNoReload = true; // gone if the page reloads
                const img = document.querySelector(".o_vm_whatsapp_qr_image");
                const scanUrl = new URL(img.dataset.scanUrl);
                if (!scanUrl.pathname.match(/^\/vm_whatsapp\/sandbox\/[\w-]{24,}\/scan$/)) {
                    throw new Error(`Unexpected scan URL ${scanUrl}`);
                }
                const response = await fetch(scanUrl.pathname);
                const text = await response.text();
                if (!response.ok || !text.includes("WhatsApp connected")) {
                    throw new Error(`Scan failed: HTTP ${response.status}`);
                }
            },
        },
        {
            content: "The wizard notices the connection by polling",
            trigger: ".o_notification:contains(WhatsApp connected: +55119999)",
        },
        {
            content: "The dialog closed and the page was not reloaded",
            trigger: "body:not(:has(.modal .o_vm_whatsapp_connect_qr))",
            run() {
                if (!window.__vmWhatsappNoReload) {
                    throw new Error("The page was reloaded");
                }
            },
        },
    ],
});
