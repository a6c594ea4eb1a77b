"""Signed webhooks posted to a real Odoo server, concurrently, as providers deliver them."""

import hashlib
import hmac
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import requests

from .server import OdooServer, odoo_env


def message_body(session, sender, text, message_id, name="Cliente"):
    payload = {
        "event": "message",
        "session": session,
        "message": {
            "id": message_id,
            "from": sender,
            "name": name,
            "text": text,
            "type": "text",
            "timestamp": int(time.time()),
        },
    }
    return json.dumps(payload).encode()


def post(server, integration, body, secret=None):
    signature = hmac.new((secret or integration["secret"]).encode(), body, hashlib.sha256).hexdigest()
    return requests.post(
        f"{server.url}/vm_whatsapp/webhook/sandbox/{integration['token']}",
        data=body,
        headers={"Content-Type": "application/json", "X-VM-Signature": f"sha256={signature}"},
        timeout=60,
    )


# A request as the webhook route stores it: (integration, company, headers, payload, lane).
STORE_RECEIVED = (
    "INSERT INTO vm_whatsapp_webhook_log (integration_id, company_id, provider, remote_addr, headers, payload,"
    " state, signature, event_type, attempt_count, lane, received_at, create_date, write_date)"
    " VALUES (%s, %s, 'sandbox', '127.0.0.1', %s, %s, 'received', 'valid', 'message', 0, %s,"
    " now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC')"
)

# The wake-ups the route makes for the requests it stores (vm.whatsapp.inbox._wake_up): a
# trigger of each lane's cron, waiting for a cron worker.
WAKE_EVERY_LANE = (
    "INSERT INTO ir_cron_trigger (cron_id, call_at) SELECT res_id, now() AT TIME ZONE 'UTC' FROM ir_model_data"
    " WHERE module = 'visionmetrics_whatsapp' AND model = 'ir.cron' AND name LIKE 'ir_cron_inbox_lane_%'"
)


def wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    return predicate()


def test_token_message_lands_on_the_lead(server, rpc, sandbox):
    token = "e2e-" + secrets.token_hex(4)
    lead_id = rpc("crm.lead", "create", {"name": "E2E lead", "first_touch_token": token})
    response = post(
        server, sandbox, message_body(sandbox["session"], "5511988887777", f"oi vm_token:{token}", "e2e-m1")
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}

    def conversations():
        return rpc(
            "vm.whatsapp.conversation",
            "search_read",
            [("integration_id", "=", sandbox["id"])],
            ["lead_id", "attribution", "message_count"],
        )

    assert wait_for(conversations), "the inbox cron processes the request"
    assert [(c["lead_id"][0], c["attribution"], c["message_count"]) for c in conversations()] == [(lead_id, "token", 1)]


def test_the_webhook_wakes_the_inbox_cron_for_every_request_of_a_burst(server, rpc, sandbox):
    """The cron worker sleeps up to a minute between passes unless a webhook wakes it; wake-ups
    are throttled, so the last requests of a burst rely on the trailing one."""
    sender = "55119" + str(secrets.randbelow(10**8)).zfill(8)
    ids = [f"e2e-burst-{sender}-{i}" for i in range(5)]
    started = time.monotonic()
    for i, message_id in enumerate(ids):
        assert post(server, sandbox, message_body(sandbox["session"], sender, f"parte {i}", message_id)).ok
    domain = [("external_id", "in", ids)]
    assert wait_for(lambda: rpc("vm.whatsapp.message", "search_count", domain) == len(ids), timeout=20)
    # well before the cron's own one-minute schedule
    assert time.monotonic() - started < 20


