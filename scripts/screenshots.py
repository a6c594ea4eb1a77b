"""`make screenshots`: PNG screenshots of the addon's screens, taken in headless Chromium from the
demo database (`make demo`), for the user guide and the Apps page.

Each row of PAGES below is one picture: where to go, what to wait for, the window size. Add a row
to add a picture; run `make screenshots` again after a change of the UI. Pictures go to
visionmetrics_whatsapp/static/description/ (the Apps page and the readme fragments link them there).

The server: the one already answering at --url (default http://localhost:$VM_DEMO_PORT, 8069), or,
when none answers, one started here on the demo database (VM_DEMO_DB, default visionmetrics_demo,
with `make demo`'s configuration in .demo/odoo.conf) and stopped at the end.
Chromium: /usr/bin/chromium (or $CHROMIUM), a fresh profile each run, driven through the DevTools
protocol (websocket-client).

    python3 scripts/screenshots.py                 # every page
    python3 scripts/screenshots.py settings lead   # some of them, by name
"""

import argparse
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import websocket
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import odoo_env  # noqa: E402

OUT = odoo_env.ROOT / odoo_env.ADDON / "static" / "description"
DB = os.environ.get("VM_DEMO_DB", "visionmetrics_demo")
PORT = int(os.environ.get("VM_DEMO_PORT", "8069"))
MAX_BYTES = 200_000  # larger PNGs are reduced to 256 colours
DESKTOP = (1280, 800)

# Who logs in: login -> password (the demo database's users).
USERS = {"admin": "admin"}

# One row per picture.
#   name      file name (name.png) and the name to pick it from the command line
#   url       a path of the web client; {record} is replaced by the id of `record`
#   record    optional external id of a record, e.g. for a form: "module.xml_id"; or
#   find      optional (model, domain): the first record found (what make demo made has no xml id)
#   wait_for  CSS selector that must be visible before the picture is taken
#   click     optional CSS selectors clicked in turn once the page shows them (a tab, a button)
#   scroll_to optional CSS selector scrolled into view first
#   login     optional user of USERS (default admin)
#   viewport  optional (width, height), default DESKTOP
PAGES = [
    {
        "name": "settings_whatsapp",
        "url": "/odoo/settings#visionmetrics_whatsapp",
        "wait_for": "#vm_whatsapp_integrations",
        "scroll_to": "[name='visionmetrics_whatsapp']",
    },
    {
        "name": "integration_form",
        "url": "/odoo/action-visionmetrics_whatsapp.vm_whatsapp_integration_action/{record}",
        "record": "visionmetrics_whatsapp.vm_whatsapp_integration_demo_sandbox",
        "wait_for": ".o_form_view .o_field_widget[name='provider']",
    },
    {
        "name": "lead_form",
        "url": "/odoo/action-crm.crm_lead_all_leads/{record}",
        "record": "visionmetrics_whatsapp.crm_lead_demo_token_ana",
        "click": [".o_notebook a.nav-link[name='extra']"],
        "wait_for": ".o_form_view .o_field_widget[name='first_touch_token'] input",
        "scroll_to": ".o_notebook",
    },
    {
        "name": "lead_chat",
        "url": "/odoo/action-crm.crm_lead_all_leads/{record}",
        "find": ("crm.lead", [("contact_name", "=", "Diego Rocha")]),
        "wait_for": ".o_vm_whatsapp_chat .o-mail-Message",
        "viewport": (1280, 1400),
    },
    {
        "name": "conversation_list",
        "url": "/odoo/action-visionmetrics_whatsapp.vm_whatsapp_conversation_action",
        "wait_for": ".o_list_view .o_data_row",
    },
    {
        "name": "conversation_chat",
        "url": "/odoo/action-visionmetrics_whatsapp.vm_whatsapp_conversation_action/{record}",
        "find": ("vm.whatsapp.conversation", [("contact_name", "=", "Ana Souza")]),
        "wait_for": ".o_vm_whatsapp_chat .o-mail-Message",
        "viewport": (1280, 1000),
    },
    {
        "name": "campaign_link",
        "url": "/odoo/action-visionmetrics_whatsapp.vm_whatsapp_link_action/{record}",
        "find": ("vm.whatsapp.link", []),
        "wait_for": ".o_form_view .o_field_widget[name='short_url']",
    },
    {
        "name": "report_conversations",
        "url": "/odoo/action-visionmetrics_whatsapp.vm_whatsapp_conversation_report_action",
        "wait_for": ".o_graph_renderer canvas, .o_pivot",
    },
    {
        "name": "webhook_logs",
        "url": "/odoo/action-visionmetrics_whatsapp.vm_whatsapp_webhook_log_action",
        "wait_for": ".o_list_view .o_data_row",
    },
]


