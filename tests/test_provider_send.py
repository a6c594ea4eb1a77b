"""Sending with each provider: the HTTP request that leaves (method, path, headers, body) and how
its answers are read, mocked at the transport with ``responses``."""

import json

import pytest
import requests
import responses
from responses import matchers

from visionmetrics_whatsapp.providers import (
    OutboundMedia,
    WhatsAppProviderError,
    WhatsAppProviderOutcomeUnknownError,
    WhatsAppProviderRetryableError,
    get_provider_class,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 16
IMAGE = OutboundMedia(kind="image", mimetype="image/png", filename="foto.png", content=PNG)
PDF = OutboundMedia(kind="document", mimetype="application/pdf", filename="preço.pdf", content=b"%PDF-1.4")
VOICE = OutboundMedia(kind="audio", mimetype="audio/ogg", filename="voice.ogg", content=b"OggS")


def adapter(code, **kwargs):
    return get_provider_class(code)(**kwargs)


def meta():
    return adapter("meta", api_key="EAAG-token", external_id="1234567890")


def body(call):
    return json.loads(call.request.body)


# ---------------------------------------------------------------------- Cloud API


@responses.activate
def test_meta_text_is_the_cloud_api_request():
    responses.post(
        "https://graph.facebook.com/v21.0/1234567890/messages",
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"wa_id": "5511987654321"}],
            "messages": [{"id": "wamid.X"}],
        },
        match=[
            matchers.header_matcher({"Authorization": "Bearer EAAG-token", "Content-Type": "application/json"}),
            matchers.json_params_matcher(
                {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": "5511987654321",
                    "type": "text",
                    "text": {"body": "Olá 👋", "preview_url": False},
                }
            ),
        ],
    )
    assert meta().send_message("5511987654321", "Olá 👋") == "wamid.X"


@responses.activate
def test_meta_media_is_uploaded_then_sent_by_id():
    responses.post("https://graph.facebook.com/v21.0/1234567890/media", json={"id": "MEDIA-9"})
    responses.post("https://graph.facebook.com/v21.0/1234567890/messages", json={"messages": [{"id": "wamid.D"}]})
    assert meta().send_message("+5511987654321", "Tabela", PDF) == "wamid.D"
    upload, send = responses.calls
    assert upload.request.headers["Authorization"] == "Bearer EAAG-token"
    assert upload.request.headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="messaging_product"\r\n\r\nwhatsapp' in upload.request.body
    assert b'name="type"\r\n\r\napplication/pdf' in upload.request.body
    assert b"%PDF-1.4" in upload.request.body
    assert body(send)["type"] == "document"
    assert body(send)["document"] == {"id": "MEDIA-9", "caption": "Tabela", "filename": "preço.pdf"}


@responses.activate
def test_meta_media_by_link_and_audio_without_caption():
    responses.post("https://graph.facebook.com/v21.0/1234567890/messages", json={"messages": [{"id": "wamid.A"}]})
    linked = OutboundMedia(kind="image", mimetype="image/png", filename="a.png", url="https://cdn.example/a.png")
    meta().send_message("5511987654321", "Veja", linked)
    meta().send_message("5511987654321", "ignored", VOICE.__class__(**{**VOICE.__dict__, "url": "https://x/v.ogg"}))
    first, second = (body(call) for call in responses.calls)
    assert first["image"] == {"link": "https://cdn.example/a.png", "caption": "Veja"}
    assert second["audio"] == {"link": "https://x/v.ogg"}
    assert len(responses.calls) == 2, "no upload for a link"


@responses.activate
def test_dialog360_posts_to_messages_and_media_with_its_key():
    d360 = adapter("dialog360", api_key="D360-key", external_id="1234567890")
    responses.post(
        "https://waba-v2.360dialog.io/media",
        json={"id": "M1"},
        match=[matchers.header_matcher({"D360-API-KEY": "D360-key"})],
    )
    responses.post(
        "https://waba-v2.360dialog.io/messages",
        json={"messages": [{"id": "wamid.360"}]},
        match=[matchers.header_matcher({"D360-API-KEY": "D360-key"})],
    )
    assert d360.send_message("5511987654321", "Oi") == "wamid.360"
    assert d360.send_message("5511987654321", "", IMAGE) == "wamid.360"
    assert body(responses.calls[-1])["image"] == {"id": "M1"}


