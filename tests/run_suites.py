"""`make test`: run every suite and end with one line counting passed and failed tests.

1. The tests that need no Odoo (pytest, this folder except e2e/).
2. When Odoo 18 is importable (or ODOO_SRC points at an Odoo 18.0 tree): install the addon on a
   fresh database and run its Odoo tests with pytest-odoo (visionmetrics_whatsapp/tests, HttpCase
   classes included: --odoo-http serves them from a thread of the pytest process), then the
   end-to-end tests in tests/e2e against a real Odoo server on that database.
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
LOG_ERROR_RE = re.compile(r"^\S+ \S+ \d+ (ERROR|CRITICAL) ")
# pytest imports the test modules (and so Odoo's test framework) before pytest-odoo turns Odoo's
# test mode on, and odoo.tests.common logs this ERROR when imported outside test mode. It cannot be
# imported earlier in test mode: that mode on while the registry loads runs every installed
# module's at_install tests.
KNOWN_PYTEST_ODOO_ERROR = " ERROR ? odoo.tests.common: Importing test framework, avoid importing from business modules"
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
    # One count per test (a test method, a parametrized case), like Odoo's runner: the suite's
    # "tests" attribute also counts each subTest of a test.
    passed = failed = skipped = 0
    try:
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcomes = {child.tag for child in case}
            if outcomes & {"failure", "error"}:
                failed += 1
            elif "skipped" in outcomes:
                skipped += 1
            else:
                passed += 1
    except (ET.ParseError, FileNotFoundError):
        pass
    finally:
        junit.unlink(missing_ok=True)
    if proc.returncode not in (0, 5) and not failed:
        failed = 1  # pytest itself failed (collection error, crash)
    tally.add(name, passed, failed, skipped)


def run_odoo_suite(tally, odoo_cmd, odoo_addons, workdir):
    params = odoo_env.db_params()
    odoo_env.ensure_role(params)
    dbname = os.environ.get("VM_TEST_DB", "vm_whatsapp_test")
    odoo_env.drop_database(params, dbname)
    conf = odoo_env.write_config(
        Path(workdir) / "odoo-test.conf", params, odoo_addons, odoo_env.free_port(), odoo_env.new_key(), dbname
    )
    install_log, test_log = Path(workdir) / "odoo-install.log", Path(workdir) / "odoo-test.log"
    install = [
        *odoo_cmd,
        *("-c", str(conf), "-d", dbname, "-i", odoo_env.ADDON, "--without-demo=all", "--stop-after-init"),
        *("--log-level=info", f"--logfile={install_log}"),
    ]
    print(f"\n=== Odoo tests: installing {odoo_env.ADDON} on fresh database {dbname!r}", flush=True)
    proc = subprocess.run(install, cwd=ROOT, env=odoo_env.odoo_env(), check=False)
    if proc.returncode:
        print(f"odoo exited with status {proc.returncode} while installing the addon; the end of its log:")
        print("\n".join(read_log(install_log).splitlines()[-40:]))
        tally.add("Odoo tests", 0, 1)
    else:
        # pytest-odoo: the registry of that database in this pytest process, an HTTP server thread
        # for the HttpCase classes (--odoo-http), Odoo's log in a file for the ERROR rule below.
        run_pytest(
            tally,
            "Odoo tests",
            [
                *(f"--odoo-config={conf}", f"--odoo-database={dbname}", "--odoo-http"),
                *("--odoo-log-level=info", f"--odoo-extra=logfile={test_log}"),
                f"{odoo_env.ADDON}/tests",
            ],
            env=odoo_env.odoo_env(),
        )
    error_lines = [
        line
        for log in (install_log, test_log)
        for line in read_log(log).splitlines()
        if LOG_ERROR_RE.match(line) and KNOWN_PYTEST_ODOO_ERROR not in line
    ]
    if error_lines:
        print(f"{len(error_lines)} ERROR line(s) in the Odoo log (counted as one failure):")
        print("\n".join(error_lines[:20]))
        tally.add("Odoo log", 0, 1)
    # The end-to-end tests drive a real server on the database the addon was just installed on.
    env = dict(odoo_env.odoo_env(), VM_E2E_DB=dbname, VM_E2E_CONF=str(conf))
    if (ROOT / "tests" / "e2e").is_dir():
        run_pytest(tally, "End-to-end tests", ["tests/e2e"], env=env)
    # The gateway contract tests, against a real Evolution API server, on the same database.
    if not gateway_skip_reason():
        run_pytest(tally, "Gateway tests (Evolution API)", ["tests/gateway"], env=env)


def read_log(path):
    return path.read_text(errors="replace") if path.exists() else ""


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
