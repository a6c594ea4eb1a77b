"""Webhook ingest benchmark (a script that prints figures, not a test).

Starts Odoo with 2 workers on loopback on a fresh database with the addon, then in one run:
1. GET /web/health (a bare Odoo route) at concurrency 8;
2. signed sandbox webhooks with distinct message ids at concurrency 8 (contacts drawn from a pool
   whose conversations exist, i.e. the steady state of a busy number);
and prints requests/s, p50 and p99 of both and their ratio. Then 3 concurrent deliveries of each
of 2,000 ids: prints the duplicates stored and the non-2xx answers (both must be 0).

    python3 scripts/bench_webhooks.py [--seconds 30] [--concurrency 8] [--ids 2000] [--reuse]

Database settings come from PGHOST/PGPORT/PGUSER/PGPASSWORD, like `make test`.
"""

import argparse
import hashlib
import hmac
import http.client
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import odoo_env  # noqa: E402
from e2e.server import OdooServer, Rpc  # noqa: E402

DB = "vm_whatsapp_bench"


def run_load(url_for, body_for, seconds, concurrency, headers_for=None, total=None):
    """Send requests from ``concurrency`` threads for ``seconds`` (or until ``total`` requests);
    returns (requests/s, latencies, non-2xx statuses)."""
    latencies, errors, lock = [], [], threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    def worker():
        # http.client rather than requests: the load generator shares the 2 cores with Odoo and
        # PostgreSQL, so it must cost as little CPU per request as possible.
        while time.monotonic() < deadline:
            i = next(counter)
            if total is not None and i >= total:
                break
            body = body_for(i) if body_for else None
            url = urlsplit(url_for(i))
            start = time.perf_counter()
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            if body is None:
                connection.request("GET", url.path)
            else:
                connection.request("POST", url.path, body=body, headers=headers_for(body))
            status = connection.getresponse().status
            connection.close()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                if not 200 <= status < 300:
                    errors.append(status)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.monotonic() - started), latencies, errors


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


def describe(name, rps, latencies, errors):
    print(
        f"{name:<22} {rps:8.1f} req/s   p50 {percentile(latencies, 50) * 1000:7.1f} ms   "
        f"p99 {percentile(latencies, 99) * 1000:7.1f} ms   non-2xx {len(errors)}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--ids", type=int, default=2000)
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--reuse", action="store_true", help="reuse the benchmark database if it exists")
    args = parser.parse_args()

    odoo_cmd, odoo_addons, _ = odoo_env.find_odoo()
    params = odoo_env.db_params()
    odoo_env.ensure_role(params)
    workdir = Path(tempfile.mkdtemp(prefix="vm-bench-"))
    conf = odoo_env.write_config(workdir / "odoo.conf", params, odoo_addons, odoo_env.free_port(), odoo_env.new_key())
    if not (args.reuse and odoo_env.database_exists(params, DB)):
        odoo_env.drop_database(params, DB)
        print(f"Installing the addon on a fresh database {DB}...", flush=True)
        odoo_env.run_checked(
            [*odoo_cmd, "-c", str(conf), "-d", DB, "-i", odoo_env.ADDON, "--without-demo=all", "--stop-after-init",
             "--log-level=warn"],
            odoo_env.odoo_env(),
        )  # fmt: skip
    server = OdooServer(conf, DB, workers=2, cron_threads=1).start()
    try:
        bench(server, args)
    finally:
        server.stop()


def bench(server, args):
    rpc = Rpc(server.url, DB)
    secret, session = secrets.token_urlsafe(32), "bench-" + secrets.token_hex(4)
    integration = rpc(
        "vm.whatsapp.integration",
        "create",
        {"name": "Benchmark", "provider": "sandbox", "webhook_secret": secret, "external_id": session},
    )
    token = rpc("vm.whatsapp.integration", "read", [integration], ["webhook_token"])[0]["webhook_token"]
    webhook_url = f"{server.url}/vm_whatsapp/webhook/sandbox/{token}"
    run_id = secrets.token_hex(4)
    contacts = [f"5511{900000000 + i}" for i in range(args.contacts)]

    def body(message_id, sender):
        message = {"id": message_id, "from": sender, "name": "Bench", "text": "Quero saber o preço", "type": "text",
                   "timestamp": int(time.time())}  # fmt: skip
        return json.dumps({"event": "message", "session": session, "message": message}).encode()

    def headers(raw):
        signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "X-VM-Signature": f"sha256={signature}"}

    print(f"Odoo at {server.url}, 2 workers; concurrency {args.concurrency}; {len(contacts)} contacts", flush=True)
    # Warm-up: each contact's first message creates its conversation and lead.
    warm = [body(f"{run_id}-warm-{i}", sender) for i, sender in enumerate(contacts)]
    run_load(lambda i: webhook_url, lambda i: warm[i], 600, args.concurrency, headers, total=len(warm))

    health_rps, health_lat, health_err = run_load(lambda i: f"{server.url}/web/health", None, args.seconds / 2,
                                                  args.concurrency)  # fmt: skip
    hook_rps, hook_lat, hook_err = run_load(
        lambda i: webhook_url,
        lambda i: body(f"{run_id}-{i}", contacts[i % len(contacts)]),
        args.seconds,
        args.concurrency,
        headers,
    )
    print()
    describe("GET /web/health", health_rps, health_lat, health_err)
    describe("POST webhook (signed)", hook_rps, hook_lat, hook_err)
    print(f"ratio webhook/health   {hook_rps / health_rps:8.2f}   (target >= 0.5; webhooks target >= 100 req/s)")

    # Redelivery: every id delivered 3 times at once.
    ids = [f"{run_id}-redeliver-{i}" for i in range(args.ids)]
    bodies = [body(mid, contacts[i % len(contacts)]) for i, mid in enumerate(ids)]
    work = [b for b in bodies for _ in range(3)]
    rps, latencies, errors = run_load(lambda i: webhook_url, lambda i: work[i], 3600, args.concurrency, headers,
                                      total=len(work))  # fmt: skip
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


if __name__ == "__main__":
    main()
