"""`make demo`: database visionmetrics_demo with the addon and its demo data (a sandbox
integration for the main company, leads with first-touch tokens), served at
http://localhost:8069 with login admin / admin; once the server answers, the sandbox number is
connected and a handful of conversations are made through the real webhook route
(scripts/demo_data.py), then what to try is printed.

The database is reused when it exists, and the conversations are made once. The Odoo
configuration (with a generated encryption key, kept so that stored secrets stay readable) is
written once to .demo/odoo.conf.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import requests
from demo_data import populate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import odoo_env  # noqa: E402

DB = os.environ.get("VM_DEMO_DB", "visionmetrics_demo")
PORT = int(os.environ.get("VM_DEMO_PORT", "8069"))


def main():
    try:
        odoo_cmd, odoo_addons, _ = odoo_env.find_odoo()
    except odoo_env.OdooNotFound as e:
        sys.exit(f"make demo needs Odoo 18.0: {e}. See README.rst, 'Getting Odoo 18.0'.")
    params = odoo_env.db_params()
    odoo_env.ensure_role(params)
    demo_dir = odoo_env.ROOT / ".demo"
    demo_dir.mkdir(exist_ok=True)
    conf = demo_dir / "odoo.conf"
    key_file = demo_dir / "integrations_key"
    if not key_file.exists():
        key_file.write_text(odoo_env.new_key())
        key_file.chmod(0o600)
    odoo_env.write_config(conf, params, odoo_addons, PORT, key_file.read_text().strip(), DB)
    conf.chmod(0o600)
    env = odoo_env.odoo_env()
    if not odoo_env.database_exists(params, DB):
        print(f"Creating database {DB} with the addon and its demo data (a few minutes)...", flush=True)
        odoo_env.run_checked([*odoo_cmd, "-c", str(conf), "-d", DB, "-i", odoo_env.ADDON, "--stop-after-init"], env)
    else:
        print(f"Reusing database {DB}; updating the addon...", flush=True)
        odoo_env.run_checked([*odoo_cmd, "-c", str(conf), "-d", DB, "-u", odoo_env.ADDON, "--stop-after-init"], env)
    url = f"http://localhost:{PORT}"
    print(f"\nStarting Odoo at {url}...", flush=True)
    server = subprocess.Popen([*odoo_cmd, "-c", str(conf), "-d", DB], env=env)  # noqa: S603
    try:
        wait_for(server, url)
        try:
            made = populate(url, DB)
        except RuntimeError as e:  # DemoError, or an RPC error
            print(f"\nThe demo conversations could not be made: {e}", flush=True)
        else:
            print(f"Demo conversations: {len(made)} made now." if made else "Demo conversations: already there.")
        print(GUIDE.format(url=url), flush=True)
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(30)


GUIDE = """
Odoo runs at {url}: log in as admin / admin (Ctrl+C stops it).

Try:
  - CRM → WhatsApp Conversations: Ana (found by her lead's token), Bruno (by his phone number),
    Diego (a new lead), Eduarda (from an Instagram ad), Fábio (from a flyer's campaign link);
    the replies went through the sandbox and were read, Diego's with a photo.
  - CRM → open a lead → its WhatsApp tab: the chat, and the composer to reply.
  - CRM → Sales → WhatsApp Campaign Links: the flyer's link, its QR code and its click.
  - CRM → Reporting → WhatsApp: conversations and leads by kind of attribution and campaign.
  - Settings → WhatsApp: the connected sandbox number; Connect shows its QR code.
  - Write to the sandbox number as a customer, from this shell:
      python3 scripts/sandbox_message.py +5511912345678 "Olá! vm_token:news-0b77e2" --name Carla
    (Carla's lead has that token: her message joins it.)
"""


def wait_for(server, url, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"Odoo stopped (exit code {server.returncode}); is port {PORT} already in use?")
        try:
            if requests.get(f"{url}/web/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    sys.exit(f"Odoo did not answer at {url} within {timeout} s.")


if __name__ == "__main__":
    main()
