"""The Conversions API client (providers/meta_conversions.py): the requests it makes, how it
reads Meta's answers, and which failures are worth retrying."""

import json

import pytest
import requests
import responses

from visionmetrics_whatsapp.providers.dialog360 import Dialog360Provider
from visionmetrics_whatsapp.providers.meta import MetaProvider
from visionmetrics_whatsapp.providers.meta_conversions import (
    MetaApiError,
    MetaApiRetryableError,
    MetaConversionsClient,
    build_event,
)

ROOT = "https://graph.facebook.com"
EVENTS = f"{ROOT}/v21.0/880011/events"
TOKEN = "EAAG-secret-token"


@pytest.fixture
def client():
    return MetaConversionsClient(ROOT, "v21.0", TOKEN)


def test_event_shape():
    event = build_event(
        "Purchase", 1767225600.7, "CLID", event_id="vm-lead-7-Purchase", waba_id=102, value=10.005, currency="BRL"
    )
    assert event == {
        "event_name": "Purchase",
        "event_time": 1767225600,
        "action_source": "business_messaging",
        "messaging_channel": "whatsapp",
        "user_data": {"whatsapp_business_account_id": "102", "ctwa_clid": "CLID"},
        "event_id": "vm-lead-7-Purchase",
        "custom_data": {"value": 10.01, "currency": "BRL"},
    }
    lead = build_event("LeadSubmitted", 1, "CLID")
    assert "custom_data" not in lead and lead["user_data"] == {"ctwa_clid": "CLID"}
    with pytest.raises(MetaApiError, match="click id"):
        build_event("Purchase", 1, "")


@responses.activate
def test_send_events_posts_json_with_the_bearer_token(client):
    responses.add("POST", EVENTS, json={"events_received": 1, "fbtrace_id": "X"})
    body = {"data": [build_event("LeadSubmitted", 1, "CLID")]}
    assert client.send_events("880011", body) == {"events_received": 1, "fbtrace_id": "X"}
    (call,) = responses.calls
    assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body) == body
    assert TOKEN not in call.request.url


@responses.activate
def test_create_dataset(client):
    responses.add("POST", f"{ROOT}/v21.0/102290/dataset", json={"id": "555"})
    assert client.create_dataset("102290", "Acme WhatsApp") == "555"
    assert json.loads(responses.calls[0].request.body) == {"dataset_name": "Acme WhatsApp"}
    responses.replace("POST", f"{ROOT}/v21.0/102290/dataset", json={"id": "not digits"})
    with pytest.raises(MetaApiError, match="without a dataset id"):
        client.create_dataset("102290", "Acme WhatsApp")


@pytest.mark.parametrize("bad", ["", "12a", "../me", "1" * 40, None, "12/../34"])
def test_ids_must_be_digits(client, bad):
    with pytest.raises(MetaApiError, match="digits"):
        client.send_events(bad, {"data": []})
    with pytest.raises(MetaApiError, match="digits"):
        client.create_dataset(bad, "x")


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (500, {"error": {"message": "internal", "code": 1}}, True),
        (503, "<html>down</html>", True),
        (429, {}, True),
        (400, {"error": {"message": "User request limit reached", "code": 17}}, True),
        (400, {"error": {"message": "Calls to this api have exceeded the rate limit", "code": 613}}, True),
        (400, {"error": {"message": "temporary", "code": 999, "is_transient": True}}, True),
        (400, {"error": {"message": "Invalid parameter", "code": 100, "error_subcode": 2804066}}, False),
        (401, {"error": {"message": "Error validating access token", "code": 190}}, False),
        (403, {"error": {"message": "Permissions error", "code": 200}}, False),
        (404, "not found", False),
        (200, {"error": {"message": "hidden in a 200", "code": 100}}, False),
    ],
)
@responses.activate
def test_errors_are_transient_or_permanent(client, status, body, retryable):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.add("POST", EVENTS, status=status, **kwargs)
    with pytest.raises(MetaApiError) as caught:
        client.send_events("880011", {"data": []})
    assert isinstance(caught.value, MetaApiRetryableError) is retryable
    assert f"HTTP {status}" in str(caught.value)
    assert caught.value.answer  # Meta's answer kept for the log
    assert TOKEN not in str(caught.value) + caught.value.answer


@pytest.mark.parametrize(
    ("failure", "retryable"),
    [(requests.Timeout(), True), (requests.ConnectionError(), True), (requests.TooManyRedirects(), False)],
)
@responses.activate
def test_transport_failures(client, failure, retryable):
    responses.add("POST", EVENTS, body=failure)
    with pytest.raises(MetaApiError) as caught:
        client.send_events("880011", {"data": []})
    assert isinstance(caught.value, MetaApiRetryableError) is retryable


@responses.activate
def test_unacknowledged_or_non_json_answers_are_errors(client):
    responses.add("POST", EVENTS, json={"events_received": 0})
    with pytest.raises(MetaApiError, match="did not acknowledge"):
        client.send_events("880011", {"data": []})
    responses.replace("POST", EVENTS, body="OK")
    with pytest.raises(MetaApiError, match="not JSON"):
        client.send_events("880011", {"data": []})


@responses.activate
def test_huge_answers_are_bounded(client):
    responses.add("POST", EVENTS, status=400, json={"error": {"message": "x" * 100_000, "code": 100}})
    with pytest.raises(MetaApiError) as caught:
        client.send_events("880011", {"data": []})
    assert len(caught.value.answer) <= 4000 and len(str(caught.value)) < 600


def test_client_needs_a_token_and_a_sane_address():
    with pytest.raises(MetaApiError, match="token"):
        MetaConversionsClient(ROOT, "v21.0", None)
    with pytest.raises(MetaApiError, match="Invalid Graph API address"):
        MetaConversionsClient("ftp://graph", "v21.0", TOKEN)
    with pytest.raises(MetaApiError, match="Invalid Graph API address"):
        MetaConversionsClient(ROOT, "21/../x", TOKEN)


def test_where_each_provider_sends_conversions():
    assert MetaProvider(api_key="t").graph_api() == (ROOT, "v21.0", "t")
    assert MetaProvider(api_base_url="https://graph.facebook.com/v23.0/", api_key="t").graph_api() == (
        ROOT,
        "v23.0",
        "t",
    )
    assert MetaProvider(api_base_url="http://127.0.0.1:8080", api_key="t").graph_api() == (
        "http://127.0.0.1:8080",
        "v21.0",
        "t",
    )
    # 360dialog's key is not a Graph token: Meta's Graph API, with no token of the provider's
    assert Dialog360Provider(api_key="d360").graph_api() == (ROOT, "v21.0", None)
    assert MetaProvider.capabilities()["sends_conversions"] and Dialog360Provider.capabilities()["sends_conversions"]
