"""End-to-end tests: a real Odoo server (2 workers) on the database `make test` installed the
addon on; webhooks posted over HTTP, results read over JSON-RPC."""

import secrets

import pytest

from .server import OdooServer, Rpc, e2e_settings


@pytest.fixture(scope="session")
def server():
    settings = e2e_settings()
    if not settings:
        pytest.skip("end-to-end tests run from `make test` (VM_E2E_CONF and VM_E2E_DB are not set)")
    odoo = OdooServer(*settings).start()
    yield odoo
    odoo.stop()


@pytest.fixture(scope="session")
def rpc(server):
    return Rpc(server.url, server.dbname)


@pytest.fixture
def sandbox(rpc):
    """A new sandbox integration with a known webhook secret: (id, token, secret, session)."""
    secret = secrets.token_urlsafe(32)
    session = "e2e-" + secrets.token_hex(6)
    integration_id = rpc(
        "vm.whatsapp.integration",
        "create",
        {"name": "E2E sandbox", "provider": "sandbox", "webhook_secret": secret, "external_id": session},
    )
    token = rpc("vm.whatsapp.integration", "read", [integration_id], ["webhook_token"])[0]["webhook_token"]
    return {"id": integration_id, "token": token, "secret": secret, "session": session}
