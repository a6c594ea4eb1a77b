"""parse_webhook and verify_webhook under random and mutated input.

The contract: parse_webhook raises nothing but WebhookPayloadError, and what it returns is always
well-formed normalized events; verify_webhook always answers one of the three verdicts.
"""

import copy
import dataclasses
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visionmetrics_whatsapp.providers import (
    PROVIDERS,
    SIGNATURE_INVALID,
    SIGNATURE_MISSING,
    SIGNATURE_VALID,
    WebhookPayloadError,
)
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
from visionmetrics_whatsapp.tools.text import ID_MAX_LENGTH

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
E164 = re.compile(r"\+[0-9]{6,15}")

EVOLUTION_SEEDS = [
    {
        "event": "messages.upsert",
        "instance": "i1",
        "data": {
            "key": {
                "remoteJid": "123@lid",
                "remoteJidAlt": "5511987654321@s.whatsapp.net",
                "fromMe": False,
                "id": "A1",
                "participant": None,
            },
            "pushName": "Maria",
            "message": {
                "imageMessage": {
                    "caption": "c",
                    "mimetype": "image/jpeg",
                    "fileLength": {"low": 1, "high": 0, "unsigned": True},
                }
            },
            "messageType": "imageMessage",
            "messageTimestamp": {"low": 1760341000, "high": 0, "unsigned": True},
        },
    },
    {
        "event": "messages.upsert",
        "instance": "i1",
        "data": {
            "key": {"remoteJid": "120363@g.us", "participant": "5511912345678@s.whatsapp.net", "id": "G1"},
            "message": {"extendedTextMessage": {"text": "x"}},
            "messageTimestamp": 1760341000,
        },
    },
    {
        "event": "messages.update",
        "instance": "i1",
        "data": {"keyId": "A1", "status": "READ", "remoteJid": "x"},
    },
    {
        "event": "connection.update",
        "instance": "i1",
        "data": {"state": "open", "wuid": "5511900000000@s.whatsapp.net"},
    },
    {"event": "qrcode.updated", "instance": "i1", "data": {"qrcode": {"code": "2@x", "base64": "data:,"}}},
]
WAHA_SEEDS = [
    {
        "event": "message",
        "session": "default",
        "payload": {
            "id": "false_1@c.us_A",
            "timestamp": 1667561485,
            "from": "5511987654321@c.us",
            "fromMe": False,
            "body": "hi",
            "hasMedia": True,
            "media": {"url": "http://w/f.jpg", "mimetype": "image/jpeg"},
            "_data": {"notifyName": "N", "type": "image"},
        },
    },
    {"event": "message.ack", "session": "default", "payload": {"id": "x", "ack": 3, "ackName": "READ"}},
    {
        "event": "session.status",
        "session": "default",
        "me": {"id": "7911111@c.us"},
        "payload": {"status": "WORKING"},
    },
]
CLOUD_SEEDS = [
    {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "W",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "1065"},
                            "contacts": [
                                {"profile": {"name": "S"}, "wa_id": "16505551234"},
                                {"user_id": "BR.1"},
                            ],
                            "messages": [
                                {
                                    "from": "16505551234",
                                    "id": "wamid.1",
                                    "timestamp": "1749416383",
                                    "type": "image",
                                    "image": {"id": "9", "caption": "c", "mime_type": "image/jpeg"},
                                },
                                {
                                    "from_user_id": "BR.1",
                                    "id": "wamid.2",
                                    "timestamp": "1",
                                    "type": "text",
                                    "text": {"body": "b"},
                                },
                            ],
                            "statuses": [
                                {
                                    "id": "wamid.3",
                                    "status": "failed",
                                    "timestamp": "1751142888",
                                    "errors": [{"code": 131049, "title": "t", "error_data": {"details": "d"}}],
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    },
]
SANDBOX_SEEDS = [
    {
        "event": "message",
        "session": "s",
        "message": {
            "id": "m",
            "from": "+5511987654321",
            "name": "N",
            "text": "t",
            "type": "text",
            "timestamp": 1760341000,
        },
    },
    {"event": "status", "session": "s", "status": {"id": "m", "status": "read", "timestamp": 1760341000}},
    {"event": "connection", "session": "s", "state": "connected", "phone": "+5511900000000"},
]
# dialog360 shares meta's parser (asserted below), so fuzzing meta covers both
SEEDS = {"evolution": EVOLUTION_SEEDS, "waha": WAHA_SEEDS, "meta": CLOUD_SEEDS, "sandbox": SANDBOX_SEEDS}

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
# strings that look like what the parsers branch on
tricky_strings = st.sampled_from(
    [
        "",
        "5511987654321@s.whatsapp.net",
        "123@lid",
        "120363@g.us",
        "1@c.us",
        "@",
        "+",
        "+5511987654321",
        "READ",
        "ERROR",
        "open",
        "refused",
        "SCAN_QR_CODE",
        "image/webp",
        "text",
        "image",
        "failed",
        "9" * 40,
        "1e400",
        "NaN",
        "-1",
        "messages.upsert",
        "message",
        "whatsapp_business_account",
        "a:b@s.whatsapp.net",
    ]
)
replacement = json_values | tricky_strings
# objects with the top-level keys the parsers look at, holding anything
envelopes = st.dictionaries(
    st.sampled_from(
        [
            "event",
            "instance",
            "session",
            "data",
            "payload",
            "object",
            "entry",
            "message",
            "status",
            "state",
            "me",
            "messages",
            "statuses",
        ]
    ),
    replacement,
    max_size=5,
)
INSTANCES = {code: cls() for code, cls in PROVIDERS.items()}


def check_events(events):
    """Every returned event is well formed, whatever the input was."""
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, WebhookEvent)
        assert event.session is None or isinstance(event.session, str)
        if isinstance(event, InboundMessage):
            assert isinstance(event.message_id, str) and event.message_id
            assert isinstance(event.contact_identity, str) and event.contact_identity
            assert event.contact_phone is None or E164.fullmatch(event.contact_phone)
            if event.contact_identity.endswith("@lid"):  # a LID is never read as a phone number
                assert event.contact_phone != "+" + event.contact_identity.split("@")[0]
            assert isinstance(event.text, str)
            assert event.message_type in MESSAGE_TYPES
            assert event.timestamp is None or (isinstance(event.timestamp, datetime) and event.timestamp.tzinfo is None)
            assert isinstance(event.from_me, bool) and isinstance(event.is_group, bool)
            assert event.media is None or isinstance(event.media, dict)
        elif isinstance(event, StatusUpdate):
            assert isinstance(event.message_id, str) and event.message_id
            assert event.status in MESSAGE_STATUSES
            assert event.error is None or isinstance(event.error, str)
        elif isinstance(event, ConnectionUpdate):
            assert event.state in SESSION_STATES
            assert event.phone is None or E164.fullmatch(event.phone)
        elif isinstance(event, QrUpdate):
            assert all(v is None or isinstance(v, str) for v in (event.qr_code, event.qr_image, event.pairing_code))
        else:
            assert isinstance(event, UnknownEvent)