@responses.activate
def test_cloud_api_errors_keep_the_reason_and_details():
    responses.post(
        "https://graph.facebook.com/v21.0/1234567890/messages",
        status=400,
        json={"error": {"message": "(#131047) Re-engagement message", "error_data": {"details": "Outside 24 h"}}},
    )
    with pytest.raises(WhatsAppProviderError) as error:
        meta().send_message("5511987654321", "Oi")
    assert not isinstance(error.value, WhatsAppProviderRetryableError)
    assert (
        str(error.value) == "Meta WhatsApp Cloud API answered HTTP 400: (#131047) Re-engagement message (Outside 24 h)"
    )


@pytest.mark.parametrize("status", [429, 500, 502, 503])
@responses.activate
def test_provider_refusals_for_now_are_retryable(status):
    responses.post("https://graph.facebook.com/v21.0/1234567890/messages", status=status, json={"error": {}})
    with pytest.raises(WhatsAppProviderRetryableError) as error:
        meta().send_message("5511987654321", "Oi")
    assert not isinstance(error.value, WhatsAppProviderOutcomeUnknownError)


@pytest.mark.parametrize(
    ("exception", "unknown"),
    [
        (requests.ReadTimeout("read timed out"), True),
        (requests.ConnectionError("Connection aborted: RemoteDisconnected"), True),
        (requests.ConnectTimeout("connect timed out"), False),
    ],
)
@responses.activate
def test_network_failures_tell_whether_the_message_may_have_left(exception, unknown):
    responses.post("https://graph.facebook.com/v21.0/1234567890/messages", body=exception)
    with pytest.raises(WhatsAppProviderRetryableError) as error:
        meta().send_message("5511987654321", "Oi")
    assert isinstance(error.value, WhatsAppProviderOutcomeUnknownError) is unknown


@responses.activate
def test_an_answer_without_id_is_an_error():
    responses.post("https://graph.facebook.com/v21.0/1234567890/messages", json={"messages": []})
    with pytest.raises(WhatsAppProviderError, match="did not return a message id"):
        meta().send_message("5511987654321", "Oi")
    with pytest.raises(WhatsAppProviderError, match="cannot send to"):
        meta().send_message("not-a-number", "Oi")


# ---------------------------------------------------------------------- Evolution


def evolution():
    return adapter("evolution", api_base_url="http://evo.test", api_key="evo-key", external_id="loja 1")


@responses.activate
def test_evolution_text_media_and_audio():
    answer = {"key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": True, "id": "3EB0A1"}, "status": "PENDING"}
    key = matchers.header_matcher({"apikey": "evo-key"})
    responses.post("http://evo.test/message/sendText/loja%201", json=answer, match=[key])
    responses.post("http://evo.test/message/sendMedia/loja%201", json=answer, match=[key])
    responses.post("http://evo.test/message/sendWhatsAppAudio/loja%201", json=answer, match=[key])
    ev = evolution()
    assert ev.send_message("5511987654321@s.whatsapp.net", "Oi") == "3EB0A1"
    assert ev.send_message("+5511987654321", "Foto", IMAGE) == "3EB0A1"
    assert ev.send_message("5511987654321", "", VOICE) == "3EB0A1"
    text, media, audio = (body(call) for call in responses.calls)
    assert text == {"number": "5511987654321@s.whatsapp.net", "text": "Oi"}
    assert media == {
        "number": "5511987654321",
        "mediatype": "image",
        "mimetype": "image/png",
        "media": IMAGE.base64(),
        "fileName": "foto.png",
        "caption": "Foto",
    }
    assert audio == {"number": "5511987654321", "audio": "T2dnUw=="}


@responses.activate
def test_evolution_send_without_a_connected_phone_is_a_clean_final_failure():
    """What a real Evolution API 2.3.6 answers when the instance has no WhatsApp session."""
    responses.post(
        "http://evo.test/message/sendText/loja%201",
        status=500,
        json={
            "status": 500,
            "error": "Internal Server Error",
            "response": {"message": "Cannot read properties of undefined (reading 'onWhatsApp')"},
        },
    )
    with pytest.raises(WhatsAppProviderError) as error:
        evolution().send_message("5511987654321", "Oi")
    assert not isinstance(error.value, WhatsAppProviderRetryableError), "retrying cannot connect the phone"
    assert "not connected to WhatsApp" in str(error.value)
    assert "undefined" not in str(error.value)


