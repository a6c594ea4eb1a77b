"""The provider registry: every adapter is registered, describes itself, and agrees with the
event vocabulary the inbox applies (vm.whatsapp.inbox.HANDLERS, read from its source here so
that no Odoo is needed)."""

import ast
import logging
import pathlib

import pytest
import responses

from visionmetrics_whatsapp import providers
from visionmetrics_whatsapp.providers import (
    CAPABILITIES,
    PROVIDERS,
    WhatsAppProvider,
    get_provider_class,
    provider_classes,
    register,
    selection,
)
from visionmetrics_whatsapp.providers.base import WEBHOOK_AUTHS
from visionmetrics_whatsapp.providers.events import EVENT_KINDS

ADDON = pathlib.Path(providers.__file__).resolve().parent.parent
CODES = sorted(PROVIDERS)


def inbox_handlers():
    """The keys of HANDLERS in models/vm_whatsapp_inbox.py."""
    tree = ast.parse((ADDON / "models" / "vm_whatsapp_inbox.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "HANDLERS" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("HANDLERS not found in vm_whatsapp_inbox.py")


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def test_every_adapter_module_is_registered():
    modules = {path.stem for path in (ADDON / "providers").glob("*.py")}
    adapters = {cls for cls in all_subclasses(WhatsAppProvider) if cls.code}
    assert adapters == set(PROVIDERS.values())
    assert {cls.__module__.rsplit(".", 1)[-1] for cls in adapters} <= modules
    assert {"sandbox", "evolution", "waha", "meta", "dialog360"} <= set(PROVIDERS)


def test_selection_lists_every_registered_provider_once_in_order():
    codes = [code for code, _label in selection()]
    assert sorted(codes) == CODES
    assert len(codes) == len(set(codes))
    assert codes[0] == "sandbox", "the default provider comes first"
    assert [cls.code for cls in provider_classes()] == codes
    assert all(isinstance(label, str) and label for _code, label in selection())
    assert dict(selection())["sandbox"] == "Sandbox (no account needed)"
    assert dict(selection())["meta"] == get_provider_class("meta").provider_name


def test_event_kinds_agree_with_the_inbox_handlers():
    handlers = inbox_handlers()
    assert handlers == EVENT_KINDS, "every event kind has a handler, and every handler an event kind"
    for cls in PROVIDERS.values():
        assert cls.event_kinds, f"{cls.code} declares the event kinds it emits"
        assert cls.event_kinds <= handlers | {"unknown"}, cls.code


@pytest.mark.parametrize("code", CODES)
def test_a_provider_describes_itself(code):
    cls = PROVIDERS[code]
    assert cls.code == code and cls.provider_name
    assert cls.webhook_auth in WEBHOOK_AUTHS
    assert isinstance(cls.secret_headers, frozenset)
    assert all(name == name.lower() for name in cls.secret_headers)
    assert isinstance(cls.secret_body_fields, tuple)
    capabilities = cls.capabilities()
    assert set(capabilities) == set(CAPABILITIES)
    assert all(isinstance(value, bool) for value in capabilities.values())


@pytest.mark.parametrize("code", CODES)
def test_capabilities_match_what_the_class_implements(code):
    cls = PROVIDERS[code]
    can = cls.capabilities()
    assert not can["uses_pairing_code"] or can["uses_qr"]
    assert not can["requires_api_url"] or can["uses_api_url"]
    assert not can["requires_external_id"] or can["uses_external_id"]
    assert can["downloads_media"] == (cls.download_media is not WhatsAppProvider.download_media)
    assert can["uses_verify_token"] == (cls.handshake is not WhatsAppProvider.handshake)
    assert can["simulates_messages"] == all(hasattr(cls, name) for name in ("build_message_payload", "sign"))
    assert can["sends_media"] == (cls.send_media is not WhatsAppProvider.send_media)
    assert cls.send_text is not WhatsAppProvider.send_text, "every provider sends text"


def test_capabilities_of_known_providers():
    """What the integration form shows and requires, per provider."""
    sandbox, evolution, meta = (PROVIDERS[c].capabilities() for c in ("sandbox", "evolution", "meta"))
    assert sandbox["uses_qr"] and sandbox["simulates_messages"] and not sandbox["polls_status"]
    assert not (sandbox["uses_api_url"] or sandbox["uses_api_key"] or sandbox["uses_external_id"])
    assert evolution["requires_api_url"] and not evolution["requires_external_id"]
    assert evolution["registers_webhook"] and evolution["uses_pairing_code"]
    assert meta["uses_api_url"] and not meta["requires_api_url"], "Meta has a default Graph API URL"
    assert meta["requires_external_id"] and meta["uses_verify_token"] and not meta["generates_webhook_secret"]
    assert PROVIDERS["dialog360"].capabilities()["registers_webhook"]


def test_register_refuses_a_provider_that_does_not_describe_itself():
    class Nameless(WhatsAppProvider):
        code = "nameless"

    class Taken(WhatsAppProvider):
        code, provider_name = "sandbox", "Another sandbox"

    class OddEvents(WhatsAppProvider):
        code, provider_name = "odd_events", "Odd"
        event_kinds = frozenset({"message", "typing"})

    class OddAuth(WhatsAppProvider):
        code, provider_name, webhook_auth = "odd_auth", "Odd", "trust-me"

    with pytest.raises(TypeError):
        register(Nameless)
    with pytest.raises(ValueError, match="taken"):
        register(Taken)
    with pytest.raises(TypeError, match="typing"):
        register(OddEvents)
    with pytest.raises(TypeError, match="webhook_auth"):
        register(OddAuth)
    assert PROVIDERS["sandbox"].__name__ == "SandboxProvider"
    assert not {"nameless", "odd_events", "odd_auth"} & set(PROVIDERS)


@pytest.mark.parametrize("code", CODES)
def test_verify_webhook_takes_the_query_parameters(code):
    """The webhook route passes the URL's query parameters to every provider; without a secret
    nothing is valid, whatever the request holds."""
    verdict = PROVIDERS[code]().verify_webhook(b"{}", {}, params={"vm_secret": "x"})
    assert verdict != "valid"


@responses.activate
def test_a_retried_call_is_logged_without_what_its_path_must_hide(caplog):
    class TokenInPath(WhatsAppProvider):  # not registered
        code, provider_name = "token_in_path", "Token in path"

        def _path_for_log(self, path):
            return path.replace("s3cr3t", "***")

    provider = TokenInPath(api_base_url="https://gw.example.com")
    responses.get("https://gw.example.com/token/s3cr3t/status", status=503)
    responses.get("https://gw.example.com/token/s3cr3t/status", json={"ok": True})
    with caplog.at_level(logging.INFO, logger="visionmetrics_whatsapp.providers.base"):
        assert provider._request("GET", "/token/s3cr3t/status") == {"ok": True}
    assert "retrying GET /token/***/status" in caplog.text
    assert "s3cr3t" not in caplog.text
