import { Composer } from "@mail/core/common/composer";
import { Thread } from "@mail/core/common/thread";
import { Component, onWillDestroy, onWillStart, onWillUpdateProps, useState, useSubEnv } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";

export const CONVERSATION_MODEL = "vm.whatsapp.conversation";

/**
 * A WhatsApp conversation as a chat, with Odoo's own mail components: the Thread (messages are
 * the mail.message mirrors of the vm.whatsapp.message records, shown by message_patch.js) and
 * the Composer (emoji, files), whose post calls action_send_message (thread_patch.js).
 *
 * On a conversation's form it shows that conversation; on a lead's form, the lead's
 * conversations, the newest first. The open thread listens on the conversation's bus channel
 * (vm.whatsapp.conversation_<id>, checked by the server): new messages and status changes
 * appear without reload.
 */
export class WhatsappChat extends Component {
    static template = "visionmetrics_whatsapp.WhatsappChat";
    static components = { Thread, Composer };
    static props = { ...standardWidgetProps };

    setup() {
        this.store = useState(useService("mail.store"));
        this.orm = useService("orm");
        this.busService = this.env.services.bus_service;
        this.state = useState({ conversations: [], threadId: false, thread: undefined });
        this.channel = false;
        this.stickToBottom = true;
        // A thread outside a chatter: the Thread fetches its own messages.
        useSubEnv({ inChatter: false, chatter: undefined, inVmWhatsappChat: true });
        this.onBusNotification = this.onBusNotification.bind(this);
        this.busService.subscribe("vm.whatsapp/thread", this.onBusNotification);
        onWillStart(() => this.loadConversations(this.props.record));
        onWillUpdateProps((nextProps) => {
            if (nextProps.record.resId !== this.props.record.resId) {
                return this.loadConversations(nextProps.record);
            }
        });
        onWillDestroy(() => {
            this.busService.unsubscribe("vm.whatsapp/thread", this.onBusNotification);
            this.leaveChannel();
        });
    }

    get isLead() {
        return this.props.record.resModel !== CONVERSATION_MODEL;
    }

    async loadConversations(record) {
        this.leaveChannel();
        this.state.conversations = [];
        this.state.thread = undefined;
        this.state.threadId = false;
        if (!record.resId) {
            return;
        }
        if (record.resModel !== CONVERSATION_MODEL) {
            this.state.conversations = await this.orm.searchRead(
                CONVERSATION_MODEL,
                [["lead_id", "=", record.resId]],
                ["display_name", "contact_phone", "integration_id", "message_needaction_counter"],
                { order: "last_message_at desc, id desc" }
            );
        } else {
            this.state.conversations = [{ id: record.resId, display_name: record.data.display_name }];
        }
        if (this.state.conversations.length) {
            this.selectConversation(this.state.conversations[0].id);
        }
    }

    get thread() {
        return this.state.thread;
    }

    get composerState() {
        return this.thread?.vm_whatsapp;
    }

    selectConversation(id) {
        this.leaveChannel();
        this.state.threadId = id;
        this.state.thread = this.store.Thread.insert({ model: CONVERSATION_MODEL, id });
        this.channel = `${CONVERSATION_MODEL}_${id}`;
        this.busService.addChannel(this.channel);
        this.thread.fetchData(["vm_whatsapp"]);
    }

    leaveChannel() {
        if (this.channel) {
            this.busService.deleteChannel(this.channel);
            this.channel = false;
        this.stickToBottom = true;
        }
    }

    onBusNotification({ thread_id, new_message_ids, data }) {
        if (thread_id !== this.state.threadId) {
            return;
        }
        this.store.insert(data, { html: true });
        const thread = this.thread;
        if (new_message_ids.length) {
            // fetched as the thread fetches (and marked read for the user, who has it open)
            thread.fetchNewMessages();
            thread.fetchData(["vm_whatsapp"]);
        }
    }

    /** Files (a photo) that load after the thread scrolled to its newest message keep it there. */
    onMediaLoaded(ev) {
        const thread = ev.currentTarget.querySelector(".o-mail-Thread");
        if (thread && this.stickToBottom) {
            thread.scrollTop = thread.scrollHeight;
        }
    }

    onThreadScroll(ev) {
        const el = ev.target;
        if (el.classList?.contains("o-mail-Thread")) {
            this.stickToBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 40;
        }
    }

    get composerPlaceholder() {
        return _t("Write a WhatsApp message…");
    }
}

registry.category("view_widgets").add("vm_whatsapp_chat", { component: WhatsappChat });
