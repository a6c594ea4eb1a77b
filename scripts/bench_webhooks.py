"""Webhook ingest benchmark (a script that prints figures, not a test).

Starts Odoo with 2 workers and 1 cron worker on loopback on a fresh database with the addon,
then in one run:
1. GET /web/health (a bare Odoo route) and signed sandbox webhooks with distinct message ids,
   both at concurrency 8, in alternating rounds (so that a slower moment of the machine weighs
   on both); the webhooks' contacts are drawn from a pool whose conversations exist, i.e. the
   steady state of a busy number. The inbox cron processes the requests meanwhile, on the same
   two cores;
2. prints requests/s, p50 and p99 of both and their ratio, then how long the inbox took to be
   empty after the load and the delay from receiving a request to processing it;
3. delivers each of 2,000 new ids 3 times at once, waits for the inbox, and prints the
   duplicates stored and the non-2xx answers (both must be 0).

    python3 scripts/bench_webhooks.py [--seconds 30] [--rounds 3] [--concurrency 8] [--ids 2000] [--reuse]

Database settings come from PGHOST/PGPORT/PGUSER/PGPASSWORD, like `make test`.
"""

import argparse
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from bench_common import (
    MAX_RATE,
    OdooServer,
    Rpc,
    SandboxIntegration,
    Totals,
    describe,
    install_database,
    odoo_env,
    percentile,
    query,
    run_load,
    wait_for_inbox,
)

DB = "vm_whatsapp_bench"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="webhook load in all (health: half of it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--ids", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--reuse", action="store_true", help="reuse the benchmark database if it exists")
    args = parser.parse_args()

    _odoo_cmd, odoo_addons, _ = odoo_env.find_odoo()
    params = odoo_env.db_params()
    odoo_env.ensure_role(params)
    workdir = Path(tempfile.mkdtemp(prefix="vm-bench-"))
    conf = odoo_env.write_config(workdir / "odoo.conf", params, odoo_addons, odoo_env.free_port(), odoo_env.new_key())
    if not (args.reuse and odoo_env.database_exists(params, DB)):
        install_database(conf, DB)
    server = OdooServer(conf, DB, workers=2, cron_threads=1).start()
    try:
        bench(server, args)
    finally:
        server.stop()


def bench(server, args):
    rpc = Rpc(server.url, DB)
    integration = SandboxIntegration(rpc)
    health_url = urlsplit(f"{server.url}/web/health")
    run_id = secrets.token_hex(4)
    contacts = [f"5511{900000000 + i}" for i in range(args.contacts)]

    def signed(message_id, sender):
        return integration.signed(server.url, message_id, sender)

    print(f"Odoo at {server.url}, 2 workers; concurrency {args.concurrency}; {len(contacts)} contacts", flush=True)
    # Warm-up: each contact's first message creates its conversation and lead.
    run_load([signed(f"{run_id}-warm-{i}", sender) for i, sender in enumerate(contacts)], 600, args.concurrency)
    wait_for_inbox(server.dbname)

    health, hooks, sent = Totals(), Totals(), 0
    round_seconds = args.seconds / args.rounds
    for _round in range(args.rounds):
        health.add(*run_load([(health_url, None, None)] * int(MAX_RATE * round_seconds / 2), round_seconds / 2,
                             args.concurrency))  # fmt: skip
        load = [signed(f"{run_id}-load-{sent + i}", contacts[i % len(contacts)])
                for i in range(int(MAX_RATE * round_seconds))]  # fmt: skip
        hooks.add(*run_load(load, round_seconds, args.concurrency))
        sent += len(load)
    waiting, drained = wait_for_inbox(server.dbname)
    print()
    describe("GET /web/health", health.rps, health.latencies, health.errors)
    describe("POST webhook (signed)", hooks.rps, hooks.latencies, hooks.errors)
    print(f"ratio webhook/health   {hooks.rps / health.rps:8.2f}   (target >= 0.5; webhooks target >= 100 req/s)")
    lag = processing_delays(server.dbname, f'"id": "{run_id}-load-')
    print(f"inbox: {waiting} requests waiting when the load stopped, empty {drained:.1f} s later; "
          f"received -> processed p50 {percentile(lag, 50):.0f} s, p99 {percentile(lag, 99):.0f} s, "
          f"max {max(lag, default=0):.0f} s (1 s resolution)")  # fmt: skip

    # Redelivery: every id delivered 3 times at once.
    ids = [f"{run_id}-redeliver-{i}" for i in range(args.ids)]
    requests = [signed(mid, contacts[i % len(contacts)]) for i, mid in enumerate(ids)]
    rps, latencies, errors = run_load([r for r in requests for _ in range(3)], 3600, args.concurrency)
    wait_for_inbox(server.dbname)
    stored = rpc("vm.whatsapp.message", "read_group", [("external_id", "like", f"{run_id}-redeliver-")],
                 ["external_id"], ["external_id"], lazy=False)  # fmt: skip
    duplicates = sum(group["__count"] - 1 for group in stored)
    print()
    describe("3x redelivery", rps, latencies, errors)
    print(f"ids sent {len(ids)}   ids stored {len(stored)}   duplicates stored {duplicates}   non-2xx {len(errors)}")
    server_errors = server.error_lines()
    print(f"ERROR lines in the Odoo log: {len(server_errors)}")
    for line in server_errors[:5]:
        print("  " + line)


def processing_delays(dbname, payload_marker):
    rows = query(
        dbname,
        "SELECT EXTRACT(EPOCH FROM processed_at - date_trunc('second', received_at)) FROM vm_whatsapp_webhook_log "
        "WHERE payload LIKE %s AND processed_at IS NOT NULL",
        [f"%{payload_marker}%"],
    )
    return [float(delay) for (delay,) in rows]


if __name__ == "__main__":
    main()
