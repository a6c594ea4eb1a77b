"""parse_events: what any provider sends, signed, comes out storable.

PostgreSQL rejects NUL in text, psycopg2 cannot encode a lone surrogate and an index row holds
about 2,700 bytes: every string of every event parse_events returns is free of the first two and
within its field's limit, and the message itself is kept.
"""

import dataclasses
import hashlib
import hmac
import json
import time
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visionmetrics_whatsapp.providers import PROVIDERS, SIGNATURE_VALID, WebhookPayloadError
from visionmetrics_whatsapp.providers.events import (
    MESSAGE_STATUSES,
    MESSAGE_TYPES,
    SESSION_STATES,
    ConnectionUpdate,
    InboundMessage,
    QrUpdate,
    StatusUpdate,
    UnknownEvent,
    WebhookEvent,
)
from visionmetrics_whatsapp.tools import text
from visionmetrics_whatsapp.tools.text import bounded_id, clean_text
from visionmetrics_whatsapp.tools.token import extract_token

SECRET = "s3cr3t-ção"
FIELD_LIMITS = {
    "session": text.ID_MAX_LENGTH,
    "message_id": text.ID_MAX_LENGTH,
    "contact_identity": text.ID_MAX_LENGTH,
    "recipient": text.ID_MAX_LENGTH,
    "contact_phone": text.PHONE_MAX_LENGTH,
    "phone": text.PHONE_MAX_LENGTH,
    "contact_name": text.NAME_MAX_LENGTH,
    "text": text.TEXT_MAX_LENGTH,
    "error": text.REASON_MAX_LENGTH,
    "reason": text.REASON_MAX_LENGTH,
    "event_type": text.EVENT_TYPE_MAX_LENGTH,
    "qr_code": text.QR_CODE_MAX_LENGTH,
    "qr_image": text.QR_IMAGE_MAX_LENGTH,
    "pairing_code": text.PAIRING_CODE_MAX_LENGTH,
}
ENUMERATIONS = {"message_type": MESSAGE_TYPES, "status": MESSAGE_STATUSES, "state": SESSION_STATES}
EVENT_CLASSES = (InboundMessage, StatusUpdate, ConnectionUpdate, QrUpdate, UnknownEvent)
# what a hostile provider (or a broken relay) puts in a string
HOSTILE = {
    "nul": lambda value: value[:2] + "\x00" + value[2:],
    "surrogate": lambda value: value[:2] + "\ud800" + value[2:] + "\udfff",
    "long": lambda value: value + " " + "x" * 3000,
}
TEXT = "oi vm_token:abc-123 😀"
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=60)
hostile_text = any_text | st.builds(lambda c, n: c * n, st.sampled_from("x\x00\ud800😀"), st.integers(150, 3500))


# ---------------------------------------------------------------------- payloads, as each provider sends them


def sandbox_message(v):
    message = {"id": v.id, "from": v.sender, "name": v.name, "text": v.text, "type": "text", "timestamp": 1760341000}
    return {"event": "message", "session": v.session, "message": message}


def sandbox_status(v):
    status = {"id": v.id, "status": "failed", "timestamp": 1760341005, "error": v.text}
    return {"event": "status", "session": v.session, "status": status}


def sandbox_connection(v):
    return {"event": "connection", "session": v.session, "state": "connected", "phone": v.sender}


def sandbox_unknown(v):
    return {"event": v.event_type, "session": v.session}


def evolution_message(v):
    data = {
        "key": {"remoteJid": v.sender + "@s.whatsapp.net", "fromMe": False, "id": v.id},
        "pushName": v.name,
        "status": "DELIVERY_ACK",
        "message": {"conversation": v.text},
        "messageType": "conversation",
        "messageTimestamp": 1760341100,
    }
    return {"event": "messages.upsert", "instance": v.session, "data": data, "apikey": None}


def evolution_image(v):
    data = {
        "key": {"remoteJid": v.sender + "@lid", "remoteJidAlt": "5511987654321@s.whatsapp.net", "id": v.id},
        "pushName": v.name,
        "message": {"imageMessage": {"caption": v.text, "mimetype": v.name, "fileName": v.id}, "mediaUrl": v.text},
        "messageType": "imageMessage",
        "messageTimestamp": {"low": 1760341000, "high": 0, "unsigned": True},
    }
    return {"event": "messages.upsert", "instance": v.session, "data": data}


def evolution_status(v):
    data = {"keyId": v.id, "remoteJid": v.sender + "@s.whatsapp.net", "status": "READ"}
    return {"event": "messages.update", "instance": v.session, "data": data}


