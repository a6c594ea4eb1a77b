"""WAHA: envelope parsing, HMAC-SHA512 + signed-timestamp verification, and the HTTP calls."""

import hashlib
import hmac
import json
from datetime import datetime

import pytest
import responses
from responses import matchers

from visionmetrics_whatsapp.providers import (
    SIGNATURE_INVALID,
    SIGNATURE_MISSING,
    SIGNATURE_VALID,
    WebhookPayloadError,
    WhatsAppProviderError,
)
from visionmetrics_whatsapp.providers.events import (
    ConnectionUpdate,
    InboundMessage,
    StatusUpdate,
    UnknownEvent,
)
from visionmetrics_whatsapp.providers.waha import WahaProvider

API = "http://waha.example.com:3000"
HOOK = "https://odoo.example.com/vm_whatsapp/webhook/waha/tok"
# Test vector from the WAHA docs (events page): this body with key "my-secret-key"
DOC_BODY = b'{"event":"message","session":"default","engine":"WEBJS"}'
DOC_HMAC = (
    "208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8"
    "097c462b2b17a6ce93b6b47a136cf2e78a33a63f6752c2c1631777076153fa89"
)
# HMAC-SHA512 with "s3cr3t" of a non-ASCII body, checked with `openssl dgst -sha512 -hmac s3cr3t`
NON_ASCII_BODY = '{"text":"Olá, ação! 😀"}'.encode()
NON_ASCII_HMAC = (
    "0bb98ec6f059e5a1657b0e2972cf9f78634b61c5275ee956aa03c8c6982e8a58"
    "044212f2acc4d29c69f49fb15f4b67859164da2668293c4171f693f57938f75d"
)
NOW = 1_760_341_000.0


@pytest.fixture
def provider():
    p = WahaProvider(
        api_base_url=API,
        api_key="waha-key",
        external_id="default",
        webhook_secret="my-secret-key",
        webhook_url=HOOK,
    )
    p.now = lambda: NOW
    return p


def envelope(event, payload, session="default", **extra):
    return json.dumps({"event": event, "session": session, "payload": payload, **extra}).encode()


# ---------------------------------------------------------------------- signatures


def signed(provider, payload):
    """A body and the headers WAHA sends with it, signed with the provider's key."""
    body = json.dumps(payload).encode()
    digest = hmac.new(provider.webhook_secret.encode(), body, hashlib.sha512).hexdigest()
    return body, {"X-Webhook-Hmac": digest, "X-Webhook-Hmac-Algorithm": "sha512"}


def dated(offset_seconds=0, **extra):
    return {"id": "evt_01k", "timestamp": int((NOW + offset_seconds) * 1000), "event": "session.status", **extra}


def test_hmac_doc_vector(provider):
    """The docs' vector (an undated body): the HMAC is right, refused only for having no date."""
    verdict, reason = provider.authenticate_webhook(DOC_BODY, {"X-Webhook-Hmac": DOC_HMAC})
    assert (verdict, "no timestamp" in reason) == (SIGNATURE_INVALID, True)
    assert provider.authenticate_webhook(DOC_BODY, {"x-webhook-hmac": DOC_HMAC.upper()}) == (verdict, reason)
    assert provider.authenticate_webhook(DOC_BODY, {"X-Webhook-Hmac": "0" * 128}) == (SIGNATURE_INVALID, None)


def test_hmac_non_ascii_vector():
    p = WahaProvider(webhook_secret="s3cr3t")
    assert p.authenticate_webhook(NON_ASCII_BODY, {"X-Webhook-Hmac": NON_ASCII_HMAC})[1]  # HMAC right, undated
    tampered = NON_ASCII_BODY.replace("😀".encode(), "😁".encode())
    assert p.authenticate_webhook(tampered, {"X-Webhook-Hmac": NON_ASCII_HMAC}) == (SIGNATURE_INVALID, None)


