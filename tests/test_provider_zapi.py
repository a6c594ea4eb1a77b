"""Z-API: credentials in the path and Client-Token, QR connection, webhooks authenticated by the
secret in their URL, and the payloads of received messages, statuses and connections.

Payloads: tests/samples/zapi/ (copied from the shared samples: the documentation's examples);
the other bodies below are those samples changed the way the Z-API documentation describes.
"""

import json
import logging
import pathlib
from datetime import datetime

import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st
from test_provider_fuzz import FUZZ, check_events, mutate

from visionmetrics_whatsapp.providers import (
    PROVIDERS,
    SIGNATURE_INVALID,
    SIGNATURE_MISSING,
    SIGNATURE_VALID,
    WebhookPayloadError,
    WhatsAppProviderError,
)
from visionmetrics_whatsapp.providers.events import ConnectionUpdate, InboundMessage, StatusUpdate, UnknownEvent
from visionmetrics_whatsapp.providers.zapi import ZapiProvider

SAMPLES = pathlib.Path(__file__).resolve().parent / "samples" / "zapi"
API = "https://api.z-api.io"
INSTANCE = "A20DA9C0183A2D35A260F53F5D2B9244"
TOKEN = "F0E1D2C3B4A5968778695A4B3C2D1E0F"
CLIENT_TOKEN = "Fa1b2c3d4e5f60718293a4b5c6d7e8f9S"
BASE = f"{API}/instances/{INSTANCE}/token/{TOKEN}"
HOOK = "https://odoo.example.com/vm_whatsapp/webhook/zapi/tok"
SECRET = "webhook-secret-Zz9"


def load(name):
    return json.loads((SAMPLES / name).read_text())


def body(payload):
    return json.dumps(payload).encode()


def received(**changes):
    """The documented ReceivedCallback with ``changes`` (a None value removes the key)."""
    payload = {**load("on-message-received.text.json"), **changes}
    return {k: v for k, v in payload.items() if v is not None}


@pytest.fixture
def provider():
    return ZapiProvider(
        api_key=f"{TOKEN}:{CLIENT_TOKEN}", external_id=INSTANCE, webhook_secret=SECRET, webhook_url=HOOK
    )


def test_is_registered_and_described():
    assert PROVIDERS["zapi"] is ZapiProvider
    can = ZapiProvider.capabilities()
    assert can["uses_qr"] and can["registers_webhook"] and can["requires_external_id"] and can["downloads_media"]
    assert not can["requires_api_url"], "the API URL defaults to https://api.z-api.io"
    assert ZapiProvider.webhook_auth == "query"
    assert {"client-token", "z-api-token"} <= ZapiProvider.secret_headers


# ---------------------------------------------------------------------- credentials


@responses.activate
def test_instance_token_in_the_path_and_client_token_in_the_header(provider):
    responses.get(f"{BASE}/status", json=load("status.response.json"))
    assert provider.get_session_status().state == "connected"
    request = responses.calls[0].request
    assert request.headers["Client-Token"] == CLIENT_TOKEN
    assert TOKEN not in str(request.headers)


@responses.activate
def test_instance_token_alone_sends_no_client_token():
    responses.get(f"{BASE}/status", json={"connected": False, "error": "You are not connected."})
    responses.get(f"{BASE}/qr-code/image", json=load("qr-code.response.json"))
    ZapiProvider(api_key=f" {TOKEN} ", external_id=INSTANCE).get_session_status()
    assert "Client-Token" not in responses.calls[0].request.headers


@pytest.mark.parametrize(("api_key", "external_id"), [(None, INSTANCE), (f":{CLIENT_TOKEN}", INSTANCE), (TOKEN, None)])
def test_missing_credentials_say_what_to_set(api_key, external_id):
    with pytest.raises(WhatsAppProviderError, match="instance token"):
        ZapiProvider(api_key=api_key, external_id=external_id).check_connection()