class Odoo:
    """A JSON-RPC session with the server, as one user."""

    def __init__(self, url, db, login, password):
        self.url, self.http = url, requests.Session()
        result = self.call("/web/session/authenticate", db=db, login=login, password=password)
        if not result or not result.get("uid"):
            raise SystemExit(f"Cannot log in to {url} (database {db}) as {login!r}")
        self.session_id = self.http.cookies["session_id"]

    def call(self, path, **params):
        body = {"jsonrpc": "2.0", "method": "call", "params": params}
        answer = self.http.post(self.url + path, json=body, timeout=60).json()
        if answer.get("error"):
            raise SystemExit(f"{path}: {answer['error'].get('data', {}).get('message') or answer['error']}")
        return answer.get("result")

    def find(self, model, domain):
        ids = self.call("/web/dataset/call_kw", model=model, method="search", args=[domain], kwargs={"limit": 1})
        if not ids:
            raise SystemExit(f"No {model} matching {domain} (run make demo first)")
        return ids[0]

    def xmlid_to_id(self, xmlid):
        module, name = xmlid.split(".", 1)
        rows = self.call(
            "/web/dataset/call_kw",
            model="ir.model.data",
            method="search_read",
            args=[[("module", "=", module), ("name", "=", name)], ["res_id"]],
            kwargs={"limit": 1},
        )
        if not rows:
            raise SystemExit(f"No record {xmlid} in the database (is it the demo database?)")
        return rows[0]["res_id"]


class Chromium:
    """Headless Chromium with a fresh profile, one page, driven through the DevTools protocol."""

    def __init__(self):
        binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        self.profile = tempfile.mkdtemp(prefix="vm-whatsapp-chromium-")
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self.proc = subprocess.Popen([binary, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise SystemExit(f"{binary} did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        target = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0

    def send(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait(self, expression, what, timeout=60):
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.25)

    def close(self):
        if getattr(self, "ws", None):
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def server_answers(url):
    try:
        return requests.get(url + "/web/webclient/version_info", timeout=5).status_code < 500
    except requests.RequestException:
        return False


def port_free(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def start_server():
    """Odoo on the demo database; returns (url, process)."""
    conf = odoo_env.ROOT / ".demo" / "odoo.conf"
    if not conf.exists() or not odoo_env.database_exists(odoo_env.db_params(), DB):
        raise SystemExit(f"No demo database {DB!r} (or no .demo/odoo.conf): run `make demo` once first.")
    odoo_cmd, _, _ = odoo_env.find_odoo()
    # the demo's own port when free: Odoo takes the URL an admin logs in at as web.base.url, and
    # the pictures show it (the webhook URL of an integration)
    port = PORT if port_free(PORT) else odoo_env.free_port()
    cmd = [*odoo_cmd, "-c", str(conf), "-d", DB, f"--http-port={port}", "--max-cron-threads=0", "--log-level=warn"]
    proc = subprocess.Popen(cmd, cwd=odoo_env.ROOT, env=odoo_env.odoo_env())  # noqa: S603
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 120
    while not server_answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit("The Odoo server did not start; see its output above.")
        time.sleep(1)
    return url, proc


def save_png(data, path):
    """Write the PNG, reduced to 256 colours when it is over MAX_BYTES; returns its size."""
    image = Image.open(io.BytesIO(data))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    if buffer.tell() > MAX_BYTES:
        buffer = io.BytesIO()
        image.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


def visible(selector):
    """JavaScript: is an element matching the selector shown?"""
    query = f"document.querySelector({json.dumps(selector)})"
    return f"(() => {{ const el = {query}; return !!(el && el.offsetParent); }})()"


def shoot(browser, odoo, url, page):
    width, height = page.get("viewport", DESKTOP)
    browser.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    path = page["url"]
    if "{record}" in path:
        record = odoo.find(*page["find"]) if page.get("find") else odoo.xmlid_to_id(page["record"])
        path = path.format(record=record)
    browser.send("Page.navigate", url=url + path)
    for selector in page.get("click", []):
        browser.wait(visible(selector), selector)
        browser.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
    browser.wait(visible(page["wait_for"]), page["wait_for"])
    if page.get("scroll_to"):
        browser.evaluate(f"document.querySelector({json.dumps(page['scroll_to'])}).scrollIntoView()")
    # nothing loading any more, fonts ready, then a moment for the last renders
    browser.wait("!document.querySelector('.o_loading_indicator, .o_blockUI, .o-skeleton')", "the page to load")
    browser.evaluate("document.fonts.ready.then(() => true)")
    time.sleep(1)
    shot = browser.send("Page.captureScreenshot", format="png")
    target = OUT / f"{page['name']}.png"
    size = save_png(base64.b64decode(shot["data"]), target)
    print(f"  {target.relative_to(odoo_env.ROOT)}  {width}x{height}  {size // 1000} kB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"pages to take (default: all): {', '.join(p['name'] for p in PAGES)}")
    parser.add_argument("--url", default=f"http://localhost:{PORT}", help="a running server on the demo database")
    args = parser.parse_args()
    unknown = set(args.names) - {p["name"] for p in PAGES}
    if unknown:
        parser.error(f"no page named {', '.join(sorted(unknown))}")
    pages = [p for p in PAGES if not args.names or p["name"] in args.names]
    url, server = args.url.rstrip("/"), None
    if not server_answers(url):
        print(f"No server at {url}; starting one on the demo database {DB!r}...", flush=True)
        url, server = start_server()
    browser = None
    try:
        OUT.mkdir(parents=True, exist_ok=True)
        browser = Chromium()
        browser.send("Page.enable")
        browser.send("Network.enable")
        sessions = {}
        for page in pages:
            login = page.get("login", "admin")
            if login not in sessions:
                sessions[login] = Odoo(url, DB, login, USERS[login])
            browser.send("Network.setCookie", name="session_id", value=sessions[login].session_id, url=url)
            shoot(browser, sessions[login], url, page)
    finally:
        if browser:
            browser.close()
        if server:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