def test_hmac_rejections(provider):
    body, headers = signed(provider, dated())
    assert provider.verify_webhook(body, headers) == SIGNATURE_VALID
    assert provider.verify_webhook(body + b" ", headers) == SIGNATURE_INVALID
    assert provider.verify_webhook(body, {}) == SIGNATURE_MISSING
    assert provider.verify_webhook(body, {"X-Webhook-Hmac": headers["X-Webhook-Hmac"][:64]}) == SIGNATURE_INVALID
    unset = WahaProvider(webhook_secret=None)
    assert unset.verify_webhook(body, headers) == SIGNATURE_INVALID


@pytest.mark.parametrize(
    ("offset_seconds", "expected"),
    [
        (0, SIGNATURE_VALID),
        (-300, SIGNATURE_VALID),
        (300, SIGNATURE_VALID),
        (-305, SIGNATURE_VALID),  # a few seconds of clock skew
        (305, SIGNATURE_VALID),
        (-306, SIGNATURE_INVALID),
        (306, SIGNATURE_INVALID),
        (-2 * 86_400, SIGNATURE_INVALID),
    ],
)
def test_the_signed_timestamp_window(provider, offset_seconds, expected):
    body, headers = signed(provider, dated(offset_seconds))
    assert provider.verify_webhook(body, headers) == expected


def test_a_replay_says_why_whatever_the_timestamp_header(provider):
    body, headers = signed(provider, dated(-2 * 86_400))
    for header in ({}, {"X-Webhook-Timestamp": str(int(NOW * 1000))}, {"X-Webhook-Timestamp": "yesterday"}):
        verdict, reason = provider.authenticate_webhook(body, {**headers, **header})
        assert verdict == SIGNATURE_INVALID
        assert reason.startswith("Replay refused: the request was signed 2 days ago, too old")
    body, headers = signed(provider, dated(3600))
    assert "1 hour ahead" in provider.authenticate_webhook(body, headers)[1]
    # The header is not signed: a stale one does not refuse a fresh body.
    body, headers = signed(provider, dated())
    assert provider.authenticate_webhook(body, {**headers, "X-Webhook-Timestamp": "1"}) == (SIGNATURE_VALID, None)


@pytest.mark.parametrize("stamp", [None, "1760341000000", True, 1e400, 10**400, [1]])
def test_an_undated_body_is_refused(provider, stamp):
    body, headers = signed(provider, {"event": "message", "timestamp": stamp})
    verdict, reason = provider.authenticate_webhook(body, headers)
    assert (verdict, "no timestamp" in reason) == (SIGNATURE_INVALID, True)


def test_default_clock_is_real_time():
    import time

    assert abs(WahaProvider().now() - time.time()) < 5


# ---------------------------------------------------------------------- samples


def test_sample_message_from_me(provider, sample):
    [event] = provider.parse_webhook(sample("waha/message.json"))
    assert isinstance(event, InboundMessage)
    assert event.session == "default"
    assert event.message_id == "true_11111111111@c.us_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert event.from_me is True
    assert event.contact_identity == "11111111111@c.us"
    assert event.contact_phone == "+11111111111"
    assert event.text == "Hi there!"
    assert event.message_type == "text"
    assert event.timestamp == datetime(2022, 11, 4, 11, 31, 25)
    assert event.media is None


def test_sample_message_media(provider, sample):
    [event] = provider.parse_webhook(sample("waha/message.media.json"))
    assert event.message_type == "image"
    assert event.text == "Check this out (caption for the media)!"
    assert event.from_me is False
    assert event.media["url"].endswith("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.jpg")
    assert event.media["mimetype"] == "image/jpeg"
    assert event.media["caption"] == "Check this out (caption for the media)!"


def test_sample_ack(provider, sample):
    [event] = provider.parse_webhook(sample("waha/message.ack.json"))
    assert isinstance(event, StatusUpdate)
    assert (event.message_id, event.status) == (
        "true_11111111111@c.us_4CC5EDD64BC22EBA6D639F2AF571346C",
        "read",
    )


