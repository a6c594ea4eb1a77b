"""Sandbox provider: sessions without network, its webhook format, signatures and helpers."""

import json
from datetime import datetime

import pytest
import responses

from visionmetrics_whatsapp.providers import (
    SIGNATURE_INVALID,
    SIGNATURE_MISSING,
    SIGNATURE_VALID,
    WebhookPayloadError,
    WhatsAppProviderError,
    get_provider_class,
)
from visionmetrics_whatsapp.providers.events import (
    ConnectionUpdate,
    InboundMessage,
    StatusUpdate,
    UnknownEvent,
)
from visionmetrics_whatsapp.providers.sandbox import SandboxProvider

SECRET = "s3cr3t"
# HMAC-SHA256 of the UTF-8 body below with "s3cr3t", checked with `openssl dgst -sha256 -hmac s3cr3t`
NON_ASCII_BODY = '{"text":"Olá, ação! 😀"}'.encode()
NON_ASCII_SHA256 = "cbaedcc17efd8aae6ac5b24cedb9b8d5e456538697cc7589ba14dd552513e54d"


@pytest.fixture
def provider():
    return SandboxProvider(webhook_secret=SECRET, base_url="https://odoo.example.com/", external_id="sess-1")


def test_registered_under_its_code():
    assert get_provider_class("sandbox") is SandboxProvider
    assert SandboxProvider.uses_qr is True
    assert SandboxProvider.polls_status is False


@responses.activate  # any HTTP call would fail: the sandbox must not use the network
def test_create_session_returns_unguessable_id_and_scan_url(provider):
    first = provider.create_session()
    second = provider.create_session()
    assert first.external_id != second.external_id
    assert len(first.external_id) >= 32
    assert first.state == "qr_ready"
    assert first.qr_code == f"https://odoo.example.com/vm_whatsapp/sandbox/{first.external_id}/scan"
    assert first.expires_in == 60
    assert first.pairing_code is None
    assert len(responses.calls) == 0


def test_create_session_keeps_a_given_id(provider):
    info = provider.create_session(external_id="given-id")
    assert info.external_id == "given-id"
    assert info.qr_code.endswith("/vm_whatsapp/sandbox/given-id/scan")


def test_status_is_unknown_and_close_does_nothing(provider):
    status = provider.get_session_status("abc")
    assert (status.external_id, status.state) == ("abc", None)
    assert provider.close_session("abc").state == "closed"
    assert provider.check_connection() == "Sandbox: no server, always reachable."


def test_send_text_returns_distinct_ids(provider):
    first, second = provider.send_text("+5511987654321", "oi"), provider.send_text("+5511987654321", "oi")
    assert first.startswith("sbx_") and first != second


# ---------------------------------------------------------------------- signatures


def test_signature_known_vector_with_non_ascii_body(provider):
    assert provider.sign(NON_ASCII_BODY)["X-VM-Signature"] == "sha256=" + NON_ASCII_SHA256
    headers = {"X-VM-Signature": "sha256=" + NON_ASCII_SHA256}
    assert provider.verify_webhook(NON_ASCII_BODY, headers) == SIGNATURE_VALID


def test_signature_header_name_is_case_insensitive(provider):
    headers = {"x-vm-signature": "sha256=" + NON_ASCII_SHA256}
    assert provider.verify_webhook(NON_ASCII_BODY, headers) == SIGNATURE_VALID


def test_signature_rejects_tampered_body(provider):
    headers = provider.sign(NON_ASCII_BODY)
    assert provider.verify_webhook(NON_ASCII_BODY.replace(b"Ol", b"Al"), headers) == SIGNATURE_INVALID


def test_signature_rejects_missing_header_and_wrong_prefix(provider):
    assert provider.verify_webhook(NON_ASCII_BODY, {}) == SIGNATURE_MISSING
    assert provider.verify_webhook(NON_ASCII_BODY, {"X-VM-Signature": NON_ASCII_SHA256}) == SIGNATURE_INVALID


def test_signature_fails_closed_without_secret():
    unset = SandboxProvider(webhook_secret=None)
    headers = {"X-VM-Signature": "sha256=" + NON_ASCII_SHA256}
    assert unset.verify_webhook(NON_ASCII_BODY, headers) == SIGNATURE_INVALID
    with pytest.raises(WhatsAppProviderError):
        unset.sign(NON_ASCII_BODY)


def test_signature_wrong_secret_is_invalid():
    other = SandboxProvider(webhook_secret="other")
    headers = {"X-VM-Signature": "sha256=" + NON_ASCII_SHA256}
    assert other.verify_webhook(NON_ASCII_BODY, headers) == SIGNATURE_INVALID


