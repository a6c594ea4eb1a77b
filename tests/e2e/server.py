"""A real Odoo server for end-to-end tests and benchmarks, and a small JSON-RPC client."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import odoo_env  # noqa: E402


class OdooServer:
    """``python -m odoo`` serving one database on a free loopback port, in prefork mode."""

    def __init__(self, conf, dbname, workers=2, cron_threads=1, log_path=None):
        self.conf, self.dbname, self.workers, self.cron_threads = conf, dbname, workers, cron_threads
        self.port, self.gevent_port = odoo_env.free_port(), odoo_env.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(conf).with_suffix(f".{self.port}.log")
        self.process = None

    def start(self, timeout=120):
        odoo_cmd, _addons, _version = odoo_env.find_odoo()
        cmd = [
            *odoo_cmd, "-c", str(self.conf), "-d", self.dbname,
            f"--http-port={self.port}", f"--gevent-port={self.gevent_port}", "--http-interface=127.0.0.1",
            f"--workers={self.workers}",
            f"--max-cron-threads={self.cron_threads}", "--log-level=warn", f"--logfile={self.log_path}",
            "--limit-time-real=600", "--limit-time-cpu=600",
        ]  # fmt: skip
        self.process = subprocess.Popen(cmd, env=odoo_env.odoo_env(), cwd=odoo_env.ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Odoo exited with {self.process.returncode}; see {self.log_path}")
            try:
                if requests.get(f"{self.url}/web/health", timeout=10).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Odoo did not answer on {self.url} within {timeout} s")

    def wait_settled(self, timeout=60):
        """Wait until the websocket server (a process of its own, which imports Odoo anew after
        the HTTP workers answer) listens: until then it takes a core of a small machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.gevent_port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"Odoo's websocket server did not listen on {self.gevent_port} within {timeout} s")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def error_lines(self):
        path = Path(self.log_path)
        if not path.exists():
            return []
        return [
            line for line in path.read_text(errors="replace").splitlines() if " ERROR " in line or " CRITICAL " in line
        ]


class Rpc:
    """JSON-RPC as a user (``execute_kw``)."""

    def __init__(self, url, db, login="admin", password="admin"):
        self.url, self.db, self.password = url, db, password
        self.uid = self._call("common", "login", db, login, password)
        if not self.uid:
            raise RuntimeError(f"Cannot log in as {login} on {db}")

    def _call(self, service, method, *args):
        response = requests.post(
            f"{self.url}/jsonrpc",
            json={"jsonrpc": "2.0", "method": "call", "params": {"service": service, "method": method, "args": args}},
            timeout=60,
        )
        data = response.json()
        if "error" in data:
            raise RuntimeError(data["error"]["data"]["message"])
        return data["result"]

    def __call__(self, model, method, *args, **kwargs):
        return self._call("object", "execute_kw", self.db, self.uid, self.password, model, method, list(args), kwargs)


def e2e_settings():
    """(conf, dbname) given by run_suites.py, or None when not run by it."""
    conf, db = os.environ.get("VM_E2E_CONF"), os.environ.get("VM_E2E_DB")
    return (conf, db) if conf and db else None