def test_sample_session_status(provider, sample):
    [event] = provider.parse_webhook(sample("waha/session.status.json"))
    assert isinstance(event, ConnectionUpdate)
    # the documentation's "7911111@c.us" is a placeholder, not a possible phone number
    assert (event.session, event.state, event.phone) == ("default", "connected", None)


# ---------------------------------------------------------------------- realistic payloads


def test_inbound_with_notify_name_and_br_12_digits(provider):
    payload = {
        "id": "false_556492123456@c.us_3EB0C0FFEE",
        "timestamp": 1760341000,
        "from": "556492123456@c.us",
        "fromMe": False,
        "to": "5511900000000@c.us",
        "body": "vm_token:abc",
        "hasMedia": False,
        "_data": {"notifyName": "João", "type": "chat"},
    }
    [event] = provider.parse_webhook(envelope("message", payload, timestamp=1760341000123))
    assert event.contact_identity == "556492123456@c.us"
    assert event.contact_phone == "+556492123456"
    assert event.contact_name == "João"
    assert (event.text, event.message_type, event.from_me) == ("vm_token:abc", "text", False)


def test_group_message_and_lid_sender(provider):
    payload = {
        "id": "false_1203630@g.us_AB12_5511912345678@c.us",
        "timestamp": 1760341000,
        "from": "120363025246125486@g.us",
        "participant": "5511912345678@c.us",
        "body": "oi grupo",
    }
    [event] = provider.parse_webhook(envelope("message", payload))
    assert (event.is_group, event.contact_identity, event.contact_phone) == (
        True,
        "5511912345678@c.us",
        "+5511912345678",
    )
    payload = {"id": "false_77@lid_AB13", "timestamp": 1760341000, "from": "77123456789@lid", "body": "oi"}
    [event] = provider.parse_webhook(envelope("message", payload))
    assert (event.contact_identity, event.contact_phone) == ("77123456789@lid", None)


def test_voice_note_without_downloaded_media(provider):
    payload = {
        "id": "false_5511987654321@c.us_V1",
        "timestamp": 1760341000,
        "from": "5511987654321@c.us",
        "body": "",
        "hasMedia": True,
        "media": None,
        "_data": {"type": "ptt"},
    }
    [event] = provider.parse_webhook(envelope("message", payload))
    assert event.message_type == "audio"
    assert event.media["url"] is None and event.media["id"] == "false_5511987654321@c.us_V1"


def test_ack_number_without_name_and_error(provider):
    [delivered] = provider.parse_webhook(envelope("message.ack", {"id": "x1", "ack": 2}, timestamp=1760341005000))
    assert (delivered.status, delivered.timestamp) == ("delivered", datetime(2025, 10, 13, 7, 36, 45))
    [failed] = provider.parse_webhook(envelope("message.ack", {"id": "x2", "ack": -1, "ackName": "ERROR"}))
    assert failed.status == "failed" and failed.error


def test_session_scan_qr_and_unknown(provider):
    [qr] = provider.parse_webhook(envelope("session.status", {"status": "SCAN_QR_CODE"}))
    assert qr.state == "qr_ready"
    [odd] = provider.parse_webhook(envelope("session.status", {"status": "HIBERNATING"}))
    assert isinstance(odd, UnknownEvent)
    [other] = provider.parse_webhook(envelope("presence.update", {"id": "x"}))
    assert isinstance(other, UnknownEvent) and other.event_type == "presence.update"


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'"message"',
        b'{"session": "default"}',
        b'{"event": "message", "payload": []}',
        b'{"event": "message", "payload": {"from": "1@c.us"}}',
        b'{"event": "message", "payload": {"id": "x"}}',
        b'{"event": "message.ack", "payload": {"ack": 3}}',
    ],
)
def test_malformed_bodies_raise_payload_error(provider, body):
    with pytest.raises(WebhookPayloadError):
        provider.parse_webhook(body)


# ---------------------------------------------------------------------- HTTP

WEBHOOK = {
    "url": HOOK,
    "events": ["message.any", "message.ack", "session.status"],
    "hmac": {"key": "my-secret-key"},
    "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 15},
}


