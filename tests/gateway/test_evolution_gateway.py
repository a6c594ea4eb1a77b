"""The addon against a real Evolution API server: connect, Evolution's own webhooks, no stored
credential, disconnect, and the instance deleted at the end. Run in this order."""

import json

import psycopg2
from e2e.server import odoo_env

from .conftest import wait_for

SESSION_FIELDS = ["state", "external_id", "error_message", "closed_at"]


def logs(rpc, connected, fields=("state", "signature", "event_type", "error", "headers", "payload")):
    return rpc(
        "vm.whatsapp.webhook.log", "search_read", [("integration_id", "=", connected["id"])], list(fields), order="id"
    )


def sessions(rpc, connected):
    return rpc("vm.whatsapp.session", "search_read", [("integration_id", "=", connected["id"])], SESSION_FIELDS)


def integration_state(rpc, connected):
    return rpc("vm.whatsapp.integration", "read", [connected["id"]], ["state"])[0]["state"]


def test_connect_creates_the_instance_with_our_webhook_and_secret(rpc, evolution, connected):
    assert connected["action"]["res_model"] == "vm.whatsapp.connect.wizard"
    assert connected["name"], "the addon names the instance it created"
    assert connected["token"], "Evolution created the instance and holds its token"
    status, webhook = evolution.call("GET", f"/webhook/find/{connected['name']}")
    assert status == 200, webhook
    assert (webhook["enabled"], webhook["url"]) == (True, connected["webhook_url"])
    assert webhook["headers"] == {"X-VM-Webhook-Secret": connected["webhook_secret"]}
    assert "CONNECTION_UPDATE" in webhook["events"] and "MESSAGES_UPSERT" in webhook["events"]
    [session] = sessions(rpc, connected)
    # no QR: this Evolution cannot reach WhatsApp
    assert (session["state"], session["external_id"]) == ("pending", connected["name"])
    assert integration_state(rpc, connected) == "connecting"


def test_evolution_webhooks_reach_odoo_authenticated_and_processed(rpc, connected):
    def received():  # requests stored, and identical ones counted on the log they repeat
        return sum(1 + log["repeat_count"] for log in logs(rpc, connected, ["repeat_count"]))

    assert wait_for(lambda: received() >= 5, timeout=60), "Evolution posts connection.update"
    ids = [log["id"] for log in logs(rpc, connected, ["id"])]  # more keep coming
    # its reconnect loop repeats one connection state: a few rows, not one per request
    assert len(ids) < received(), "identical connection updates are counted, not stored again"

    def applied():
        stored = rpc("vm.whatsapp.webhook.log", "read", ids, ["state", "signature", "event_type", "headers", "payload"])
        return all(log["state"] != "received" for log in stored) and stored

    # the first updates come before the session exists (ignored); one is applied again 30 s later
    assert wait_for(lambda: any(log["state"] == "processed" for log in logs(rpc, connected, ["state"])), timeout=120), (
        "a connection update is applied once the session exists"
    )
    ids = [log["id"] for log in logs(rpc, connected, ["id"])]
    stored = wait_for(applied, timeout=60)
    assert stored, "the inbox applies every request"
    outcomes = {(log["state"], log["signature"], log["event_type"]) for log in stored}
    assert outcomes <= {("processed", "valid", "connection"), ("ignored", "valid", "connection")}, outcomes
    assert ("processed", "valid", "connection") in outcomes
    first = stored[0]
    assert json.loads(first["payload"])["event"] == "connection.update"
    headers = {k.lower(): v for k, v in json.loads(first["headers"]).items()}
    assert headers["x-vm-webhook-secret"] == "[redacted]"
    assert headers["user-agent"].startswith("axios/")


def test_monitor_keeps_waiting_while_evolution_reconnects(rpc, evolution, connected):
    """connectionState says close between two reconnect attempts: the session monitor must keep
    the session waiting for its QR, not close it."""
    cron_id = rpc("ir.model.data", "check_object_reference", "visionmetrics_whatsapp", "ir_cron_monitor_sessions")[1]
    seen = set()
    for _ in range(6):
        seen.add(evolution.state(connected["name"]))
        rpc("ir.cron", "method_direct_trigger", [cron_id])
    [session] = sessions(rpc, connected)
    assert (session["state"], session["closed_at"]) == ("pending", False), (session, seen)
    assert integration_state(rpc, connected) == "connecting"


def test_no_credential_is_stored_in_the_database(server, connected, evolution):
    """Neither Evolution's global key, nor the instance token it sends in every webhook body
    (``apikey``), nor the webhook secret, appears in clear in any text column of the addon's
    tables (webhook log payloads and headers included)."""
    secrets_ = {
        "instance token": connected["token"],
        "global API key": evolution.key,
        "webhook secret": connected["webhook_secret"],
    }
    found = []
    with psycopg2.connect(dbname=server.dbname, **odoo_env.db_params()) as conn, conn.cursor() as cr:
        cr.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name LIKE 'vm\\_whatsapp\\_%%'"
            " AND data_type IN ('text', 'character varying', 'jsonb', 'json')"
            " ORDER BY table_name, column_name"
        )
        columns = cr.fetchall()
        assert ("vm_whatsapp_webhook_log", "payload") in columns and ("vm_whatsapp_webhook_log", "headers") in columns
        for table, column in columns:
            for label, value in secrets_.items():
                cr.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE %s', [f"%{value}%"])
                count = cr.fetchone()[0]
                if count:
                    found.append(f"{label} in {table}.{column} ({count} rows)")
    conn.close()
    assert not found, "credentials stored in clear: " + "; ".join(found)


def test_disconnect_logs_the_instance_out_at_evolution(rpc, evolution, connected):
    result = rpc("vm.whatsapp.integration", "action_disconnect", [connected["id"]])
    assert result["params"]["type"] == "success", result
    assert integration_state(rpc, connected) == "disconnected"
    assert {s["state"] for s in sessions(rpc, connected)} == {"closed"}
    assert evolution.state(connected["name"]) in ("close", "connecting"), "Evolution has no open connection"
    connected["disconnected_at_log"] = max([log["id"] for log in logs(rpc, connected, ["id"])], default=0)


def test_a_disconnected_integration_stays_disconnected(rpc, connected):
    """Evolution may still post connection.update (connecting) after the logout: here it keeps
    reconnecting, elsewhere it retries late deliveries. None of them reopens what the admin closed."""
    after = [("integration_id", "=", connected["id"]), ("id", ">", connected["disconnected_at_log"])]
    processed = after + [("state", "!=", "received")]
    wait_for(lambda: rpc("vm.whatsapp.webhook.log", "search_count", processed) >= 3, timeout=15)
    late = rpc("vm.whatsapp.webhook.log", "search_count", processed)
    assert integration_state(rpc, connected) == "disconnected", f"after {late} late webhooks"
    assert {s["state"] for s in sessions(rpc, connected)} == {"closed"}, f"after {late} late webhooks"


def test_deleting_the_instance_stops_its_webhooks(rpc, evolution, connected):
    status, answer = evolution.call("DELETE", f"/instance/delete/{connected['name']}")
    assert (status, answer["response"]["message"]) == (200, "Instance deleted")
    # the instance leaves Evolution's memory shortly after the answer
    assert wait_for(lambda: evolution.state(connected["name"]) == 404, timeout=15)
    count = len(logs(rpc, connected, ["id"]))
    assert not wait_for(lambda: len(logs(rpc, connected, ["id"])) > count + 1, timeout=5), "webhooks still arrive"


def test_server_log_has_no_error(server):
    assert server.error_lines() == []