def parse(code, body):
    try:
        events = INSTANCES[code].parse_webhook(body)
    except WebhookPayloadError:
        return
    check_events(events)


def mutate(value, data, depth=0):
    """Randomly delete, replace or recurse into the parts of a JSON value."""
    if isinstance(value, dict):
        result = {}
        for key, child in value.items():
            action = data.draw(st.sampled_from(["keep", "keep", "recurse", "recurse", "replace", "delete"]))
            if action == "delete":
                continue
            if action == "replace":
                result[key] = data.draw(replacement)
            else:
                result[key] = mutate(child, data, depth + 1) if action == "recurse" else child
        return result
    if isinstance(value, list):
        items = [mutate(child, data, depth + 1) for child in value]
        if data.draw(st.booleans()):
            items.append(data.draw(replacement))
        return items
    return data.draw(replacement) if data.draw(st.integers(0, 3)) == 0 else value


def test_dialog360_uses_the_meta_parser():
    assert PROVIDERS["dialog360"].parse_webhook is PROVIDERS["meta"].parse_webhook


@pytest.mark.parametrize("code", sorted(SEEDS))
def test_seeds_parse_cleanly(code):
    for seed in SEEDS[code]:
        events = PROVIDERS[code]().parse_webhook(json.dumps(seed).encode())
        check_events(events)
        assert events and not any(isinstance(e, UnknownEvent) for e in events)
        assert {event.kind for event in events} <= PROVIDERS[code].event_kinds, "declared in event_kinds"


