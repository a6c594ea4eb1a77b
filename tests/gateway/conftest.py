"""Gateway contract tests: the addon on a real Odoo server (the database `make test` installed it
on) against a real Evolution API server, EVOLUTION_API_URL with its global key EVOLUTION_API_KEY.

One integration is connected for the whole module: the addon creates the instance at Evolution
with our webhook, Evolution posts its own webhooks to the real server, the tests read the results
over JSON-RPC and in the database; at the end the instance is deleted at Evolution."""

import os
import secrets
import time

import pytest
import requests
from e2e.conftest import server  # noqa: F401 - the end-to-end tests' Odoo server, on the same database
from e2e.server import Rpc


class Evolution:
    """The Evolution API server as the tests see it: direct calls with the global key."""

    def __init__(self, url, key):
        self.url, self.key = url.rstrip("/"), key

    def call(self, method, path, **kwargs):
        response = requests.request(method, self.url + path, headers={"apikey": self.key}, timeout=30, **kwargs)
        return response.status_code, response.json() if response.content else None

    def instance(self, name):
        """The instance as fetchInstances lists it (with its token), or None."""
        status, data = self.call("GET", "/instance/fetchInstances", params={"instanceName": name})
        return data[0] if status == 200 and data else None

    def state(self, name):
        status, data = self.call("GET", f"/instance/connectionState/{name}")
        return data["instance"].get("state") if status == 200 else status


def wait_for(predicate, timeout=60, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="session", autouse=True)
def evolution():
    """Set up first: without an Evolution server nothing else (Odoo) starts."""
    url, key = os.environ.get("EVOLUTION_API_URL"), os.environ.get("EVOLUTION_API_KEY")
    if not (url and key):
        pytest.skip("gateway tests need EVOLUTION_API_URL and EVOLUTION_API_KEY (a real Evolution API server)")
    try:
        requests.get(url, timeout=10)
    except requests.RequestException as e:
        pytest.fail(f"Evolution API does not answer at {url}: {type(e).__name__}")
    return Evolution(url, key)


@pytest.fixture(scope="session")
def rpc(server):  # noqa: F811 - the imported fixture
    rpc = Rpc(server.url, server.dbname)
    # Evolution posts to the integration's webhook URL, made from web.base.url: this server's.
    previous = rpc("ir.config_parameter", "get_param", "web.base.url")
    rpc("ir.config_parameter", "set_param", "web.base.url", server.url)
    yield rpc
    rpc("ir.config_parameter", "set_param", "web.base.url", previous or "")


@pytest.fixture(scope="session")
def connected(rpc, evolution):
    """An Evolution integration connected as an admin would (action_connect): its id, instance
    name, webhook secret, and the instance token Evolution holds. The instance is deleted at
    Evolution afterwards."""
    webhook_secret = secrets.token_urlsafe(32)
    integration_id = rpc(
        "vm.whatsapp.integration",
        "create",
        {
            "name": "Gateway contract " + secrets.token_hex(3),
            "provider": "evolution",
            "api_base_url": evolution.url,
            "api_key": evolution.key,
            "webhook_secret": webhook_secret,
        },
    )
    action = rpc("vm.whatsapp.integration", "action_connect", [integration_id])
    [integration] = rpc("vm.whatsapp.integration", "read", [integration_id], ["external_id", "webhook_url"])
    name = integration["external_id"]
    try:
        instance = evolution.instance(name) or {}
        yield {
            "id": integration_id,
            "name": name,
            "webhook_url": integration["webhook_url"],
            "webhook_secret": webhook_secret,
            "token": instance.get("token"),
            "action": action,
        }
    finally:
        if name:
            evolution.call("DELETE", f"/instance/delete/{name}")
