"""Find Odoo 18 and PostgreSQL, and prepare what `make test` and `make demo` need.

Used by tests/run_suites.py, tests/demo.py and the end-to-end tests. Odoo is found by
``import odoo`` or through ``ODOO_SRC`` (an Odoo 18.0 source tree); nothing here installs it.
Database settings come from PGHOST, PGPORT, PGUSER and PGPASSWORD with local defaults.
"""

import base64
import os
import secrets
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDON = "visionmetrics_whatsapp"
DEFAULT_ROLE = "odoo"


class OdooNotFound(Exception):
    pass


def odoo_pythonpath():
    """PYTHONPATH entries needed to import odoo (ODOO_SRC when set)."""
    src = os.environ.get("ODOO_SRC")
    return [src] if src else []


def find_odoo():
    """Return (python command to run Odoo, Odoo's addons dir, version) or raise OdooNotFound
    saying why."""
    src = os.environ.get("ODOO_SRC")
    if src and not (Path(src) / "odoo" / "release.py").is_file():
        raise OdooNotFound(f"ODOO_SRC={src} is not an Odoo source tree (no odoo/release.py)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(odoo_pythonpath() + [os.environ.get("PYTHONPATH", "")]))
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import odoo.release, os; print(odoo.release.version_info[0]); print(os.path.dirname(odoo.__file__))",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        raise OdooNotFound(f"Odoo is not importable ({last}) and ODOO_SRC is not set")
    major, odoo_dir = probe.stdout.split()
    if major != "18":
        raise OdooNotFound(f"Odoo {major} found, this addon needs Odoo 18.0")
    return (
        [sys.executable, str(Path(__file__).with_name("odoo_launcher.py"))],
        str(Path(odoo_dir).parent / "addons"),
        major,
    )


def db_params():
    params = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER") or DEFAULT_ROLE,
        "password": os.environ.get("PGPASSWORD", ""),
    }
    if params["user"] == "postgres":
        # Odoo refuses to run as the postgres superuser.
        params["user"] = DEFAULT_ROLE
    return params


def ensure_role(params):
    """Make sure the database role exists and may create databases; create it through the
    postgres superuser when it does not (trust authentication on a developer machine)."""
    import psycopg2

    try:
        psycopg2.connect(dbname="postgres", **params).close()
        return
    except psycopg2.OperationalError as e:
        if "does not exist" not in str(e) or "role" not in str(e):
            raise SystemExit(f"Cannot connect to PostgreSQL as {params['user']}: {e}") from None
    admin = dict(params, user="postgres")
    try:
        conn = psycopg2.connect(dbname="postgres", **admin)
    except psycopg2.OperationalError as e:
        raise SystemExit(
            f"The PostgreSQL role '{params['user']}' does not exist and cannot be created as 'postgres' ({e}). "
            f"Create it: createuser --createdb {params['user']}"
        ) from None
    conn.autocommit = True
    with conn.cursor() as cr:
        cr.execute(f'CREATE ROLE "{params["user"]}" LOGIN CREATEDB')  # name from our own settings
    conn.close()
    print(f"Created the PostgreSQL role '{params['user']}' (LOGIN CREATEDB).")


def drop_database(params, dbname):
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", **params)
    conn.autocommit = True
    with conn.cursor() as cr:
        cr.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [dbname])
        cr.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
    conn.close()


def database_exists(params, dbname):
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", **params)
    with conn.cursor() as cr:
        cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname])
        found = bool(cr.fetchone())
    conn.close()
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_key():
    return base64.b64encode(secrets.token_bytes(32)).decode()


def write_config(path, params, odoo_addons, http_port, integrations_key, dbname=None, extra=""):
    """Write an Odoo configuration file for this repository's addon."""
    addons_path = ",".join([str(ROOT), odoo_addons])
    lines = f"""
        [options]
        addons_path = {addons_path}
        db_host = {params["host"]}
        db_port = {params["port"]}
        db_user = {params["user"]}
        db_password = {params["password"] or "False"}
        http_port = {http_port}
        http_interface = 127.0.0.1
        integrations_key = {integrations_key}
        without_demo = False
        """
    if dbname:
        # db_name without dbfilter: Odoo serves that database without listing the server's
        # databases on every request without a session (webhooks).
        lines += f"db_name = {dbname}\n"
    Path(path).write_text(textwrap.dedent(lines).lstrip() + textwrap.dedent(extra))
    return path


def odoo_env():
    env = dict(os.environ, TZ="UTC")
    paths = odoo_pythonpath()
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")])
    return env


def run_checked(cmd, env):
    """Run an Odoo command; exit with its status when it fails."""
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    if proc.returncode:
        sys.exit(f"Command failed with status {proc.returncode}: {' '.join(cmd[:3])} ...")