@responses.activate
def test_a_retried_call_does_not_log_the_instance_token(provider, caplog):
    responses.get(f"{BASE}/status", status=502)
    responses.get(f"{BASE}/status", json={"connected": True})
    with caplog.at_level(logging.INFO):
        provider.check_connection()
    assert f"/instances/{INSTANCE}/token/***/status" in caplog.text
    assert TOKEN not in caplog.text


# ---------------------------------------------------------------------- connection


@responses.activate
def test_connect_registers_the_webhooks_with_the_secret_then_shows_the_qr(provider):
    for kind in ("received-delivery", "message-status", "connected", "disconnected"):
        responses.put(f"{BASE}/update-webhook-{kind}", json={"value": True})
    responses.get(f"{BASE}/status", json={"connected": False, "error": "You are not connected."})
    responses.get(f"{BASE}/qr-code/image", json=load("qr-code.response.json"))
    info = provider.create_session()
    registered = [json.loads(call.request.body) for call in responses.calls if call.request.method == "PUT"]
    assert len(registered) == 4
    assert registered[0].keys() == load("update-webhook-received.request.json").keys()
    assert {value["value"] for value in registered} == {f"{HOOK}?vm_secret={SECRET}"}
    assert (info.external_id, info.state, info.expires_in) == (INSTANCE, "qr_ready", 20)
    assert info.qr_image == load("qr-code.response.json")["value"] and info.qr_code is None


@responses.activate
def test_connect_when_already_connected(provider):
    for kind in ("received-delivery", "message-status", "connected", "disconnected"):
        responses.put(f"{BASE}/update-webhook-{kind}", json={"value": True})
    responses.get(f"{BASE}/status", json=load("status.response.json"))
    assert provider.create_session().state == "connected"


@responses.activate
def test_a_qr_payload_that_is_not_an_image_is_rendered_by_us(provider):
    responses.get(f"{BASE}/status", json={"connected": False})
    responses.get(f"{BASE}/qr-code/image", json={"value": "2@abc,def,ghi"})
    info = provider.get_session_status()
    assert (info.qr_code, info.qr_image) == ("2@abc,def,ghi", None)


@responses.activate
def test_no_qr_yet_is_pending_with_the_reason(provider):
    responses.get(f"{BASE}/status", json={"connected": False, "error": "You need to restore the session."})
    responses.get(f"{BASE}/qr-code/image", json={})
    info = provider.get_session_status()
    assert (info.state, info.message) == ("pending", "You need to restore the session.")


@pytest.mark.parametrize("url", ["http://odoo.example.com/vm_whatsapp/webhook/zapi/tok", None])
@responses.activate
def test_connect_refuses_a_webhook_z_api_cannot_call(url):
    provider = ZapiProvider(api_key=TOKEN, external_id=INSTANCE, webhook_secret=SECRET, webhook_url=url)
    with pytest.raises(WhatsAppProviderError, match="HTTPS|webhook URL"):
        provider.create_session()
    assert not responses.calls


@responses.activate
def test_disconnect_and_check_connection(provider):
    responses.get(f"{BASE}/disconnect", json={"value": True})
    responses.get(f"{BASE}/status", json={"connected": False, "error": "You are not connected."})
    assert provider.close_session().state == "closed"
    assert provider.check_connection() == f"Z-API reachable; instance {INSTANCE}: You are not connected."


# ---------------------------------------------------------------------- messages


@responses.activate
def test_send_text(provider):
    responses.post(
        f"{BASE}/send-text",
        json={"zaapId": "3999984263738042930CD6ECDE9VDWSA", "messageId": "D241XXXX732339502B68", "id": "x"},
    )
    assert provider.send_text("+5544999999999", "Olá!") == "D241XXXX732339502B68"
    assert provider.send_text("81896604192873@lid", "Oi") == "D241XXXX732339502B68"
    sent = [json.loads(call.request.body) for call in responses.calls]
    assert sent == [{"phone": "5544999999999", "message": "Olá!"}, {"phone": "81896604192873@lid", "message": "Oi"}]
    with pytest.raises(WhatsAppProviderError, match="cannot send"):
        provider.send_text("not a phone", "x")