def evolution_connection(v):
    data = {"state": "close", "statusReason": v.text, "wuid": v.sender + "@s.whatsapp.net"}
    return {"event": "connection.update", "instance": v.session, "data": data}


def evolution_qr(v):
    qrcode = {"code": v.id, "base64": "data:image/png;base64," + v.text, "pairingCode": v.name}
    return {"event": "qrcode.updated", "instance": v.session, "data": {"qrcode": qrcode}}


def evolution_unknown(v):
    return {"event": v.event_type, "instance": v.session, "data": {}}


def waha_message(v):
    payload = {
        "id": v.id,
        "timestamp": 1667561485,
        "from": v.sender + "@c.us",
        "fromMe": False,
        "body": v.text,
        "hasMedia": False,
        "_data": {"notifyName": v.name, "type": "chat"},
    }
    return {"event": "message", "session": v.session, "engine": "WEBJS", "payload": payload}


def waha_image(v):
    payload = {
        "id": v.id,
        "from": v.sender + "@c.us",
        "body": v.text,
        "hasMedia": True,
        "media": {"url": "http://waha/" + v.text, "mimetype": "image/jpeg", "filename": v.name, "error": v.text},
        "_data": {"pushName": v.name, "type": "image"},
    }
    return {"event": "message", "session": v.session, "payload": payload}


def waha_status(v):
    payload = {"id": v.id, "ack": -1, "ackName": "ERROR", "to": v.sender + "@c.us"}
    return {"event": "message.ack", "session": v.session, "payload": payload}


def waha_connection(v):
    return {
        "event": "session.status",
        "session": v.session,
        "me": {"id": v.sender + "@c.us"},
        "payload": {"status": "WORKING"},
    }


def waha_unknown(v):
    return {"event": v.event_type, "session": v.session, "payload": {}}


def cloud_envelope(v, value, field="messages"):
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": v.session}, **value}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA1", "changes": [{"field": field, "value": value}]}],
    }


def cloud_message(v):
    message = {"from": v.sender, "id": v.id, "timestamp": "1749416383", "type": "text", "text": {"body": v.text}}
    return cloud_envelope(v, {"contacts": [{"profile": {"name": v.name}, "wa_id": v.sender}], "messages": [message]})


def cloud_image(v):
    image = {"id": v.id, "caption": v.text, "mime_type": v.name, "sha256": v.text, "filename": v.name}
    message = {"from_user_id": v.sender, "id": v.id, "timestamp": "1749416383", "type": "image", "image": image}
    return cloud_envelope(v, {"contacts": [{"profile": {"name": v.name}, "user_id": v.sender}], "messages": [message]})


def cloud_status(v):
    error = {"code": 131049, "title": v.text, "error_data": {"details": v.name}}
    status = {"id": v.id, "status": "failed", "timestamp": "1751142888", "recipient_id": v.sender, "errors": [error]}
    return cloud_envelope(v, {"statuses": [status]})


def cloud_unknown(v):
    return cloud_envelope(v, {}, field=v.event_type)


CLOUD = [cloud_message, cloud_image, cloud_status, cloud_unknown]
PAYLOADS = {
    "sandbox": [sandbox_message, sandbox_status, sandbox_connection, sandbox_unknown],
    "evolution": [
        evolution_message,
        evolution_image,
        evolution_status,
        evolution_connection,
        evolution_qr,
        evolution_unknown,
    ],
    "waha": [waha_message, waha_image, waha_status, waha_connection, waha_unknown],
    "meta": CLOUD,
    "dialog360": CLOUD,
}
CASES = [(code, build) for code, builds in sorted(PAYLOADS.items()) for build in builds]


@dataclasses.dataclass
class Values:
    """The strings a payload carries."""

    id: str = "3EB0C767D26A1D35A1"
    sender: str = "5511987654321"
    name: str = "Maria Silva"
    text: str = TEXT
    session: str = "odoo-loja-01"
    event_type: str = "presence.update"

    def spoiled(self, how):
        return Values(*(HOSTILE[how](getattr(self, f.name)) for f in dataclasses.fields(self)))