@pytest.mark.parametrize("code", sorted(SEEDS))
@FUZZ
@given(body=st.binary(max_size=300))
def test_random_bytes(code, body):
    parse(code, body)


@pytest.mark.parametrize("code", sorted(SEEDS))
@FUZZ
@given(value=json_values | envelopes)
def test_random_json(code, value):
    parse(code, json.dumps(value).encode())


@pytest.mark.parametrize("code", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutated_payloads(code, data):
    seed = data.draw(st.sampled_from(SEEDS[code]))
    parse(code, json.dumps(mutate(seed, data)).encode())


@pytest.mark.parametrize("code", sorted(SEEDS))
def test_hostile_json_edge_cases(code):
    for body in (
        b"[" * 100_000,
        b'{"a":' * 50_000,
        b"NaN",
        b'{"event": Infinity}',
        b"1" * 5000,
        b"\xef\xbb\xbf{}",
    ):
        parse(code, body)


@pytest.mark.parametrize("code", sorted(PROVIDERS))
@FUZZ
@given(
    body=st.binary(max_size=100),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "X-VM-Signature",
                "X-VM-Webhook-Secret",
                "X-Webhook-Hmac",
                "X-Webhook-Timestamp",
                "X-Hub-Signature-256",
                "x-webhook-hmac",
                "Other",
            ]
        ),
        st.text(max_size=140),
        max_size=4,
    ),
    secret=st.none() | st.text(max_size=20),
)
def test_verify_always_answers_a_verdict(code, body, headers, secret):
    verdict = PROVIDERS[code](webhook_secret=secret).verify_webhook(body, headers)
    assert verdict in (SIGNATURE_VALID, SIGNATURE_INVALID, SIGNATURE_MISSING)
    if not secret:
        assert verdict != SIGNATURE_VALID


# Every webhook sample of tests/samples, each of its values (and containers) replaced in turn by
# each hostile value: the class of input a provider's parser meets when a field changes type.
WEBHOOK_SAMPLES = {
    "evolution": [
        "messages.upsert.*.json",
        "connection.update.*.json",
        "qrcode.updated*.json",
        "messages.update.*.json",
    ],
    "meta": ["text*.json", "image.json", "status.*.json", "../360dialog/text.referral.json"],
    "waha": ["message*.json", "session.status.json"],
    "zapi": ["on-message-received*.json"],
}
HOSTILE = [None, True, -1, 10**40, 1.5, "", "x" * 3000, "a\x00b", "\ud800", [], {}, [{}], {"": None}]
SAMPLES = Path(__file__).resolve().parent / "samples"


def value_paths(value, path=()):
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from value_paths(child, (*path, key))


def with_value(document, path, new):
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return document


def clean_strings(value):
    """No NUL and no lone surrogate in any string of a sanitized event."""
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return all(clean_strings(k) and clean_strings(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(clean_strings(v) for v in value)
    if dataclasses.is_dataclass(value):
        return all(clean_strings(getattr(value, f.name)) for f in dataclasses.fields(value))
    return True


@pytest.mark.parametrize("code", sorted(WEBHOOK_SAMPLES))
def test_every_value_of_every_sample_replaced_by_a_hostile_one(code):
    """parse_events (the parse and its sanitizing, what the route and the inbox call) answers
    well-formed, clean events or WebhookPayloadError, whatever any one value of a real payload
    becomes."""
    files = sorted({path for pattern in WEBHOOK_SAMPLES[code] for path in (SAMPLES / code).glob(pattern)})
    assert files
    cases = 0
    for path in files:
        document = json.loads(path.read_text(encoding="utf-8"))
        for where in list(value_paths(document))[1:]:
            for new in HOSTILE:
                body = json.dumps(with_value(document, where, new)).encode()
                try:
                    events = INSTANCES[code].parse_events(body, {})
                except WebhookPayloadError:
                    continue
                except Exception as e:  # noqa: BLE001 - the failure names the sample and the value
                    pytest.fail(f"{path.name} {where!r} = {new!r:.40}: {type(e).__name__}: {e}")
                check_events(events)
                assert clean_strings(events), (path.name, where, new)
                for event in events:
                    assert len(getattr(event, "message_id", "") or "") <= ID_MAX_LENGTH
                cases += 1
    assert cases > 100
