"""What the benchmark scripts share: a fresh database, signed sandbox webhooks, the load generator
and its figures, and SQL on the benchmark database. Database settings come from
PGHOST/PGPORT/PGUSER/PGPASSWORD, like `make test`."""

import hashlib
import hmac
import http.client
import json
import secrets
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import odoo_env  # noqa: E402
from e2e.server import OdooServer, Rpc  # noqa: E402, F401 - re-exported for the scripts

MAX_RATE = 3000  # requests/s prepared for each load phase (more than the server can take)


def install_database(conf, dbname, modules=(odoo_env.ADDON,)):
    """Drop ``dbname`` and install ``modules`` on it again, without demo data."""
    odoo_cmd, _addons, _version = odoo_env.find_odoo()
    odoo_env.drop_database(odoo_env.db_params(), dbname)
    print(f"Installing {', '.join(modules)} on a fresh database {dbname}...", flush=True)
    odoo_env.run_checked(
        [*odoo_cmd, "-c", str(conf), "-d", dbname, "-i", ",".join(modules), "--without-demo=all", "--stop-after-init",
         "--log-level=warn"],
        odoo_env.odoo_env(),
    )  # fmt: skip


class SandboxIntegration:
    """A sandbox integration created over JSON-RPC with a known webhook secret, and its webhook
    requests signed as the sandbox provider signs them (X-VM-Signature)."""

    def __init__(self, rpc, name="Benchmark"):
        self.secret, self.session = secrets.token_urlsafe(32), "bench-" + secrets.token_hex(4)
        self.id = rpc(
            "vm.whatsapp.integration",
            "create",
            {"name": name, "provider": "sandbox", "webhook_secret": self.secret, "external_id": self.session},
        )
        token = rpc("vm.whatsapp.integration", "read", [self.id], ["webhook_token"])[0]["webhook_token"]
        self.path = f"/vm_whatsapp/webhook/sandbox/{token}"

    def signed(self, server_url, message_id, sender, text="Quero saber o preço"):
        """One request for run_load: a text message of ``sender`` with the provider id ``message_id``."""
        message = {"id": message_id, "from": sender, "name": "Bench", "text": text, "type": "text",
                   "timestamp": int(time.time())}  # fmt: skip
        raw = json.dumps({"event": "message", "session": self.session, "message": message}).encode()
        signature = hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-VM-Signature": f"sha256={signature}"}
        return urlsplit(server_url + self.path), raw, headers


def run_load(requests, seconds, concurrency):
    """Send ``requests`` (a list of (url, body or None for a GET, headers)) from ``concurrency``
    threads, until ``seconds`` have passed or the list is done; returns (requests/s, latencies,
    non-2xx statuses). The requests are built and signed beforehand: the load generator shares
    the 2 cores with Odoo and PostgreSQL, so it must cost as little CPU per request as possible
    (which is also why it uses http.client rather than requests)."""
    latencies, errors, lock = [], [], threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(len(requests)))

    def worker():
        while time.monotonic() < deadline:
            i = next(counter, None)
            if i is None:
                break
            url, body, headers = requests[i]
            start = time.perf_counter()
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            if body is None:
                connection.request("GET", url.path)
            else:
                connection.request("POST", url.path, body=body, headers=headers)
            status = connection.getresponse().status
            connection.close()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                if not 200 <= status < 300:
                    errors.append(status)

    # Daemon threads: an interrupted run (Ctrl-C) does not wait for them to finish their list.
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
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


class Totals:
    """Requests of several rounds of load, added up."""

    def __init__(self):
        self.requests, self.seconds, self.latencies, self.errors = 0, 0.0, [], []

    def add(self, rps, latencies, errors):
        self.requests += len(latencies)
        self.seconds += len(latencies) / rps if rps else 0.0
        self.latencies += latencies
        self.errors += errors

    @property
    def rps(self):
        return self.requests / self.seconds if self.seconds else 0.0


def query(dbname, sql, params=()):
    import psycopg2

    conn = psycopg2.connect(dbname=dbname, **odoo_env.db_params())
    try:
        with conn, conn.cursor() as cr:  # one transaction, committed
            cr.execute(sql, params)
            return cr.fetchall() if cr.description else []
    finally:
        conn.close()


def received_count(dbname):
    return query(dbname, "SELECT count(*) FROM vm_whatsapp_webhook_log WHERE state = 'received'")[0][0]


def wait_for_inbox(dbname, timeout=600):
    """Wait until no webhook request waits for the inbox cron: (how many waited, seconds taken)."""
    started = time.monotonic()
    waiting = first = None
    while time.monotonic() - started < timeout:
        waiting = received_count(dbname)
        first = waiting if first is None else first
        if not waiting:
            break
        time.sleep(0.2)
    if waiting:
        raise RuntimeError(f"{waiting} webhook requests still unprocessed after {timeout} s")
    return first, time.monotonic() - started
