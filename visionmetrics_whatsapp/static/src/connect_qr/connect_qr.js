import { Component, onMounted, onWillUnmount, useState } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { ConnectionLostError } from "@web/core/network/rpc";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";

export const POLL_INTERVAL = 3000; // ms

/**
 * Shows the QR code (and pairing code) of the connect wizard's session and polls the server
 * every 3 seconds (vm.whatsapp.connect.wizard.action_poll), without reloading: the server
 * replaces an expired QR; on "connected" the dialog closes with a success notification.
 */
export class ConnectQr extends Component {
    static template = "visionmetrics_whatsapp.ConnectQr";
    static props = { ...standardWidgetProps };

    setup() {
        this.orm = useService("orm");
        this.action = useService("action");
        this.notification = useService("notification");
        this.state = useState({
            state: "pending",
            qrImage: false,
            qrCode: false,
            pairingCode: false,
            message: false,
            canRetry: false,
            busy: false,
        });
        this.timer = null;
        this.done = false;
        onMounted(() => {
            this.poll();
            this.timer = setInterval(() => this.poll(), POLL_INTERVAL);
        });
        onWillUnmount(() => this.stop());
    }

    get resId() {
        return this.props.record.resId;
    }

    stop() {
        this.done = true;
        if (this.timer) {
            clearInterval(this.timer);
            this.timer = null;
        }
    }

    async poll() {
        if (this.done || this.state.busy || !this.resId) {
            return;
        }
        this.state.busy = true;
        try {
            this.apply(await this.orm.call("vm.whatsapp.connect.wizard", "action_poll", [[this.resId]]));
        } catch (error) {
            if (error instanceof ConnectionLostError) {
                this.state.message = _t("Cannot reach the server; retrying.");
                return;
            }
            this.stop(); // a server error would repeat every 3 seconds: show it once
            throw error;
        } finally {
            this.state.busy = false;
        }
    }

    async onRetry() {
        this.state.busy = true;
        try {
            this.apply(await this.orm.call("vm.whatsapp.connect.wizard", "action_retry", [[this.resId]]));
        } finally {
            this.state.busy = false;
        }
    }

    apply(result) {
        if (this.done) {
            return;
        }
        Object.assign(this.state, {
            state: result.state,
            qrImage: result.qr_image,
            qrCode: result.qr_code,
            pairingCode: result.pairing_code,
            message: result.message,
            canRetry: result.can_retry,
        });
        if (result.state === "connected") {
            this.stop();
            this.notification.add(result.message, { type: "success" });
            this.action.doAction({ type: "ir.actions.act_window_close" });
        }
    }
}

registry.category("view_widgets").add("vm_whatsapp_connect_qr", { component: ConnectQr });