# ---------------------------------------------------------------------- payloads


def test_built_message_round_trips_through_sign_verify_parse(provider):
    body = provider.build_message_payload(
        "sess-1",
        "+5511987654321",
        "Olá vm_token:abc-123",
        name="Maria",
        message_id="m1",
        timestamp=datetime(2025, 10, 13, 7, 38, 20),
    )
    assert isinstance(body, bytes)
    assert provider.verify_webhook(body, provider.sign(body)) == SIGNATURE_VALID
    [event] = provider.parse_webhook(body)
    assert isinstance(event, InboundMessage)
    assert event.session == "sess-1"
    assert event.message_id == "m1"
    assert event.contact_identity == "5511987654321"
    assert event.contact_phone == "+5511987654321"
    assert event.contact_name == "Maria"
    assert event.text == "Olá vm_token:abc-123"
    assert event.message_type == "text"
    assert event.timestamp == datetime(2025, 10, 13, 7, 38, 20)
    assert event.from_me is False and event.is_group is False


def test_built_message_defaults_id_and_timestamp(provider):
    payload = json.loads(provider.build_message_payload("s", "5511987654321", "hi"))
    assert payload["event"] == "message"
    assert payload["message"]["id"].startswith("sbx_")
    assert payload["message"]["timestamp"] > 1_700_000_000


def test_connection_payload_parses_to_connection_update(provider):
    body = provider.build_connection_payload("sess-1", "connected", phone="+5511900000000")
    [event] = provider.parse_webhook(body)
    assert isinstance(event, ConnectionUpdate)
    assert (event.session, event.state, event.phone) == ("sess-1", "connected", "+5511900000000")


def test_status_payload_parses(provider):
    body = provider.build_status_payload("sess-1", "m1", "read", timestamp=1760341005)
    [event] = provider.parse_webhook(body)
    assert isinstance(event, StatusUpdate)
    assert (event.message_id, event.status) == ("m1", "read")
    assert event.timestamp == datetime(2025, 10, 13, 7, 36, 45)


def test_message_type_and_from_me(provider):
    body = json.dumps(
        {
            "event": "message",
            "session": "s",
            "message": {"id": "x", "from": "5511987654321", "type": "image", "from_me": True},
        }
    ).encode()
    [event] = provider.parse_webhook(body)
    assert event.message_type == "image" and event.from_me is True and event.text == ""
    body = body.replace(b'"image"', b'"hologram"')
    assert provider.parse_webhook(body)[0].message_type == "other"


def test_unknown_event_and_unknown_state_are_not_errors(provider):
    [event] = provider.parse_webhook(b'{"event": "typing", "session": "s"}')
    assert isinstance(event, UnknownEvent) and event.event_type == "typing"
    [event] = provider.parse_webhook(b'{"event": "connection", "session": "s", "state": "dancing"}')
    assert isinstance(event, UnknownEvent)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"session": "s"}',
        b'{"event": "message", "message": "hi"}',
        b'{"event": "message", "message": {"from": "5511987654321"}}',
        b'{"event": "message", "message": {"id": "m1"}}',
        b'{"event": "status", "status": {"status": "read"}}',
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_raise_payload_error(provider, body):
    with pytest.raises(WebhookPayloadError):
        provider.parse_webhook(body)


def test_a_message_with_an_ad_referral_carries_it(provider):
    """The sandbox takes a click-to-WhatsApp referral in the Cloud API's shape: ad attribution can
    be tried without a Meta account (make demo does)."""
    referral = {
        "source_id": "120210000000000001",
        "source_url": "https://fb.me/3cr4Wqqkw",
        "source_type": "ad",
        "headline": "Planos 2026",
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
    }
    body = SandboxProvider.build_message_payload("sess-1", "+5511912345678", "Oi", referral=referral)
    (message,) = provider.parse_events(body)
    assert (message.referral.source_id, message.referral.ctwa_clid) == ("120210000000000001", "ARAkLkA8rmlFeiCktEJQ")
    assert message.referral.source_url == "https://fb.me/3cr4Wqqkw"
    (plain,) = provider.parse_events(SandboxProvider.build_message_payload("sess-1", "+5511912345678", "Oi"))
    assert plain.referral is None
    echo = json.loads(body)
    echo["message"]["from_me"] = True
    (mine,) = provider.parse_events(json.dumps(echo).encode())
    assert mine.referral is None, "a message of the business itself comes from no ad"
