"""Meta Cloud API and 360dialog: one Cloud API parser, two authentication schemes, the HTTP calls."""

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
from visionmetrics_whatsapp.providers.dialog360 import Dialog360Provider
from visionmetrics_whatsapp.providers.events import InboundMessage, StatusUpdate, UnknownEvent
from visionmetrics_whatsapp.providers.meta import MetaProvider

GRAPH = "https://graph.facebook.com/v21.0"
D360 = "https://waba-v2.360dialog.io"
PNID = "106540352242922"
HOOK = "https://odoo.example.com/vm_whatsapp/webhook/dialog360/tok"
# reference/provider-apis.md §3.3: samples/meta/text.json signed with "test-app-secret"
TEXT_SIGNATURE = "sha256=a0b920aa238bb2b2ae8a520acc96012071f452329ab312b098e170cea71e3ba5"
NON_ASCII_BODY = '{"text":"Olá, ação! 😀"}'.encode()
NON_ASCII_SHA256 = "sha256=cbaedcc17efd8aae6ac5b24cedb9b8d5e456538697cc7589ba14dd552513e54d"


@pytest.fixture
def meta():
    return MetaProvider(api_key="EAAG-token", external_id=PNID, webhook_secret="test-app-secret")


@pytest.fixture
def d360():
    return Dialog360Provider(api_key="d360-key", external_id=PNID, webhook_secret="hdr-secret", webhook_url=HOOK)


def value_payload(*values, field="messages"):
    entries = [{"id": "WABA1", "changes": [{"field": field, "value": v}]} for v in values]
    return json.dumps({"object": "whatsapp_business_account", "entry": entries}).encode()


def meta_value(pnid=PNID, **content):
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": pnid},
        **content,
    }


# ---------------------------------------------------------------------- signatures and handshake


def test_meta_signature_reference_vector(meta, sample):
    body = sample("meta/text.json")
    assert meta.verify_webhook(body, {"X-Hub-Signature-256": TEXT_SIGNATURE}) == SIGNATURE_VALID
    assert meta.verify_webhook(body, {"x-hub-signature-256": TEXT_SIGNATURE}) == SIGNATURE_VALID
    assert meta.verify_webhook(body.replace(b"color", b"colour"), {"X-Hub-Signature-256": TEXT_SIGNATURE}) == (
        SIGNATURE_INVALID
    )
    assert meta.verify_webhook(body, {"X-Hub-Signature-256": TEXT_SIGNATURE[7:]}) == SIGNATURE_INVALID


def test_meta_signature_non_ascii_missing_and_unset():
    meta = MetaProvider(webhook_secret="s3cr3t")
    assert meta.verify_webhook(NON_ASCII_BODY, {"X-Hub-Signature-256": NON_ASCII_SHA256}) == SIGNATURE_VALID
    assert meta.verify_webhook(NON_ASCII_BODY, {"X-Hub-Signature": NON_ASCII_SHA256}) == SIGNATURE_MISSING
    unset = MetaProvider(webhook_secret=None)
    assert unset.verify_webhook(NON_ASCII_BODY, {"X-Hub-Signature-256": NON_ASCII_SHA256}) == SIGNATURE_INVALID


def test_meta_handshake(meta):
    params = {"hub.mode": "subscribe", "hub.verify_token": "tok-123", "hub.challenge": "1158201444"}
    assert meta.handshake(params, "tok-123") == "1158201444"
    assert meta.handshake({**params, "hub.verify_token": "tok-124"}, "tok-123") is None
    assert meta.handshake({**params, "hub.mode": "unsubscribe"}, "tok-123") is None
    assert meta.handshake(params, "") is None
    assert meta.handshake({"hub.mode": "subscribe", "hub.verify_token": "tok-123"}, "tok-123") is None


def test_d360_secret_header(d360):
    assert d360.verify_webhook(b"{}", {"X-VM-Webhook-Secret": "hdr-secret"}) == SIGNATURE_VALID
    assert d360.verify_webhook(b"{}", {"X-VM-Webhook-Secret": "hdr-secreT"}) == SIGNATURE_INVALID
    assert d360.verify_webhook(b"{}", {"X-Hub-Signature-256": "sha256=00"}) == SIGNATURE_MISSING
    assert Dialog360Provider().verify_webhook(b"{}", {"X-VM-Webhook-Secret": "x"}) == SIGNATURE_INVALID
    assert d360.handshake({"hub.mode": "subscribe", "hub.verify_token": "t", "hub.challenge": "1"}, "t") is None


# ---------------------------------------------------------------------- samples (both providers parse them)


@pytest.mark.parametrize("provider_class", [MetaProvider, Dialog360Provider])
def test_sample_text(provider_class, sample):
    [event] = provider_class().parse_webhook(sample("meta/text.json"))
    assert isinstance(event, InboundMessage)
    assert event.session == PNID
    assert event.message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert (event.contact_identity, event.contact_phone, event.contact_name) == (
        "16505551234",
        "+16505551234",
        "Sheena Nelson",
    )
    assert (event.text, event.message_type, event.media) == ("Does it come in another color?", "text", None)
    assert event.timestamp == datetime(2025, 6, 8, 20, 59, 43)
    assert (event.from_me, event.is_group) == (False, False)


