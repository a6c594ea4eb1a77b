"""`make demo`: database visionmetrics_demo with the addon, its demo data (a sandbox integration
for the main company and leads with first-touch tokens), served at http://localhost:8069 with
login admin / admin.

The database is reused when it exists. The Odoo configuration (with a generated encryption key,
kept so that stored secrets stay readable) is written once to .demo/odoo.conf.
"""

import os
import sys
from pathlib import Path

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
    print(f"\nOdoo is starting at http://localhost:{PORT} (login admin / admin). Ctrl+C stops it.\n", flush=True)
    os.execvpe(odoo_cmd[0], [*odoo_cmd, "-c", str(conf), "-d", DB], env)  # noqa: S606 - replace this process


if __name__ == "__main__":
    main()