@responses.activate
def test_media_is_fetched_without_our_credentials(provider):
    url = "https://storage.z-api.io/instances/x/image.jpeg"
    responses.get(url, body=b"\xff\xd8JPEG", headers={"Content-Type": "image/jpeg"})
    content, mimetype, _name = provider.download_media({"url": url, "mimetype": None})
    assert (content, mimetype) == (b"\xff\xd8JPEG", "image/jpeg")
    assert "Client-Token" not in responses.calls[0].request.headers
    with pytest.raises(WhatsAppProviderError, match="HTTPS"):
        provider.download_media({"url": "http://169.254.169.254/latest"})


# ---------------------------------------------------------------------- webhook authentication


def test_the_secret_in_the_url_authenticates(provider):
    raw = body(received())
    assert provider.verify_webhook(raw, {}, params={"vm_secret": SECRET}) == SIGNATURE_VALID
    assert provider.verify_webhook(raw, {}, params={"vm_secret": SECRET + "x"}) == SIGNATURE_INVALID
    assert provider.verify_webhook(raw, {}, params={"vm_secret": ""}) == SIGNATURE_MISSING
    assert provider.verify_webhook(raw, {}, params={}) == SIGNATURE_MISSING
    assert provider.verify_webhook(raw, {"vm_secret": SECRET, "z-api-token": TOKEN}) == SIGNATURE_MISSING


def test_without_a_secret_nothing_is_valid():
    provider = ZapiProvider(webhook_secret=None)
    assert provider.verify_webhook(b"{}", {}, params={"vm_secret": "anything"}) == SIGNATURE_INVALID


def test_the_secret_is_compared_in_constant_time(provider, monkeypatch):
    import visionmetrics_whatsapp.providers.base as base

    compared = []
    monkeypatch.setattr(base.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or a == b)
    assert provider.verify_webhook(b"{}", {}, params={"vm_secret": SECRET}) == SIGNATURE_VALID
    assert compared == [(SECRET.encode(), SECRET.encode())]


# ---------------------------------------------------------------------- payloads


def test_received_text_sample(provider):
    [event] = provider.parse_events((SAMPLES / "on-message-received.text.json").read_bytes())
    assert isinstance(event, InboundMessage)
    assert (event.session, event.message_id) == (INSTANCE, "A20DA9C0183A2D35A260F53F5D2B9244")
    assert (event.contact_identity, event.contact_phone) == ("5544999999999", "+5544999999999")
    assert (event.contact_name, event.text, event.message_type) == ("name", "teste", "text")
    assert event.timestamp == datetime(2021, 9, 21, 12, 50, 38)
    assert not (event.from_me or event.is_group or event.media)


def test_received_image(provider):
    image = {"imageUrl": "https://storage.z-api.io/x.jpeg", "caption": "Foto vm_token:abc", "mimeType": "image/jpeg"}
    [event] = provider.parse_events(body(received(text=None, image=image)))
    assert (event.message_type, event.text) == ("image", "Foto vm_token:abc")
    assert event.media == {
        "url": image["imageUrl"],
        "mimetype": "image/jpeg",
        "filename": None,
        "caption": image["caption"],
    }


def test_a_lid_chat_is_never_read_as_a_phone_and_from_me_has_no_contact_name(provider):
    [event] = provider.parse_events(body(received(phone="81896604192873@lid", fromMe=True)))
    assert (event.contact_identity, event.contact_phone) == ("81896604192873@lid", None)
    assert event.from_me is True and event.contact_name is None


def test_a_group_message_is_from_its_participant(provider):
    payload = received(phone="120363019502650977-group", isGroup=True, participantPhone="5511987654321")
    [event] = provider.parse_events(body(payload))
    assert (event.contact_identity, event.contact_phone, event.is_group) == ("5511987654321", "+5511987654321", True)
    [lid] = provider.parse_events(body({**payload, "participantPhone": None, "participantLid": "123@lid"}))
    assert (lid.contact_identity, lid.contact_phone) == ("123@lid", None)