def signed(code, payload):
    """(provider, body, headers) of a request signed the way ``code`` signs it."""
    if code == "waha":  # WAHA dates its envelope (signed with it) when it sends it
        payload = {"timestamp": int(time.time() * 1000), **payload}
    body = json.dumps(payload).encode()  # ASCII JSON: NUL and lone surrogates travel as \\u escapes
    provider = PROVIDERS[code](webhook_secret=SECRET)
    if code == "sandbox":
        headers = provider.sign(body)
    elif code == "waha":
        headers = {"X-Webhook-Hmac": hmac.new(SECRET.encode(), body, hashlib.sha512).hexdigest()}
    elif code == "meta":
        headers = {"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
    else:
        headers = {"X-VM-Webhook-Secret": SECRET}
    assert provider.verify_webhook(body, headers) == SIGNATURE_VALID
    return provider, body, headers


def receive(code, payload):
    provider, body, headers = signed(code, payload)
    return provider.parse_events(body, headers)


# ---------------------------------------------------------------------- checks


def assert_storable(events):
    """Every string of every event is UTF-8 encodable, has no NUL and is within its limit."""
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, WebhookEvent)
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            if f.name in ENUMERATIONS:
                assert value in ENUMERATIONS[f.name]
            elif isinstance(value, str):
                assert_clean(value, FIELD_LIMITS[f.name])
            elif f.name == "media" and value is not None:
                assert_clean_json(value)
            elif f.name == "raw":
                assert value == {}
        if isinstance(event, InboundMessage | StatusUpdate):
            assert event.message_id
            assert event.timestamp is None or (isinstance(event.timestamp, datetime) and event.timestamp.tzinfo is None)
        if isinstance(event, InboundMessage):
            assert event.contact_identity


def assert_clean(value, limit):
    value.encode("utf-8")  # no lone surrogate
    assert "\x00" not in value
    assert len(value) <= limit, (len(value), limit)


def assert_clean_json(value, depth=0):
    assert depth <= text.JSON_MAX_DEPTH
    if isinstance(value, str):
        assert_clean(value, text.JSON_STRING_MAX_LENGTH)
    elif isinstance(value, dict):
        assert len(value) <= text.JSON_MAX_ITEMS
        for key, child in value.items():
            assert_clean(key, text.JSON_KEY_MAX_LENGTH)
            assert_clean_json(child, depth + 1)
    elif isinstance(value, list):
        assert len(value) <= text.JSON_MAX_ITEMS
        for child in value:
            assert_clean_json(child, depth + 1)
    json.dumps(value, allow_nan=False)


def test_every_string_field_has_a_limit():
    """A string field added to an event without a limit here fails this test."""
    for cls in EVENT_CLASSES:
        for f in dataclasses.fields(cls):
            if "str" in str(f.type):
                assert f.name in FIELD_LIMITS or f.name in ENUMERATIONS, f"{cls.__name__}.{f.name}"


# ---------------------------------------------------------------------- real-shaped payloads, spoiled


@pytest.mark.parametrize("code, build", CASES, ids=[f"{code}-{build.__name__}" for code, build in CASES])
def test_clean_payloads_are_unchanged(code, build):
    """The cleaning costs an ordinary request nothing: parse_events is parse_webhook."""
    provider, body, headers = signed(code, build(Values()))
    events = provider.parse_events(body, headers)
    as_parsed = provider.parse_webhook(body, headers)
    assert events == [dataclasses.replace(e, raw={}) if isinstance(e, UnknownEvent) else e for e in as_parsed]
    assert_storable(events)


@pytest.mark.parametrize("how", sorted(HOSTILE))
@pytest.mark.parametrize("code, build", CASES, ids=[f"{code}-{build.__name__}" for code, build in CASES])
def test_spoiled_payloads_come_out_storable(code, build, how):
    events = receive(code, build(Values().spoiled(how)))
    assert events
    assert_storable(events)


@pytest.mark.parametrize("how", sorted(HOSTILE))
@pytest.mark.parametrize("code", sorted(PAYLOADS))
def test_spoiled_message_is_kept(code, how):
    spoiled = Values().spoiled(how)
    [event] = receive(code, PAYLOADS[code][0](spoiled))
    assert isinstance(event, InboundMessage)
    assert event.text == clean_text(spoiled.text)  # the whole text, cleaned
    assert extract_token(event.text) == "abc-123"  # attribution still works
    assert event.message_id == bounded_id(spoiled.id)
    assert event.session == bounded_id(spoiled.session)
    assert event.contact_name == clean_text(spoiled.name, text.NAME_MAX_LENGTH)
    if how == "long":
        assert len(event.message_id) == len(event.session) == text.ID_MAX_LENGTH
        assert event.contact_name.endswith(text.ELLIPSIS)


@pytest.mark.parametrize("code", sorted(PAYLOADS))
def test_long_ids_deduplicate_and_stay_apart(code):
    """A redelivery of a 3,000-character id maps to the same stored id; another id with the
    same first 3,000 characters maps to another."""
    long_id = "wamid." + "A" * 3000
    first = receive(code, PAYLOADS[code][0](Values(id=long_id + "1")))[0].message_id
    again = receive(code, PAYLOADS[code][0](Values(id=long_id + "1")))[0].message_id
    other = receive(code, PAYLOADS[code][0](Values(id=long_id + "2")))[0].message_id
    assert first == again != other
    assert len(first) == len(other) == text.ID_MAX_LENGTH