@responses.activate
def test_create_session_posts_webhook_config(provider):
    responses.post(
        API + "/api/sessions",
        status=201,
        json={"name": "default", "status": "STARTING", "config": {}, "me": None},
        match=[
            matchers.header_matcher({"X-Api-Key": "waha-key"}),
            matchers.json_params_matcher({"name": "default", "start": True, "config": {"webhooks": [WEBHOOK]}}),
        ],
    )
    info = provider.create_session()
    assert (info.external_id, info.state, info.qr_code) == ("default", "pending", None)


@responses.activate
def test_create_existing_session_updates_starts_and_fetches_qr_and_code(provider):
    responses.post(API + "/api/sessions", status=422, json={"message": "Session 'default' already exists"})
    responses.put(
        API + "/api/sessions/default",
        json={"name": "default", "status": "STOPPED"},
        match=[matchers.json_params_matcher({"name": "default", "config": {"webhooks": [WEBHOOK]}})],
    )
    responses.post(API + "/api/sessions/default/start", json={"name": "default", "status": "SCAN_QR_CODE"})
    responses.get(
        API + "/api/default/auth/qr",
        json={"value": "2@qr-string"},
        match=[matchers.query_param_matcher({"format": "raw"})],
    )
    responses.post(
        API + "/api/default/auth/request-code",
        json={"code": "ABCD-EFGH"},
        match=[matchers.json_params_matcher({"phoneNumber": "5511987654321"})],
    )
    info = provider.create_session(phone="+5511987654321")
    assert (info.state, info.qr_code, info.pairing_code) == ("qr_ready", "2@qr-string", "ABCD-EFGH")
    assert [(c.request.method, c.request.path_url.split("?")[0]) for c in responses.calls] == [
        ("POST", "/api/sessions"),
        ("PUT", "/api/sessions/default"),
        ("POST", "/api/sessions/default/start"),
        ("GET", "/api/default/auth/qr"),
        ("POST", "/api/default/auth/request-code"),
    ]


@responses.activate
def test_status_working_has_phone(provider, sample_json):
    responses.get(
        API + "/api/sessions/default",
        json=sample_json("waha/sessions.get.response.json"),
        match=[matchers.header_matcher({"X-Api-Key": "waha-key"})],
    )
    info = provider.get_session_status()
    assert (info.state, info.phone) == ("connected", "+79111111")


@responses.activate
def test_status_unknown_value_is_pending_with_message(provider):
    responses.get(API + "/api/sessions/default", json={"name": "default", "status": "HIBERNATING"})
    info = provider.get_session_status()
    assert info.state == "pending" and "HIBERNATING" in info.message


@responses.activate
def test_close_session_logs_out(provider):
    responses.post(API + "/api/sessions/default/logout", json={})
    assert provider.close_session().state == "closed"
    assert responses.calls[0].request.headers["X-Api-Key"] == "waha-key"


@responses.activate
def test_unauthorized_is_mapped(provider):
    responses.get(API + "/api/sessions/default", status=401, json={"message": "Unauthorized", "statusCode": 401})
    with pytest.raises(WhatsAppProviderError, match="rejected the credentials") as caught:
        provider.get_session_status()
    assert caught.value.status_code == 401
    assert len(responses.calls) == 1  # 401 is not retried


@responses.activate
def test_send_text_webjs_and_noweb_ids(provider):
    responses.post(
        API + "/api/sendText",
        json={"id": {"_serialized": "true_5511987654321@c.us_3EB0AA"}},
        match=[matchers.json_params_matcher({"session": "default", "chatId": "5511987654321@c.us", "text": "Olá"})],
    )
    assert provider.send_text("+5511987654321", "Olá") == "true_5511987654321@c.us_3EB0AA"
    responses.replace(responses.POST, API + "/api/sendText", json={"key": {"id": "BAE5NOWEB"}})
    assert provider.send_text("120363025246125486@g.us", "hi") == "BAE5NOWEB"
    assert json.loads(responses.calls[1].request.body)["chatId"] == "120363025246125486@g.us"
