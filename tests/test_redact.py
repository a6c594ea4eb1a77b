"""What the webhook log keeps of a request (tools/redact.py): allow-listed headers, provider
secrets out of bodies, and bodies that still parse once redacted."""

import json

import pytest

from visionmetrics_whatsapp.providers import get_provider_class
from visionmetrics_whatsapp.providers.evolution import EvolutionProvider
from visionmetrics_whatsapp.tools.redact import (
    CREDENTIAL_NAME,
    HEADERS_MAX_ITEMS,
    LOGGED_HEADERS,
    REDACTED,
    is_logged_header,
    rate_bucket,
    redact_body,
    redact_headers,
)

TOKEN = "B6D711FCDE4D4FD5936544120E713976"


def test_no_logged_header_looks_like_a_credential():
    assert [name for name in LOGGED_HEADERS if CREDENTIAL_NAME.search(name)] == []
    assert all(name == name.lower() for name in LOGGED_HEADERS)


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "X-Custom-Token",
        "X-Client-Secret",
        "X-Api-Key",
        "Apikey",
        "X-VM-Signature",
        "X-Hub-Signature-256",
        "X-Webhook-Hmac",
        "X-Session-Id",
        "X-Whatever",  # not on the list: a name nobody thought of
    ],
)
def test_other_headers_keep_their_name_only(name):
    assert redact_headers({name: "value-123", "Content-Type": "application/json"}) == {
        name: REDACTED,
        "Content-Type": "application/json",
    }


def test_logged_headers_keep_their_value_unless_a_provider_declares_them():
    headers = {"User-Agent": "WAHA/2025.11", "X-Forwarded-For": "203.0.113.7", "X-Webhook-Timestamp": "1"}
    assert redact_headers(headers) == headers
    assert redact_headers(headers, frozenset({"user-agent"}))["User-Agent"] == REDACTED
    assert not is_logged_header("Content-Type", frozenset({"content-type"}))


def test_headers_are_bounded():
    headers = {f"X-Filler-{i}": "v" for i in range(100)}
    headers["User-Agent"] = "u" * 10_000
    kept = redact_headers({"User-Agent": headers.pop("User-Agent"), "N" * 500: "x", **headers})
    assert len(kept) == HEADERS_MAX_ITEMS + 1
    assert len(kept["User-Agent"]) == 512
    assert max(len(name) for name in kept) == 64
    assert kept["…"] == f"{102 - HEADERS_MAX_ITEMS} more headers not stored"


def test_evolution_declares_its_secrets():
    assert EvolutionProvider.secret_body_fields == ("apikey",)
    assert {"x-vm-webhook-secret", "apikey"} <= EvolutionProvider.secret_headers
    for code in ("sandbox", "meta", "waha", "dialog360", "evolution"):
        cls = get_provider_class(code)
        assert isinstance(cls.secret_headers, frozenset) and isinstance(cls.secret_body_fields, tuple)
        assert all(name == name.lower() for name in cls.secret_headers)


@pytest.mark.parametrize(
    "relative",
    [
        "evolution/connection.update.open.json",
        "evolution/connection.update.close-loggedout.json",
        "evolution/messages.upsert.fromMe.json",
        "evolution/messages.upsert.reply-flattened.json",
        "evolution/messages.update.read.json",
        "evolution/qrcode.updated.json",
        "evolution/qrcode.updated.limit-reached.json",
    ],
)
def test_a_redacted_evolution_body_parses_as_the_original(sample, relative):
    body = sample(relative)
    redacted = redact_body(body, EvolutionProvider.secret_body_fields)
    received = json.loads(body)["apikey"]
    assert json.loads(redacted)["apikey"] == (None if received is None else REDACTED)
    provider = EvolutionProvider(external_id="odoo-loja-01")
    assert provider.parse_events(redacted) == provider.parse_events(body)


def test_body_with_the_secret_is_serialized_again_keeping_the_rest():
    body = json.dumps({"event": "messages.upsert", "data": {"text": "Olá, ação!"}, "apikey": TOKEN}).encode()
    redacted = redact_body(body, ("apikey",))
    assert TOKEN.encode() not in redacted
    assert json.loads(redacted) == {"event": "messages.upsert", "data": {"text": "Olá, ação!"}, "apikey": REDACTED}
    assert "Olá, ação!".encode() in redacted, "non-ASCII text kept readable"


def test_bodies_without_a_secret_are_kept_byte_for_byte():
    for body in (
        b'{"event": "x",   "apikey": null}',
        b'{"object": "whatsapp_business_account"}',
        b"[1, 2]",
        b"",
    ):
        assert redact_body(body, ("apikey",)) is body
    assert redact_body(b'{"apikey": "x"}', ()) == b'{"apikey": "x"}'


def test_a_secret_given_twice_is_not_kept_in_either():
    body = b'{"apikey": "' + TOKEN.encode() + b'", "apikey": null}'
    assert TOKEN.encode() not in redact_body(body, ("apikey",))


def test_a_lone_surrogate_is_kept_escaped():
    body = b'{"text": "a\\ud800b", "apikey": "' + TOKEN.encode() + b'"}'
    redacted = redact_body(body, ("apikey",))
    assert TOKEN.encode() not in redacted
    assert json.loads(redacted)["text"] == "a\ud800b"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"apikey": "SECRET", "data": {', b'{"apikey": "[redacted]", "data": {'),
        (b'{"data": {}, "apikey": "SECR', b'{"data": {}, "apikey": "[redacted]"'),
        (b'{"apikey":"SE\\"CRET", "x":', b'{"apikey":"[redacted]", "x":'),
        (b'{"apikey": 12345, "x":', b'{"apikey": "[redacted]", "x":'),
        (b'{"apikey": null, "x":', b'{"apikey": null, "x":'),
    ],
)
def test_secrets_in_a_body_that_is_not_json(body, expected):
    assert redact_body(body, ("apikey",)) == expected


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same subscriber
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("not an address", "not an address"),
        (None, ""),
    ],
)
def test_rate_buckets(address, bucket):
    assert rate_bucket(address) == bucket
