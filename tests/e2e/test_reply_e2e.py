"""A reply through the sandbox on a real Odoo server: queued by the user, sent by the outbox cron
within seconds, then moved to read by the sandbox's status webhooks, which travel over HTTP
through the real webhook route (the server's own web.base.url) and the inbox."""

import secrets
import time

from .test_webhook_e2e import message_body, post, wait_for


def test_sandbox_reply_reaches_read_through_the_real_webhook_route(server, rpc, sandbox):
    rpc("ir.config_parameter", "set_param", "web.base.url", server.url)
    rpc("vm.whatsapp.integration", "write", [sandbox["id"]], {"state": "connected"})
    sender = "55119" + str(secrets.randbelow(10**8)).zfill(8)
    assert post(server, sandbox, message_body(sandbox["session"], sender, "Oi, tem horário?", f"e2e-in-{sender}")).ok

    def conversation():
        found = rpc("vm.whatsapp.conversation", "search", [("contact_identity", "=", sender)])
        return found[0] if found else None

    conversation_id = wait_for(conversation, timeout=30)
    assert conversation_id, "the inbound message made a conversation"
    started = time.monotonic()
    message_id = rpc("vm.whatsapp.conversation", "action_send_message", [conversation_id], "Temos sim!")

    def status():
        return rpc("vm.whatsapp.message", "read", [message_id], ["status", "external_id", "failure_reason"])[0]

    assert wait_for(lambda: status()["status"] == "read", timeout=40), status()
    elapsed = time.monotonic() - started
    assert status()["external_id"].startswith("sbx_")
    logs = rpc(
        "vm.whatsapp.webhook.log",
        "search_read",
        [("integration_id", "=", sandbox["id"]), ("event_type", "=", "status")],
        ["state", "signature"],
    )
    assert [(log["state"], log["signature"]) for log in logs].count(("processed", "valid")) >= 3, logs
    assert elapsed < 30, f"sent and read within seconds, not at the cron's minute ({elapsed:.1f} s)"
    assert not server.error_lines()
