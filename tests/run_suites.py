"""`make test`: run every suite and end with one line counting passed and failed tests.

1. The tests that need no Odoo (pytest, this folder except e2e/).
2. When Odoo 18 is importable (or ODOO_SRC points at an Odoo 18.0 tree): install the addon on a
   fresh database and run its Odoo tests (odoo-bin --test-enable), then the end-to-end tests in
   tests/e2e against a real Odoo server on that database.
3. When EVOLUTION_API_URL and EVOLUTION_API_KEY name a real Evolution API server (and its global
   key): the gateway contract tests in tests/gateway, against a real Odoo server on the same
   database. Otherwise they are not collected at all, and one line of the summary says why.
Without Odoo, step 2 is skipped and the output says so and why. Exit status is non-zero when any
test fails or an ERROR line appears in Odoo's log.
"""

import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import odoo_env  # noqa: E402

ROOT = odoo_env.ROOT
RESULT_RE = re.compile(r"(\d+) failed, (\d+) error\(s\) of (\d+) tests when loading database")
LOG_ERROR_RE = re.compile(r"^\S+ \S+ \d+ (ERROR|CRITICAL) ")
GATEWAY_SETTINGS = ("EVOLUTION_API_URL", "EVOLUTION_API_KEY")


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.notes = []

    def add(self, name, passed, failed, skipped=0):
        self.passed += passed
        self.failed += failed
        self.skipped += skipped
        self.notes.append(f"{name}: {passed} passed, {failed} failed, {skipped} skipped")


def run_pytest(tally, name, args, env=None):
    junit = Path(tempfile.mkstemp(suffix=".xml")[1])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *args]
    print(f"\n=== {name}: {' '.join(cmd[2:])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    try:
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        total, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    except (ET.ParseError, AttributeError, FileNotFoundError):
        total = failures = errors = skipped = 0
    finally:
        junit.unlink(missing_ok=True)
    failed = failures + errors
    if proc.returncode not in (0, 5) and not failed:
        failed = 1  # pytest itself failed (collection error, crash)
    tally.add(name, total - failed - skipped, failed, skipped)


def run_odoo_suite(tally, odoo_cmd, odoo_addons, workdir):
    params = odoo_env.db_params()
    odoo_env.ensure_role(params)
    dbname = os.environ.get("VM_TEST_DB", "vm_whatsapp_test")
    odoo_env.drop_database(params, dbname)
    conf = odoo_env.write_config(
        Path(workdir) / "odoo-test.conf", params, odoo_addons, odoo_env.free_port(), odoo_env.new_key(), dbname
    )
    log_path = Path(workdir) / "odoo-test.log"
    cmd = [
        *odoo_cmd,
        "-c",
        str(conf),
        "-d",
        dbname,
        "-i",
        odoo_env.ADDON,
        "--without-demo=all",
        "--test-enable",
        f"--test-tags=/{odoo_env.ADDON}",
        "--stop-after-init",
        "--log-level=info",
        f"--logfile={log_path}",
    ]
    print(f"\n=== Odoo tests: installing {odoo_env.ADDON} on fresh database {dbname!r}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=odoo_env.odoo_env(), check=False)
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    error_lines = [line for line in log.splitlines() if LOG_ERROR_RE.match(line)]
    for line in log.splitlines():
        if " odoo.addons.visionmetrics_whatsapp" in line and (" FAIL" in line or " ERROR" in line):
            print(line)
    match = RESULT_RE.findall(log)
    if match:
        failed, errors, total = (int(x) for x in match[-1])
        tally.add("Odoo tests", total - failed - errors, failed + errors)
    else:
        tally.add("Odoo tests", 0, 1)
        print("No Odoo test result line found; the end of the log:")
        print("\n".join(log.splitlines()[-40:]))
    if error_lines:
        print(f"{len(error_lines)} ERROR line(s) in the Odoo log (counted as one failure):")
        print("\n".join(error_lines[:20]))
        tally.add("Odoo log", 0, 1)
    if proc.returncode and not (match and error_lines):
        print(f"odoo exited with status {proc.returncode}")
    # The end-to-end tests drive a real server on the database the addon was just installed on.
    env = dict(odoo_env.odoo_env(), VM_E2E_DB=dbname, VM_E2E_CONF=str(conf))
    if (ROOT / "tests" / "e2e").is_dir():
        run_pytest(tally, "End-to-end tests", ["tests/e2e"], env=env)
    # The gateway contract tests, against a real Evolution API server, on the same database.
    if not gateway_skip_reason():
        run_pytest(tally, "Gateway tests (Evolution API)", ["tests/gateway"], env=env)


def gateway_skip_reason():
    """Why the gateway suite cannot run (None when it can): it needs a real Evolution API server."""
    missing = [name for name in GATEWAY_SETTINGS if not os.environ.get(name)]
    if missing:
        return f"{' and '.join(missing)} not set (the URL and global API key of a real Evolution API server)"
    return None


def main():
    tally = Tally()
    run_pytest(tally, "Tests without Odoo", ["tests", "--ignore=tests/e2e", "--ignore=tests/gateway"])
    try:
        odoo_cmd, odoo_addons, _version = odoo_env.find_odoo()
    except odoo_env.OdooNotFound as e:
        odoo_cmd = None
        skipped_reason = str(e)
    if odoo_cmd:
        with tempfile.TemporaryDirectory(prefix="vm-whatsapp-test-") as workdir:
            run_odoo_suite(tally, odoo_cmd, odoo_addons, workdir)
    print("\n=== Summary")
    for note in tally.notes:
        print(f"  {note}")
    if not odoo_cmd:
        print(f"  Odoo suite SKIPPED: {skipped_reason}. Install Odoo 18.0 (or set ODOO_SRC) to run it.")
    gateway_reason = gateway_skip_reason() or (None if odoo_cmd else "it needs the Odoo suite's database")
    if gateway_reason:
        print(f"  Gateway suite NOT RUN: {gateway_reason}.")
    print(f"{tally.passed} passed, {tally.failed} failed, {tally.skipped} skipped")
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