def test_a_backlog_drains_without_waiting_for_the_cron_schedule(server, rpc, sandbox):
    """Odoo runs a cron with the progress API 10 batches in a row (here 1,000 requests), then its
    worker sleeps until woken up, or until the next minute: a backlog bigger than that (requests
    stored while the cron worker was down) must drain at once, not 1,000 a minute."""
    company_id = rpc("vm.whatsapp.integration", "read", [sandbox["id"]], ["company_id"])[0]["company_id"][0]
    senders = [f"55119{60000000 + i}" for i in range(20)]
    domain = [("integration_id", "=", sandbox["id"]), ("external_id", "like", "e2e-backlog-")]
    # The cron is idle: no wake-up of an earlier request is pending.
    assert post(server, sandbox, message_body(sandbox["session"], senders[0], "oi", "e2e-backlog-first")).ok
    assert wait_for(lambda: rpc("vm.whatsapp.message", "search_count", domain) == 1, timeout=20)
    time.sleep(1)

    ids = [f"e2e-backlog-{sandbox['session']}-{i}" for i in range(3150)]
    headers = json.dumps({"Content-Type": "application/json"})
    rows = [(sandbox["id"], company_id, headers, message_body(sandbox["session"], senders[i % 20], "oi", mid).decode())
            for i, mid in enumerate(ids)]  # fmt: skip
    # The requests as the webhook route stores them, while no cron worker runs, in the lane of the
    # request that will wake it (a request wakes its own lane; the route's wake-ups of these rows
    # would have been triggers waiting for the cron workers to come back).
    first = rpc("vm.whatsapp.webhook.log", "search_read", [("integration_id", "=", sandbox["id"])], ["lane"], limit=1)
    with psycopg2.connect(dbname=server.dbname, **odoo_env.db_params()) as conn, conn.cursor() as cr:
        cr.executemany(
            STORE_RECEIVED,
            [(*row, first[0]["lane"]) for row in rows],
        )
    conn.close()
    # One more request arrives and wakes the cron up. Within 20 s, the cron's schedule can wake it
    # once more at most: without waking itself up, it would process 2,000 requests, not 3,151.
    assert post(server, sandbox, message_body(sandbox["session"], senders[0], "oi", "e2e-backlog-last")).ok
    waiting = [("integration_id", "=", sandbox["id"]), ("state", "=", "received")]
    assert wait_for(lambda: rpc("vm.whatsapp.message", "search_count", domain) == len(ids) + 2, timeout=20), (
        f"{rpc('vm.whatsapp.webhook.log', 'search_count', waiting)} requests still waiting"
    )


def test_bad_signature_and_unknown_token(server, rpc, sandbox):
    body = message_body(sandbox["session"], "5511988886666", "oi", "e2e-bad")
    assert post(server, sandbox, body, secret="wrong-secret").status_code == 401
    assert post(server, {**sandbox, "token": "nope"}, body).status_code == 404
    assert not rpc("vm.whatsapp.message", "search", [("integration_id", "=", sandbox["id"])])


def test_concurrent_redelivery_stores_each_message_once(server, rpc, sandbox):
    ids = [f"e2e-dup-{i}" for i in range(60)]
    bodies = [message_body(sandbox["session"], f"55119{70000000 + i % 12}", "oi", mid) for i, mid in enumerate(ids)]
    work = [body for body in bodies for _ in range(3)]  # every message delivered 3 times at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda body: post(server, sandbox, body), work))
    assert [a.status_code for a in answers if not 200 <= a.status_code < 300] == []
    assert sum(a.json().get("duplicate", False) for a in answers) == 2 * len(ids), "each redelivery is a duplicate"
    domain = [("integration_id", "=", sandbox["id"]), ("external_id", "in", ids)]
    waiting = [("integration_id", "=", sandbox["id"]), ("state", "=", "received")]
    assert wait_for(lambda: rpc("vm.whatsapp.webhook.log", "search_count", waiting) == 0)
    stored = rpc("vm.whatsapp.message", "search_read", domain, ["external_id"])
    assert sorted(m["external_id"] for m in stored) == sorted(ids)
    logs = rpc("vm.whatsapp.webhook.log", "read_group", [("integration_id", "=", sandbox["id"]),
               ("payload", "like", "e2e-dup-")], ["state"], ["state"])  # fmt: skip
    assert {g["state"]: g["state_count"] for g in logs} == {"processed": len(ids)}, "redeliveries are not stored"


