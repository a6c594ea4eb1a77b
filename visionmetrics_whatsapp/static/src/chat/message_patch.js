import { Attachment } from "@mail/core/common/attachment_model";
import { Message } from "@mail/core/common/message";
import { Message as MessageModel } from "@mail/core/common/message_model";
import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";

const STATUS_TITLES = {
    pending: _t("Waiting to be sent"),
    sent: _t("Sent"),
    delivered: _t("Delivered"),
    read: _t("Read"),
    failed: _t("Not delivered"),
};

patch(MessageModel.prototype, {
    /** A WhatsApp message is the customer's record: it is not edited, deleted or reacted to. */
    get editable() {
        return this.vm_whatsapp ? false : super.editable;
    },
    canAddReaction(thread) {
        return this.vm_whatsapp ? false : super.canAddReaction(thread);
    },
    get bubbleColor() {
        if (this.vm_whatsapp) {
            return this.vm_whatsapp.direction === "outbound" ? "green" : "blue";
        }
        return super.bubbleColor;
    },
});

patch(Attachment.prototype, {
    /** A file sent or received on WhatsApp stays with its message. */
    get isDeletable() {
        return this.message?.vm_whatsapp ? false : super.isDeletable;
    },
});

patch(Message.prototype, {
    get vmWhatsapp() {
        return this.props.message.vm_whatsapp;
    },
    /** Outbound WhatsApp messages on the right, inbound on the left, as in WhatsApp. */
    get isAlignedRight() {
        if (this.vmWhatsapp) {
            return this.vmWhatsapp.direction === "outbound";
        }
        return super.isAlignedRight;
    },
    get attClass() {
        const attClass = super.attClass;
        if (this.vmWhatsapp) {
            attClass["o-vm-wa-message"] = true;
            attClass[`o-vm-wa-${this.vmWhatsapp.direction}`] = true;
        }
        return attClass;
    },
    get vmStatusTitle() {
        return STATUS_TITLES[this.vmWhatsapp.status] || "";
    },
    get vmMedia() {
        const attachment = this.props.message.attachment_ids[0];
        if (!attachment || !["audio", "video"].includes(this.vmWhatsapp.message_type)) {
            return false;
        }
        return { kind: this.vmWhatsapp.message_type, url: attachment.defaultSource, mimetype: attachment.mimetype };
    },
    async onClickVmRetry() {
        await this.env.services.orm.call("vm.whatsapp.message", "action_retry", [[this.vmWhatsapp.id]]);
    },
});