def test_message_status(provider):
    payload = {
        "instanceId": INSTANCE,
        "status": "RECEIVED",
        "ids": ["999999999999999999999", "888"],
        "momment": 1632234645000,
        "phoneDevice": 0,
        "phone": "5544999999999",
        "type": "MessageStatusCallback",
        "isGroup": False,
    }
    events = provider.parse_events(body(payload))
    assert [(e.message_id, e.status, e.recipient) for e in events] == [
        ("999999999999999999999", "delivered", "5544999999999"),
        ("888", "delivered", "5544999999999"),
    ]
    assert all(isinstance(e, StatusUpdate) and e.session == INSTANCE for e in events)
    for raw, ours in (("SENT", "sent"), ("READ", "read"), ("PLAYED", "read")):
        assert provider.parse_events(body({**payload, "status": raw}))[0].status == ours
    for mine in ("READ_BY_ME", "READ-SELF"):
        [event] = provider.parse_events(body({**payload, "status": mine}))
        assert isinstance(event, UnknownEvent)


def test_connected_and_disconnected(provider):
    connected = {"type": "ConnectedCallback", "connected": True, "momment": 26151515154, "instanceId": INSTANCE}
    [event] = provider.parse_events(body({**connected, "phone": "5544999999999"}))
    assert isinstance(event, ConnectionUpdate)
    assert (event.session, event.state, event.phone) == (INSTANCE, "connected", "+5544999999999")
    disconnected = {
        "momment": 1580163342,
        "error": "Device has been disconnected",
        "disconnected": True,
        "type": "DisconnectedCallback",
        "instanceId": INSTANCE,
    }
    [event] = provider.parse_events(body(disconnected))
    assert (event.state, event.reason) == ("closed", "Device has been disconnected")


@pytest.mark.parametrize(
    "payload",
    [
        received(notification="GROUP_PARTICIPANT_ADD", text=None),
        received(notification="CALL_VOICE", text=None),
        received(phone="status@broadcast", broadcast=True),
        received(isNewsletter=True),
        {"type": "PresenceChatCallback", "instanceId": INSTANCE, "status": "COMPOSING"},
        {"type": "DeliveryCallback", "instanceId": INSTANCE, "messageId": "x"},
    ],
)
def test_what_is_not_a_message_is_unknown(provider, payload):
    [event] = provider.parse_events(body(payload))
    assert isinstance(event, UnknownEvent) and event.session == INSTANCE


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", body({"instanceId": INSTANCE}), body(received(messageId=None)), body(received(phone=None))],
)
def test_malformed_bodies(provider, raw):
    with pytest.raises(WebhookPayloadError):
        provider.parse_events(raw)


SEEDS = [
    received(),
    received(text=None, image={"imageUrl": "https://x/y.jpg", "caption": "c", "mimeType": "image/jpeg"}),
    received(phone="1@lid", fromMe=True),
    {"instanceId": "i", "status": "READ", "ids": ["a"], "phone": "5544999999999", "type": "MessageStatusCallback"},
    {"type": "ConnectedCallback", "connected": True, "phone": "5544999999999", "instanceId": "i"},
    {"type": "DisconnectedCallback", "error": "e", "disconnected": True, "instanceId": "i"},
]


def test_seeds_emit_only_declared_event_kinds(provider):
    for seed in SEEDS:
        events = provider.parse_webhook(body(seed))
        check_events(events)
        assert {event.kind for event in events} <= ZapiProvider.event_kinds


@FUZZ
@given(data=st.data())
def test_mutated_payloads_raise_only_payload_errors(data):
    seed = data.draw(st.sampled_from(SEEDS))
    try:
        events = ZapiProvider().parse_webhook(body(mutate(seed, data)))
    except WebhookPayloadError:
        return
    check_events(events)