def test_simultaneous_first_messages_make_one_conversation_and_one_lead(server, rpc, sandbox):
    sender = "55119" + str(secrets.randbelow(10**8)).zfill(8)
    bodies = [message_body(sandbox["session"], sender, f"mensagem {i}", f"e2e-first-{sender}-{i}") for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda body: post(server, sandbox, body).status_code, bodies))
    assert statuses == [200] * 4

    def all_messages_stored():
        return rpc("vm.whatsapp.message", "search_count", [("external_id", "like", f"e2e-first-{sender}-")]) == 4

    assert wait_for(all_messages_stored), "failed requests are processed again by the retry cron"
    conversations = rpc("vm.whatsapp.conversation", "search_read", [("contact_identity", "=", sender)], ["lead_id"])
    assert len(conversations) == 1
    phone = "+" + sender
    assert rpc("crm.lead", "search_count", [("phone_sanitized", "=", phone)]) == 1


def test_several_cron_workers_apply_a_backlog_once_and_in_order(server, rpc, sandbox):
    """A second server with 2 cron workers joins the first one's on one backlog: 3 processors,
    4 lanes. Every request is applied exactly once, each contact's messages in arrival order."""
    company_id = rpc("vm.whatsapp.integration", "read", [sandbox["id"]], ["company_id"])[0]["company_id"][0]
    contacts = [f"55119{80000000 + i}" for i in range(40)]
    headers = json.dumps({"Content-Type": "application/json"})
    prefix = f"e2e-lanes-{sandbox['session']}"
    rows = []
    for n in range(15):  # message n of every contact, contact by contact: interleaved arrivals
        for c, sender in enumerate(contacts):
            body = message_body(sandbox["session"], sender, f"parte {n}", f"{prefix}-{c}-{n:02d}").decode()
            rows.append((sandbox["id"], company_id, headers, body, c % 4))
    with psycopg2.connect(dbname=server.dbname, **odoo_env.db_params()) as conn, conn.cursor() as cr:
        cr.executemany(STORE_RECEIVED, rows)
        cr.execute(WAKE_EVERY_LANE)
    conn.close()
    second = OdooServer(server.conf, server.dbname, workers=1, cron_threads=2).start()
    try:
        # one more request: its NOTIFY wakes the cron workers of both servers up
        assert post(server, sandbox, message_body(sandbox["session"], "5511979999999", "oi", f"{prefix}-wake")).ok
        waiting = [("integration_id", "=", sandbox["id"]), ("state", "=", "received")]
        assert wait_for(lambda: rpc("vm.whatsapp.webhook.log", "search_count", waiting) == 0, timeout=120)
    finally:
        second.stop()
    assert second.error_lines() == []
    logs = rpc("vm.whatsapp.webhook.log", "read_group", [("integration_id", "=", sandbox["id"]),
               ("payload", "like", prefix)], ["state"], ["state"])  # fmt: skip
    assert {g["state"]: g["state_count"] for g in logs} == {"processed": len(rows) + 1}
    messages = rpc("vm.whatsapp.message", "search_read", [("external_id", "like", prefix)], ["external_id"], order="id")
    assert len(messages) == len({m["external_id"] for m in messages}) == len(rows) + 1, "each stored once"
    for c in range(len(contacts)):
        ids = [m["external_id"] for m in messages if m["external_id"].startswith(f"{prefix}-{c}-")]
        assert ids == sorted(ids), f"contact {c}: stored in arrival order"
    conversations = [("integration_id", "=", sandbox["id"]), ("contact_identity", "in", contacts)]
    assert rpc("vm.whatsapp.conversation", "search_count", conversations) == len(contacts)


def test_a_burst_of_identical_connection_updates_is_counted_on_one_log(server, rpc, sandbox):
    """A gateway in a reconnect loop, its identical updates arriving in parallel: every one is
    answered 200, they are counted on the latest log, and none waits for or fails on another."""
    body = json.dumps({"event": "connection", "session": sandbox["session"], "state": "pending"}).encode()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _i: post(server, sandbox, body).status_code, range(40)))
    assert statuses == [200] * 40
    logs = rpc("vm.whatsapp.webhook.log", "search_read", [("integration_id", "=", sandbox["id"]),
               ("event_type", "=", "connection")], ["repeat_count"])  # fmt: skip
    assert len(logs) <= 8, "a few rows (requests that raced the first one), not 40"
    assert sum(log["repeat_count"] for log in logs) >= 1, "repeats are counted (those that race one are not)"


def test_server_log_has_no_error(server):
    assert server.error_lines() == []
