import { Thread } from "@mail/core/common/thread_model";
import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";

import { CONVERSATION_MODEL } from "./chat";

patch(Thread.prototype, {
    /**
     * A WhatsApp conversation's composer queues outbound messages with
     * vm.whatsapp.conversation.action_send_message (one message per file, the text with the
     * first) instead of posting a mail.message; the thread then shows them, mirrored.
     */
    async post(body, postData = {}, extraData = {}) {
        if (this.model !== CONVERSATION_MODEL) {
            return super.post(...arguments);
        }
        const services = this.store.env.services;
        const attachmentIds = (postData.attachments || []).map((attachment) => attachment.id);
        const sends = attachmentIds.length ? attachmentIds.map((id) => [id]) : [[]];
        const composer = this.composer;
        try {
            for (const [index, ids] of sends.entries()) {
                await services.orm.call(CONVERSATION_MODEL, "action_send_message", [
                    [this.id],
                    index === 0 ? body : "",
                ], { attachment_ids: ids });
            }
        } catch (error) {
            const message = error.data?.message || error.message || _t("The message was not sent.");
            services.notification.add(message, { type: "danger", title: _t("WhatsApp") });
            // the composer clears itself once post returns: give the text back
            setTimeout(() => {
                if (!composer.text) {
                    composer.text = body;
                }
            });
            return;
        }
        await this.fetchNewMessages();
    },
});