@responses.activate
def test_evolution_validation_errors_are_flattened():
    responses.post(
        "http://evo.test/message/sendMedia/loja%201",
        status=400,
        json={"status": 400, "error": "Bad Request", "response": {"message": [['instance requires property "media"']]}},
    )
    with pytest.raises(WhatsAppProviderError) as error:
        evolution().send_message("5511987654321", "", PDF)
    assert str(error.value) == 'Evolution API answered HTTP 400: instance requires property "media"'


# ---------------------------------------------------------------------- WAHA


@responses.activate
def test_waha_send_text_image_and_file():
    key = matchers.header_matcher({"X-Api-Key": "waha-key"})
    responses.post("http://waha.test/api/sendText", json={"id": "true_5511987654321@c.us_T"}, match=[key])
    responses.post("http://waha.test/api/sendImage", json={"id": {"_serialized": "true_5511987654321@c.us_I"}})
    responses.post("http://waha.test/api/sendFile", json={"key": {"id": "BAEFILE"}})
    waha = adapter("waha", api_base_url="http://waha.test", api_key="waha-key", external_id="vendas")
    assert waha.send_message("5511987654321", "Oi") == "true_5511987654321@c.us_T"
    assert waha.send_message("5511987654321@c.us", "Foto", IMAGE) == "true_5511987654321@c.us_I"
    assert waha.send_message("5511987654321", "Tabela", PDF) == "BAEFILE"
    text, image, file = (body(call) for call in responses.calls)
    assert text == {"session": "vendas", "chatId": "5511987654321@c.us", "text": "Oi"}
    assert image == {
        "session": "vendas",
        "chatId": "5511987654321@c.us",
        "file": {"mimetype": "image/png", "filename": "foto.png", "data": IMAGE.base64()},
        "caption": "Foto",
    }
    assert file["file"]["filename"] == "preço.pdf" and file["caption"] == "Tabela"


# ---------------------------------------------------------------------- Z-API


@responses.activate
def test_zapi_send_text_image_and_document():
    base = "https://api.z-api.io/instances/INST/token/TOK"
    key = matchers.header_matcher({"Client-Token": "CLIENT"})
    answer = {"zaapId": "Z1", "messageId": "D241XX", "id": "D241XX"}
    responses.post(f"{base}/send-text", json=answer, match=[key])
    responses.post(f"{base}/send-image", json=answer, match=[key])
    responses.post(f"{base}/send-document/pdf", json=answer, match=[key])
    zapi = adapter("zapi", api_key="TOK:CLIENT", external_id="INST")
    assert zapi.send_message("+5544999999999", "Olá") == "D241XX"
    assert zapi.send_message("5544999999999", "Foto", IMAGE) == "D241XX"
    assert zapi.send_message("5544999999999", "", PDF) == "D241XX"
    text, image, document = (body(call) for call in responses.calls)
    assert text == {"phone": "5544999999999", "message": "Olá"}
    assert image == {"phone": "5544999999999", "caption": "Foto", "image": IMAGE.data_url()}
    assert document == {"phone": "5544999999999", "document": PDF.data_url(), "fileName": "preço.pdf"}


# ---------------------------------------------------------------------- sandbox


def test_sandbox_answers_like_a_provider_and_signs_its_status_webhooks():
    sandbox = adapter("sandbox", external_id="sbx-1", webhook_secret="s3cret")
    message_id = sandbox.send_message("5511987654321", "Oi")
    assert message_id.startswith("sbx_") and sandbox.send_message("5511987654321", "", IMAGE) != message_id
    webhooks = sandbox.status_webhooks(message_id, recipient="5511987654321")
    assert [delay > 0 for delay, _body, _headers in webhooks] == [True] * 3
    statuses = []
    for _delay, raw, headers in webhooks:
        assert sandbox.verify_webhook(raw, headers) == "valid"
        [event] = sandbox.parse_events(raw)
        statuses.append((event.kind, event.message_id, event.status, event.session))
    assert statuses == [("status", message_id, s, "sbx-1") for s in ("sent", "delivered", "read")]
    with pytest.raises(WhatsAppProviderError):
        sandbox.send_message("", "Oi")