@pytest.mark.parametrize("code", sorted(PAYLOADS))
def test_text_over_the_limit_is_cut_visibly(code):
    [event] = receive(code, PAYLOADS[code][0](Values(text=TEXT + " " + "y" * 70_000)))
    assert len(event.text) == text.TEXT_MAX_LENGTH
    assert event.text.startswith(TEXT) and event.text.endswith(text.ELLIPSIS)


@pytest.mark.parametrize("code", sorted(PAYLOADS))
def test_an_id_of_only_control_characters_is_a_payload_error(code):
    provider, body, headers = signed(code, PAYLOADS[code][0](Values(id="\x00\x01")))
    with pytest.raises(WebhookPayloadError):
        provider.parse_events(body, headers)


def test_unusable_values_are_dropped_not_cut():
    """A QR payload or image cut short renders a wrong QR, a cut phone is another number."""
    v = Values(id="2@" + "Q" * 8000, text="A" * (text.QR_IMAGE_MAX_LENGTH + 1), name="ABCD-EFGH")
    [event] = receive("evolution", evolution_qr(v))
    assert (event.qr_code, event.qr_image, event.pairing_code) == (None, None, "ABCD-EFGH")
    [event] = receive("sandbox", sandbox_connection(Values(sender="+5511987654321" + "1" * 20)))
    assert event.phone is None


# ---------------------------------------------------------------------- the events themselves


def test_enumerations_outside_their_vocabulary():
    message = InboundMessage(message_id="m", contact_identity="c", message_type="hologram").sanitized()
    assert message.message_type == "other"
    # no status or state is harmless to guess: the event is not applied
    assert StatusUpdate(session="s", message_id="m", status="exploded").sanitized() == UnknownEvent(
        session="s", event_type="status"
    )
    assert ConnectionUpdate(state="dancing").sanitized() == UnknownEvent(event_type="connection")


@pytest.mark.parametrize(
    "timestamp, kept",
    [
        (datetime(2025, 10, 13, 7, 36, 40), True),
        (datetime(1970, 1, 1), True),
        (datetime(1969, 12, 31, 23, 59), False),
        (datetime(2100, 1, 1, 0, 0, 1), False),
        (datetime(5138, 1, 1), False),
        (datetime(2025, 10, 13, tzinfo=datetime.now().astimezone().tzinfo), False),
        ("2025-10-13", False),
    ],
)
def test_timestamps_within_reason(timestamp, kept):
    message = InboundMessage(message_id="m", contact_identity="c", timestamp=timestamp).sanitized()
    status = StatusUpdate(message_id="m", timestamp=timestamp).sanitized()
    assert message.timestamp == status.timestamp == (timestamp if kept else None)


def test_sanitized_is_a_copy():
    event = InboundMessage(message_id="m\x00", contact_identity="c", media={"url": "u\x00"})
    cleaned = event.sanitized()
    assert (cleaned.message_id, cleaned.media) == ("m", {"url": "u"})
    assert (event.message_id, event.media) == ("m\x00", {"url": "u\x00"})
    assert UnknownEvent(event_type="x", raw={"a": "\x00"}).sanitized().raw == {}


# ---------------------------------------------------------------------- properties


@pytest.mark.parametrize("code, build", CASES, ids=[f"{code}-{build.__name__}" for code, build in CASES])
@FUZZ
@given(values=st.builds(Values, *(hostile_text for _f in dataclasses.fields(Values))))
def test_any_strings_in_real_shaped_payloads(code, build, values):
    provider, body, headers = signed(code, build(values))
    try:
        events = provider.parse_events(body, headers)
    except WebhookPayloadError:
        return
    assert_storable(events)
    for event in events:
        if isinstance(event, InboundMessage) and build.__name__.endswith("_message"):
            assert event.text == clean_text(values.text, text.TEXT_MAX_LENGTH)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("code", sorted(PAYLOADS))
@FUZZ
@given(value=json_values, keys=st.lists(st.sampled_from(["event", "session", "instance", "payload", "data"])))
def test_any_json_either_fails_cleanly_or_comes_out_storable(code, value, keys):
    payload = value if isinstance(value, dict) else {key: value for key in keys}
    provider, body, headers = signed(code, payload)
    try:
        events = provider.parse_events(body, headers)
    except WebhookPayloadError:
        return
    assert_storable(events)