def test_sample_image(meta, sample):
    [event] = meta.parse_webhook(sample("meta/image.json"))
    assert (event.message_type, event.text) == ("image", "Taj Mahal")
    assert event.media["id"] == "1003383421387256"
    assert event.media["mimetype"] == "image/jpeg"
    assert event.media["url"].startswith("https://lookaside.fbsbx.com/")
    assert event.timestamp == datetime(2025, 4, 11, 4, 8, 16)


def test_sample_status_sent_and_failed(meta, sample):
    [sent] = meta.parse_webhook(sample("meta/status.sent.json"))
    assert isinstance(sent, StatusUpdate)
    assert (sent.status, sent.recipient, sent.error) == ("sent", "16505551234", None)
    assert sent.timestamp == datetime(2025, 6, 15, 23, 27, 53)
    [failed] = meta.parse_webhook(sample("meta/status.failed.json"))
    assert failed.status == "failed"
    assert failed.message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA"
    assert failed.error.startswith("131049: This message was not delivered")
    assert "(In order to maintain a healthy ecosystem engagement" in failed.error


# ---------------------------------------------------------------------- realistic payloads


def test_batch_two_entries_with_status_and_messages(meta):
    first = meta_value(
        contacts=[
            {"profile": {"name": "Ana"}, "wa_id": "5511987654321"},
            {"profile": {"name": "Bruno"}, "wa_id": "556492123456"},
        ],
        messages=[
            {
                "from": "5511987654321",
                "id": "wamid.A",
                "timestamp": "1760341000",
                "type": "text",
                "text": {"body": "vm_token:abc"},
            },
            {
                "from": "556492123456",
                "id": "wamid.B",
                "timestamp": "1760341001",
                "type": "reaction",
                "reaction": {"message_id": "wamid.X", "emoji": "👍"},
            },
        ],
    )
    second = meta_value(
        pnid="999000111",
        statuses=[{"id": "wamid.OUT", "status": "read", "timestamp": "1760341002", "recipient_id": "5511987654321"}],
    )
    events = meta.parse_webhook(value_payload(first, second))
    assert [type(e).__name__ for e in events] == ["InboundMessage", "InboundMessage", "StatusUpdate"]
    ana, bruno, status = events
    assert (ana.contact_name, ana.contact_phone, ana.text) == ("Ana", "+5511987654321", "vm_token:abc")
    # a 12-digit Brazilian wa_id (registered before the ninth digit) stays as WhatsApp gives it
    assert (bruno.contact_name, bruno.contact_phone, bruno.message_type, bruno.text) == (
        "Bruno",
        "+556492123456",
        "reaction",
        "👍",
    )
    assert (status.session, status.status, status.message_id) == ("999000111", "read", "wamid.OUT")
    assert ana.session == PNID


def test_contact_without_wa_id_uses_user_id_and_no_phone(meta):
    value = meta_value(
        contacts=[{"profile": {"name": "Carla"}, "user_id": "BR.13491208655302741918"}],
        messages=[
            {
                "from_user_id": "BR.13491208655302741918",
                "id": "wamid.C",
                "timestamp": "1760341000",
                "type": "text",
                "text": {"body": "oi"},
            }
        ],
    )
    [event] = meta.parse_webhook(value_payload(value))
    assert (event.contact_identity, event.contact_phone, event.contact_name) == (
        "BR.13491208655302741918",
        None,
        "Carla",
    )


def test_interactive_location_document_and_unsupported(meta):
    messages = [
        {
            "from": "5511987654321",
            "id": "w1",
            "timestamp": "1",
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Sim"}},
        },
        {
            "from": "5511987654321",
            "id": "w2",
            "timestamp": "1",
            "type": "location",
            "location": {"latitude": -23.5, "longitude": -46.6, "name": "Loja Centro"},
        },
        {
            "from": "5511987654321",
            "id": "w3",
            "timestamp": "1",
            "type": "document",
            "document": {"id": "777", "filename": "pedido.pdf", "mime_type": "application/pdf"},
        },
        {
            "from": "5511987654321",
            "id": "w4",
            "timestamp": "1",
            "type": "unsupported",
            "errors": [{"code": 131051, "title": "Message type unknown"}],
        },
    ]
    events = meta.parse_webhook(value_payload(meta_value(messages=messages)))
    assert [(e.message_type, e.text) for e in events] == [
        ("text", "Sim"),
        ("location", "Loja Centro"),
        ("document", ""),
        ("other", ""),
    ]
    assert events[2].media["filename"] == "pedido.pdf"


def test_message_echo_is_from_me(meta):
    value = meta_value(
        message_echoes=[
            {
                "from": "15550783881",
                "to": "5511987654321",
                "id": "wamid.E",
                "timestamp": "1760341000",
                "type": "text",
                "text": {"body": "Olá!"},
            }
        ]
    )
    [event] = meta.parse_webhook(value_payload(value, field="smb_message_echoes"))
    assert (event.from_me, event.contact_identity, event.contact_phone, event.text) == (
        True,
        "5511987654321",
        "+5511987654321",
        "Olá!",
    )


