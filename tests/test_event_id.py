"""The provider event id of a request (``webhook_event_id``): what the webhook stores a request
under once per integration, so that a retry or a replay of the same event is not applied twice."""

import json

from visionmetrics_whatsapp.providers import get_provider_class
from visionmetrics_whatsapp.providers.base import EVENT_ID_MAX_LENGTH, event_id_of


def event_id(code, body, external_id=None):
    provider = get_provider_class(code)(external_id=external_id)
    return provider.webhook_event_id(body, provider.parse_events(body))


def test_waha_events_are_known_by_their_envelope_id(sample_json):
    for relative in ("waha/message.json", "waha/session.status.json", "waha/message.ack.json"):
        payload = {"id": "evt_01jz8k3w5v6x7y8z9a0b1c2d3e", **sample_json(relative)}
        assert event_id("waha", json.dumps(payload).encode()) == "evt_01jz8k3w5v6x7y8z9a0b1c2d3e", relative
    without = sample_json("waha/message.json")  # the sample predates the envelope id
    assert event_id("waha", json.dumps(without).encode()) == f"message:{without['payload']['id']}"


def test_meta_messages_and_statuses_are_known_by_their_ids(sample):
    assert event_id("meta", sample("meta/text.json")).startswith("message:wamid.")
    sent = event_id("meta", sample("meta/status.sent.json"))
    failed = event_id("meta", sample("meta/status.failed.json"))
    assert sent.startswith("status:wamid.") and sent.endswith(":sent")
    assert failed.endswith(":failed") and failed != sent


def test_a_batch_is_known_by_all_of_its_ids_in_any_order():
    assert event_id_of("b", "a", "a") == event_id_of("a", "b") == "a,b"
    long = event_id_of(*(f"message:{i:0200d}" for i in range(3)))
    assert long.startswith("sha256:") and len(long) <= EVENT_ID_MAX_LENGTH
    assert event_id_of() is None and event_id_of(None, "") is None
    assert "\x00" not in event_id_of("a\x00b")


def test_evolution_messages_statuses_and_dated_connection_updates(sample):
    message = sample("evolution/messages.upsert.fromMe.json")
    assert event_id("evolution", message) == "message:" + json.loads(message)["data"]["key"]["id"]
    assert event_id("evolution", sample("evolution/messages.update.read.json")).startswith("status:")
    opened = sample("evolution/connection.update.open.json")
    assert event_id("evolution", opened).startswith("sha256:")
    assert event_id("evolution", opened) == event_id("evolution", opened), "the same in Evolution's retries"
    later = json.loads(opened)
    later["date_time"] = "2025-10-13T07:10:02.312Z"
    assert event_id("evolution", json.dumps(later).encode()) != event_id("evolution", opened)
    del later["date_time"]
    assert event_id("evolution", json.dumps(later).encode()) is None, "undated: two identical updates are two events"


def test_connection_updates_without_an_id_have_none():
    body = json.dumps({"event": "connection", "session": "s", "state": "connected"}).encode()
    assert event_id("sandbox", body) is None
    unknown = json.dumps({"event": "presence", "session": "s"}).encode()
    assert event_id("sandbox", unknown) is None