def test_other_fields_and_objects_are_unknown(meta):
    [event] = meta.parse_webhook(value_payload({"event": "VERIFIED_ACCOUNT"}, field="account_update"))
    assert isinstance(event, UnknownEvent) and event.event_type == "account_update"
    [event] = meta.parse_webhook(b'{"object": "page", "entry": []}')
    assert isinstance(event, UnknownEvent)
    [event] = meta.parse_webhook(value_payload(meta_value(errors=[{"code": 131000, "title": "Something"}])))
    assert isinstance(event, UnknownEvent) and event.session == PNID
    assert meta.parse_webhook(b'{"object": "whatsapp_business_account", "entry": []}') == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"object": "whatsapp_business_account"}',
        b'{"entry": {"id": 1}}',
        b'{"entry": [{"changes": "x"}]}',
        value_payload(meta_value(messages=[{"from": "5511987654321", "type": "text"}])),
        value_payload(meta_value(messages=[{"id": "wamid.X", "type": "text"}])),
        value_payload(meta_value(statuses=[{"status": "read"}])),
    ],
)
def test_malformed_bodies_raise_payload_error(meta, body):
    with pytest.raises(WebhookPayloadError):
        meta.parse_webhook(body)


# ---------------------------------------------------------------------- HTTP: Meta


@responses.activate
def test_meta_create_session_validates_credentials(meta):
    responses.get(
        f"{GRAPH}/{PNID}",
        json={"display_phone_number": "+1 555-078-3881", "verified_name": "Loja Exemplo", "id": PNID},
        match=[
            matchers.header_matcher({"Authorization": "Bearer EAAG-token"}),
            matchers.query_param_matcher({"fields": "display_phone_number,verified_name"}),
        ],
    )
    info = meta.create_session()
    assert (info.external_id, info.state, info.phone, info.message) == (
        PNID,
        "connected",
        "+15550783881",
        "Loja Exemplo",
    )
    assert info.qr_code is None and MetaProvider.uses_qr is False


@responses.activate
def test_meta_bad_token_error_carries_graph_message(meta):
    responses.get(
        f"{GRAPH}/{PNID}",
        status=400,
        json={
            "error": {
                "message": "Invalid OAuth access token - Cannot parse access token",
                "type": "OAuthException",
                "code": 190,
            }
        },
    )
    with pytest.raises(WhatsAppProviderError, match="Invalid OAuth access token") as caught:
        meta.check_connection()
    assert caught.value.status_code == 400


def test_meta_version_is_configurable():
    assert MetaProvider().api_base_url == GRAPH
    assert MetaProvider(api_base_url="https://graph.facebook.com/v25.0/").api_base_url.endswith("/v25.0")


@responses.activate
def test_meta_send_text_and_close(meta):
    responses.post(
        f"{GRAPH}/{PNID}/messages",
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": "5511987654321", "wa_id": "5511987654321"}],
            "messages": [{"id": "wamid.OUT1"}],
        },
        match=[
            matchers.header_matcher({"Authorization": "Bearer EAAG-token"}),
            matchers.json_params_matcher(
                {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": "5511987654321",
                    "type": "text",
                    "text": {"body": "Olá!", "preview_url": False},
                }
            ),
        ],
    )
    assert meta.send_text("+5511987654321", "Olá!") == "wamid.OUT1"
    assert meta.close_session().state == "closed"
    assert len(responses.calls) == 1  # close is a no-op


# ---------------------------------------------------------------------- HTTP: 360dialog


@responses.activate
def test_d360_create_session_registers_webhook(d360):
    responses.post(
        f"{D360}/v1/configs/webhook",
        json={"url": HOOK},
        match=[
            matchers.header_matcher({"D360-API-KEY": "d360-key"}),
            matchers.json_params_matcher({"url": HOOK, "headers": {"X-VM-Webhook-Secret": "hdr-secret"}}),
        ],
    )
    info = d360.create_session()
    assert (info.external_id, info.state) == (PNID, "connected")


@responses.activate
def test_d360_bad_key(d360):
    responses.post(f"{D360}/v1/configs/webhook", status=401, json={"meta": {"success": False}})
    with pytest.raises(WhatsAppProviderError, match="rejected the credentials"):
        d360.create_session()


@responses.activate
def test_d360_status_and_send(d360):
    responses.get(f"{D360}/v1/configs/webhook", json={"url": "https://elsewhere.example.com/hook"})
    info = d360.get_session_status()
    assert info.state == "connected" and "not this integration's URL" in info.message
    responses.post(
        f"{D360}/messages",
        json={"messages": [{"id": "wamid.D1"}]},
        match=[
            matchers.header_matcher({"D360-API-KEY": "d360-key"}),
            matchers.json_params_matcher(
                {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": "5511987654321",
                    "type": "text",
                    "text": {"body": "oi", "preview_url": False},
                }
            ),
        ],
    )
    assert d360.send_text("5511987654321", "oi") == "wamid.D1"
