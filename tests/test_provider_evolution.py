"""Evolution API v2: recorded and realistic webhooks, the secret header, and the HTTP calls."""

import json
import pathlib
from datetime import datetime

import pytest
import requests
import responses
from responses import matchers

from visionmetrics_whatsapp.providers import (
    SIGNATURE_INVALID,
    SIGNATURE_MISSING,
    SIGNATURE_VALID,
    WebhookPayloadError,
    WhatsAppProviderError,
    WhatsAppProviderRetryableError,
    WhatsAppSessionNotFoundError,
)
from visionmetrics_whatsapp.providers.events import (
    ConnectionUpdate,
    InboundMessage,
    QrUpdate,
    StatusUpdate,
    UnknownEvent,
)
from visionmetrics_whatsapp.providers.evolution import EvolutionProvider

API = "https://evolution.example.com"
SECRET = "long-random-secret-ção"
HOOK = "https://odoo.example.com/vm_whatsapp/webhook/evolution/tok123"
# Answers and webhooks of a real Evolution API 2.3.6 server, recorded with curl (tokens redacted)
RECORDED = pathlib.Path(__file__).resolve().parent / "samples" / "evolution"


@pytest.fixture
def provider():
    return EvolutionProvider(
        api_base_url=API + "/",
        api_key="global-key",
        external_id="odoo-loja-01",
        webhook_secret=SECRET,
        webhook_url=HOOK,
    )


def envelope(event, data, instance="odoo-loja-01"):
    return json.dumps({"event": event, "instance": instance, "data": data, "apikey": None}).encode()


def upsert(key, message, **extra):
    data = {
        "key": key,
        "pushName": "Maria",
        "status": "DELIVERY_ACK",
        "message": message,
        "messageType": next(iter(message), "conversation"),
        "messageTimestamp": 1760341000,
        **extra,
    }
    return envelope("messages.upsert", data)


# ---------------------------------------------------------------------- recorded samples


def test_sample_reply_flattened(provider, sample):
    [event] = provider.parse_webhook(sample("evolution/messages.upsert.reply-flattened.json"))
    assert isinstance(event, InboundMessage)
    assert event.session == "odoo-loja-01"
    assert event.message_id == "3EB0A1B2C3D4E5F60002"
    assert event.contact_identity == "5511987654321@s.whatsapp.net"
    assert event.contact_phone == "+5511987654321"
    assert event.contact_name == "Maria Silva"
    assert event.text == "Sim, pode enviar https://exemplo.com.br/pedido/123"
    assert event.message_type == "text"
    assert event.timestamp == datetime(2025, 10, 13, 7, 38, 20)
    assert (event.from_me, event.is_group, event.media) == (False, False, None)


def test_sample_from_me(provider, sample):
    [event] = provider.parse_webhook(sample("evolution/messages.upsert.fromMe.json"))
    assert event.session == "nome-da-instancia"
    assert event.message_id == "3AE99D6A1DBF3F9A0578"
    assert event.from_me is True
    assert event.contact_identity == "558199990003@s.whatsapp.net"
    assert event.contact_phone == "+558199990003"  # a 12-digit Brazilian number, kept as given
    assert event.contact_name is None  # pushName is the business's own name here
    assert event.text == "Texto da mensagem"
    assert event.timestamp == datetime(2025, 11, 22, 0, 25, 3)


def test_sample_messages_update_read(provider, sample):
    [event] = provider.parse_webhook(sample("evolution/messages.update.read.json"))
    assert isinstance(event, StatusUpdate)
    assert (event.session, event.message_id, event.status) == ("odoo-loja-01", "3EB0F00DBABE00000001", "read")
    assert event.recipient == "5511987654321@s.whatsapp.net"
    assert event.error is None


def test_sample_connection_open_and_close(provider, sample):
    [opened] = provider.parse_webhook(sample("evolution/connection.update.open.json"))
    assert isinstance(opened, ConnectionUpdate)
    assert (opened.session, opened.state, opened.phone, opened.reason) == (
        "odoo-loja-01",
        "connected",
        "+5511900000000",
        None,
    )
    [closed] = provider.parse_webhook(sample("evolution/connection.update.close-loggedout.json"))
    assert (closed.state, closed.phone, closed.reason) == ("closed", None, "401")


def test_sample_qrcode_updated(provider, sample):
    [event] = provider.parse_webhook(sample("evolution/qrcode.updated.json"))
    assert isinstance(event, QrUpdate)
    assert event.session == "odoo-loja-01"
    assert event.qr_code.startswith("2@Wq3Yp0cEXAMPLE")
    assert event.qr_image.startswith("data:image/png;base64,iVBOR")
    assert event.pairing_code is None


def test_sample_qrcode_limit_reached_expires_the_session(provider, sample):
    [event] = provider.parse_webhook(sample("evolution/qrcode.updated.limit-reached.json"))
    assert isinstance(event, ConnectionUpdate)
    assert event.state == "expired"
    assert event.reason == "QR code limit reached, please login again"


# ---------------------------------------------------------------------- real-world shapes


def test_lid_contact_takes_phone_from_remote_jid_alt(provider):
    key = {
        "remoteJid": "123456789012345@lid",
        "remoteJidAlt": "5511987654321@s.whatsapp.net",
        "addressingMode": "lid",
        "fromMe": False,
        "id": "3EB0LID0001",
    }
    [event] = provider.parse_webhook(upsert(key, {"conversation": "oi vm_token:abc"}))
    assert event.contact_identity == "123456789012345@lid"
    assert event.contact_phone == "+5511987654321"
    assert event.text == "oi vm_token:abc"


def test_lid_contact_without_alt_has_no_phone(provider):
    key = {"remoteJid": "123456789012345@lid", "fromMe": False, "id": "3EB0LID0002"}
    [event] = provider.parse_webhook(upsert(key, {"conversation": "oi"}))
    assert event.contact_identity == "123456789012345@lid"
    assert event.contact_phone is None


def test_lid_contact_with_sender_pn(provider):
    key = {"remoteJid": "98765@lid", "senderPn": "556492123456@s.whatsapp.net", "fromMe": False, "id": "X1"}
    [event] = provider.parse_webhook(upsert(key, {"conversation": "oi"}))
    assert event.contact_phone == "+556492123456"  # BR 12-digit id (no ninth digit), not rewritten here


def test_group_message_contact_is_participant(provider):
    key = {
        "remoteJid": "120363025246125486@g.us",
        "participant": "5511912345678:7@s.whatsapp.net",
        "fromMe": False,
        "id": "3EB0GROUP01",
    }
    [event] = provider.parse_webhook(upsert(key, {"conversation": "bom dia grupo"}))
    assert event.is_group is True
    assert event.contact_identity == "5511912345678@s.whatsapp.net"  # device suffix dropped
    assert event.contact_phone == "+5511912345678"


def test_group_message_with_lid_participant_and_alt(provider):
    key = {
        "remoteJid": "120363025246125486@g.us",
        "participant": "555666777@lid",
        "participantAlt": "5521998877665@s.whatsapp.net",
        "fromMe": False,
        "id": "G2",
    }
    [event] = provider.parse_webhook(upsert(key, {"conversation": "x"}))
    assert (event.contact_identity, event.contact_phone, event.is_group) == (
        "555666777@lid",
        "+5521998877665",
        True,
    )


def test_v1_extended_text_message(provider):
    key = {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False, "id": "V1EXT"}
    message = {"extendedTextMessage": {"text": "vm_token:xyz https://a.b", "contextInfo": {}}}
    [event] = provider.parse_webhook(upsert(key, message))
    assert (event.text, event.message_type) == ("vm_token:xyz https://a.b", "text")


def test_v236_image_with_caption_and_binary_long_fields(provider):
    key = {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False, "id": "IMG236"}
    message = {
        "imageMessage": {
            "url": "https://mmg.whatsapp.net/o1/v/t62.7118-24/f1/m233/abc.enc",
            "mimetype": "image/jpeg",
            "caption": "Olha a foto vm_token:img-1",
            "fileSha256": {"0": 12, "1": 200, "2": 7},
            "fileLength": {"low": 102400, "high": 0, "unsigned": True},
            "mediaKey": {"0": 1, "1": 2},
            "mediaKeyTimestamp": {"low": 1760340990, "high": 0, "unsigned": False},
            "jpegThumbnail": {"0": 255, "1": 216},
        },
        "messageContextInfo": {"messageSecret": {"0": 9, "1": 9}},
    }
    body = upsert(key, message, messageTimestamp={"low": 1760341000, "high": 0, "unsigned": True})
    [event] = provider.parse_webhook(body)
    assert event.message_type == "image"
    assert event.text == "Olha a foto vm_token:img-1"
    assert event.media == {
        "id": "IMG236",
        "mimetype": "image/jpeg",
        "filename": None,
        "caption": "Olha a foto vm_token:img-1",
        "url": None,
    }
    assert event.timestamp == datetime(2025, 10, 13, 7, 36, 40)


def test_document_with_caption_wrapper_and_s3_url(provider):
    key = {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False, "id": "DOC1"}
    message = {
        "documentWithCaptionMessage": {
            "message": {
                "documentMessage": {
                    "fileName": "orcamento.pdf",
                    "mimetype": "application/pdf",
                    "caption": "segue",
                }
            }
        },
        "mediaUrl": "https://s3.example.com/evo/DOC1.pdf",
    }
    [event] = provider.parse_webhook(upsert(key, message))
    assert event.message_type == "document"
    assert event.text == "segue"
    assert event.media["filename"] == "orcamento.pdf"
    assert event.media["url"] == "https://s3.example.com/evo/DOC1.pdf"


def test_from_me_on_phone_to_lid_contact(provider):
    key = {
        "remoteJid": "4455@lid",
        "remoteJidAlt": "5511987654321@s.whatsapp.net",
        "fromMe": True,
        "id": "ME1",
    }
    [event] = provider.parse_webhook(upsert(key, {"conversation": "Olá, tudo bem?"}, pushName="Você"))
    assert (event.from_me, event.contact_identity, event.contact_phone, event.contact_name) == (
        True,
        "4455@lid",
        "+5511987654321",
        None,
    )


def test_send_message_event_is_an_own_message(provider):
    data = {
        "key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": True, "id": "SENT1"},
        "message": {"conversation": "resposta"},
        "messageTimestamp": "1760341000",
    }
    [event] = provider.parse_webhook(envelope("send.message", data))
    assert (event.message_id, event.from_me, event.text) == ("SENT1", True, "resposta")
    assert event.timestamp == datetime(2025, 10, 13, 7, 36, 40)


def test_status_update_older_shape_and_numeric_status(provider):
    data = {"key": {"id": "OLD1", "remoteJid": "5511987654321@s.whatsapp.net"}, "update": {"status": 3}}
    [event] = provider.parse_webhook(envelope("MESSAGES_UPDATE", data))
    assert (event.message_id, event.status) == ("OLD1", "delivered")


def test_status_error_and_deleted(provider):
    [failed] = provider.parse_webhook(envelope("messages.update", {"keyId": "E1", "status": "ERROR"}))
    assert failed.status == "failed" and failed.error
    [deleted] = provider.parse_webhook(envelope("messages.update", {"keyId": "D1", "status": "DELETED"}))
    assert isinstance(deleted, UnknownEvent)


def test_connection_refused_and_unknown_events(provider):
    data = {"instance": "odoo-loja-01", "state": "refused", "statusReason": 428}
    [refused] = provider.parse_webhook(envelope("connection.update", data))
    assert (refused.state, refused.reason) == ("expired", "428")
    [other] = provider.parse_webhook(envelope("presence.update", {"id": "x"}))
    assert isinstance(other, UnknownEvent) and other.event_type == "presence.update"
    assert other.session == "odoo-loja-01"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b'{"instance": "x"}',
        b'{"event": "messages.upsert", "data": null}',
        b'{"event": "messages.upsert", "data": {"key": {"id": "1"}}}',
        b'{"event": "messages.upsert", "data": {"key": {"remoteJid": "1@s.whatsapp.net"}}}',
        b'{"event": "messages.update", "data": {"status": "READ"}}',
    ],
)
def test_malformed_bodies_raise_payload_error(provider, body):
    with pytest.raises(WebhookPayloadError):
        provider.parse_webhook(body)


# ---------------------------------------------------------------------- webhook secret


def test_secret_header(provider):
    body = b'{"event":"x"}'
    assert provider.verify_webhook(body, {"X-VM-Webhook-Secret": SECRET}) == SIGNATURE_VALID
    assert provider.verify_webhook(body, {"x-vm-webhook-secret": SECRET}) == SIGNATURE_VALID
    assert provider.verify_webhook(body, {"X-VM-Webhook-Secret": SECRET + "x"}) == SIGNATURE_INVALID
    assert provider.verify_webhook(body, {"apikey": SECRET}) == SIGNATURE_MISSING
    unset = EvolutionProvider(webhook_secret="")
    assert unset.verify_webhook(body, {"X-VM-Webhook-Secret": ""}) == SIGNATURE_MISSING
    assert unset.verify_webhook(body, {"X-VM-Webhook-Secret": "anything"}) == SIGNATURE_INVALID


# ---------------------------------------------------------------------- HTTP


def expected_webhook():
    return {
        "enabled": True,
        "url": HOOK,
        "byEvents": False,
        "base64": False,
        "headers": {"X-VM-Webhook-Secret": SECRET},
        "events": [
            "QRCODE_UPDATED",
            "CONNECTION_UPDATE",
            "MESSAGES_UPSERT",
            "MESSAGES_UPDATE",
            "SEND_MESSAGE",
        ],
    }


@responses.activate
def test_create_session_registers_webhook_and_returns_qr(provider, sample_json):
    created = sample_json("evolution/instance.create.response.json")
    created["qrcode"] = {
        "pairingCode": "WZYEH1YY",
        "code": "2@abc",
        "base64": "data:image/png;base64,AAA",
        "count": 1,
    }
    responses.post(
        API + "/instance/create",
        json=created,
        status=201,
        match=[
            matchers.header_matcher({"apikey": "global-key"}),
            matchers.json_params_matcher(
                {
                    "instanceName": "odoo-loja-01",
                    "integration": "WHATSAPP-BAILEYS",
                    "qrcode": True,
                    "number": "5511987654321",
                    "webhook": expected_webhook(),
                }
            ),
        ],
    )
    info = provider.create_session(phone="+5511987654321")
    assert (info.external_id, info.state) == ("odoo-loja-01", "qr_ready")
    assert (info.qr_code, info.qr_image, info.pairing_code) == (
        "2@abc",
        "data:image/png;base64,AAA",
        "WZYEH1YY",
    )
    assert responses.calls[0].request.headers["apikey"] == "global-key"


@responses.activate
def test_create_session_without_qr_yet_is_pending(provider, sample_json):
    responses.post(API + "/instance/create", json=sample_json("evolution/instance.create.response.json"), status=201)
    info = provider.create_session(external_id="212ae1a7")
    assert info.state == "pending" and info.qr_code is None
    assert "reaches WhatsApp" in info.message
    assert json.loads(responses.calls[0].request.body)["instanceName"] == "212ae1a7"
    assert "number" not in json.loads(responses.calls[0].request.body)


@responses.activate
def test_create_session_existing_instance_sets_webhook_and_connects(provider, sample_json):
    responses.post(
        API + "/instance/create",
        status=403,
        json={
            "status": 403,
            "error": "Forbidden",
            "response": {"message": ['This name "odoo-loja-01" is already in use.']},
        },
    )
    responses.post(
        API + "/webhook/set/odoo-loja-01",
        json={"webhook": {}},
        match=[
            matchers.json_params_matcher({"webhook": expected_webhook()}),
            matchers.header_matcher({"apikey": "global-key"}),
        ],
    )
    responses.get(API + "/instance/connect/odoo-loja-01", json=sample_json("evolution/instance.connect.response.json"))
    info = provider.create_session()
    assert info.state == "qr_ready"
    assert info.qr_code.startswith("2@Wq3Yp0c")
    assert [c.request.method for c in responses.calls] == ["POST", "POST", "GET"]


@responses.activate
def test_create_session_bad_key_is_an_error(provider):
    responses.post(
        API + "/instance/create",
        status=401,
        json={"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}},
    )
    with pytest.raises(WhatsAppProviderError) as caught:
        provider.create_session()
    assert caught.value.status_code == 401
    assert "Unauthorized" in str(caught.value)
    assert not isinstance(caught.value, WhatsAppProviderRetryableError)


def test_create_session_needs_webhook_secret():
    with pytest.raises(WhatsAppProviderError, match="webhook secret"):
        EvolutionProvider(api_base_url=API, api_key="k", webhook_url=HOOK).create_session("x")


@responses.activate
def test_status_open_reads_owner_phone(provider, sample_json):
    responses.get(
        API + "/instance/connectionState/odoo-loja-01",
        json=sample_json("evolution/instance.connectionState.response.json"),
    )
    responses.get(
        API + "/instance/fetchInstances",
        json=[{"name": "odoo-loja-01", "ownerJid": "5511900000000@s.whatsapp.net"}],
        match=[matchers.query_param_matcher({"instanceName": "odoo-loja-01"})],
    )
    info = provider.get_session_status()
    assert (info.state, info.phone) == ("connected", "+5511900000000")


@responses.activate
def test_status_connecting_fetches_current_qr(provider, sample_json):
    responses.get(
        API + "/instance/connectionState/odoo-loja-01",
        json={"instance": {"instanceName": "odoo-loja-01", "state": "connecting"}},
    )
    responses.get(API + "/instance/connect/odoo-loja-01", json={"count": 0})
    assert provider.get_session_status().state == "pending"


@responses.activate
def test_status_error_body_with_200_raises(provider):
    responses.get(
        API + "/instance/connectionState/ghost",
        json={"error": True, "message": "BadRequestException: instance not found"},
    )
    with pytest.raises(WhatsAppProviderError, match="instance not found"):
        provider.get_session_status("ghost")


@responses.activate
def test_status_get_is_retried_on_5xx_then_succeeds(provider):
    url = API + "/instance/connectionState/odoo-loja-01"
    responses.get(url, status=502, body="Bad Gateway")
    responses.get(url, json={"instance": {"state": "open"}})
    responses.get(API + "/instance/fetchInstances", json=[{"name": "odoo-loja-01", "ownerJid": None}])
    assert provider.get_session_status().state == "connected"
    assert len(responses.calls) == 3


@responses.activate
def test_post_is_not_retried(provider):
    responses.post(API + "/message/sendText/odoo-loja-01", status=503, json={"message": "down"})
    with pytest.raises(WhatsAppProviderRetryableError):
        provider.send_text("+5511987654321", "oi")
    assert len(responses.calls) == 1


def test_timeout_is_retryable_and_always_passed(provider, monkeypatch):
    seen = {}

    def fake_request(method, url, **kwargs):
        seen["timeout"] = kwargs.get("timeout")
        raise requests.Timeout()

    monkeypatch.setattr(provider.http, "request", fake_request)
    with pytest.raises(WhatsAppProviderRetryableError, match="did not answer"):
        provider.close_session()
    assert seen["timeout"] == EvolutionProvider.timeout


@responses.activate
def test_close_session_logs_out_and_tolerates_not_connected(provider):
    url = API + "/instance/logout/odoo-loja-01"
    responses.delete(url, json={"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}})
    assert provider.close_session().state == "closed"
    responses.replace(
        responses.DELETE,
        url,
        status=400,
        json={
            "status": 400,
            "error": "Bad Request",
            "response": {"message": ['The "odoo-loja-01" instance is not connected']},
        },
    )
    assert provider.close_session().state == "closed"
    assert [c.request.method for c in responses.calls] == ["DELETE", "DELETE"]


@responses.activate
def test_send_text(provider):
    responses.post(
        API + "/message/sendText/odoo-loja-01",
        status=201,
        json={
            "key": {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": True, "id": "BAE5F00D"},
            "status": "PENDING",
        },
        match=[
            matchers.json_params_matcher({"number": "5511987654321", "text": "Olá!"}),
            matchers.header_matcher({"apikey": "global-key"}),
        ],
    )
    assert provider.send_text("+5511987654321", "Olá!") == "BAE5F00D"


@responses.activate
def test_check_connection(provider):
    responses.get(API + "/instance/connectionState/odoo-loja-01", json={"instance": {"state": "open"}})
    assert provider.check_connection() == "Evolution API reachable; instance odoo-loja-01 is open."


# ---------------------------------------------------------------------- a real 2.3.6 server's answers


def recorded(name):
    return json.loads((RECORDED / name).read_text())


def recorded_answer(name):
    exchange = recorded(name)
    return {"json": exchange["body"], "status": exchange["status"]}


def answer(method, path, name):
    """Make ``responses`` answer ``method path`` with a recorded exchange (status and body)."""
    responses.add(method, API + path, **recorded_answer(name))


@pytest.fixture
def real():
    """The adapter as it talks to the recorded server's instance."""
    return EvolutionProvider(
        api_base_url=API, api_key="global-key", external_id="gw-sample-01", webhook_secret=SECRET, webhook_url=HOOK
    )


@responses.activate
def test_recorded_create_without_qr_is_pending_and_keeps_no_token(real):
    answer("POST", "/instance/create", "instance.create.201.json")
    info = real.create_session()
    assert (info.external_id, info.state, info.qr_code, info.qr_image) == ("gw-sample-01", "pending", None, None)
    assert "no QR code yet" in info.message
    assert "CONFIG_SESSION_PHONE_VERSION" not in info.message  # gone from 2.3.6
    assert recorded("instance.create.201.json")["body"]["hash"] not in repr(info)


@responses.activate
def test_recorded_create_of_an_existing_name_sets_the_webhook_and_connects(real):
    answer("POST", "/instance/create", "instance.create.403-name-in-use.json")
    responses.post(API + "/webhook/set/gw-sample-01", json={"webhook": {}})
    answer("GET", "/instance/connect/gw-sample-01", "instance.connect.no-qr.json")
    assert real.create_session().state == "pending"
    assert [c.request.url.split("/", 3)[3] for c in responses.calls] == [
        "instance/create",
        "webhook/set/gw-sample-01",
        "instance/connect/gw-sample-01",
    ]


@responses.activate
def test_recorded_unknown_instance_is_a_clear_instance_error(real):
    answer("GET", "/instance/connectionState/ghost-x", "instance.unknown.404.json")
    answer("DELETE", "/instance/logout/ghost-x", "instance.unknown.404.json")
    with pytest.raises(WhatsAppSessionNotFoundError) as caught:
        EvolutionProvider(api_base_url=API, api_key="k", external_id="ghost-x").check_connection()
    assert caught.value.status_code == 404
    assert not isinstance(caught.value, WhatsAppProviderRetryableError)
    assert str(caught.value).startswith('Evolution API: the instance "ghost-x" does not exist on this server')
    info = real.get_session_status("ghost-x")
    assert (info.state, info.message) == ("failed", str(caught.value))
    assert real.close_session("ghost-x").state == "closed", "nothing to log out"
    assert len(responses.calls) == 3, "a 404 is not retried"


@responses.activate
def test_recorded_unknown_instance_in_fetch_instances(real):
    answer("GET", "/instance/fetchInstances", "instance.fetchInstances.404.json")
    with pytest.raises(WhatsAppSessionNotFoundError, match='instance "ghost-x" does not exist'):
        real._request("GET", "/instance/fetchInstances", params={"instanceName": "ghost-x"})


@responses.activate
def test_recorded_other_404_and_bad_key_are_not_instance_errors(real):
    responses.get(API + "/instance/connectionState/gw-sample-01", status=404, json={"message": "Cannot GET"})
    with pytest.raises(WhatsAppProviderError) as caught:
        real.check_connection()
    assert not isinstance(caught.value, WhatsAppSessionNotFoundError)
    url = API + "/instance/connectionState/gw-sample-01"
    responses.replace(responses.GET, url, **recorded_answer("instance.unauthorized.401.json"))
    with pytest.raises(WhatsAppProviderError, match="rejected the credentials") as caught:
        real.check_connection()
    assert not isinstance(caught.value, WhatsAppSessionNotFoundError)


@responses.activate
def test_recorded_close_while_reconnecting_keeps_the_session_waiting(real):
    """A new instance that WhatsApp does not answer yet: connectionState says close between two
    attempts while its webhooks say connecting; its record has no disconnection code."""
    answer("GET", "/instance/connectionState/gw-sample-01", "instance.connectionState.close-reconnecting.json")
    answer("GET", "/instance/fetchInstances", "instance.fetchInstances.reconnecting.json")
    info = real.get_session_status()
    assert (info.state, info.qr_code) == ("pending", None)
    assert "reconnecting" in info.message


@responses.activate
def test_recorded_close_after_a_logout_is_final(real):
    answer("GET", "/instance/connectionState/gw-sample-01", "instance.connectionState.close-reconnecting.json")
    answer("GET", "/instance/fetchInstances", "instance.fetchInstances.after-logout.json")
    info = real.get_session_status()
    assert (info.state, info.message) == ("closed", "Evolution API closed the instance (reason 401).")


@responses.activate
def test_recorded_close_with_an_unreadable_record_is_not_final(real):
    answer("GET", "/instance/connectionState/gw-sample-01", "instance.connectionState.close-reconnecting.json")
    responses.get(API + "/instance/fetchInstances", status=500, json={"message": "boom"})
    assert real.get_session_status().state == "pending"


@responses.activate
def test_recorded_connecting_without_qr_is_pending(real):
    answer("GET", "/instance/connectionState/gw-sample-01", "instance.connectionState.connecting.json")
    answer("GET", "/instance/connect/gw-sample-01", "instance.connect.no-qr.json")
    assert real.get_session_status().state == "pending"


@pytest.mark.parametrize("name", ["instance.logout.200.json", "instance.logout.400-not-connected.json"])
@responses.activate
def test_recorded_logout_answers_close_the_session(real, name):
    answer("DELETE", "/instance/logout/gw-sample-01", name)
    assert real.close_session().state == "closed"


def test_recorded_connecting_webhook(real):
    body = (RECORDED / "connection.update.connecting.json").read_bytes().strip()
    headers = {**recorded("webhook.headers.json"), "X-VM-Webhook-Secret": SECRET}
    assert real.verify_webhook(body, headers) == SIGNATURE_VALID
    assert real.verify_webhook(body, recorded("webhook.headers.json")) == SIGNATURE_INVALID
    [event] = real.parse_webhook(body, headers)
    assert isinstance(event, ConnectionUpdate)
    assert (event.session, event.state, event.phone, event.reason) == ("gw-sample-01", "pending", None, None)


def test_recorded_close_webhook_of_a_logout(real):
    [event] = real.parse_webhook((RECORDED / "connection.update.close-logout.json").read_bytes())
    assert (event.session, event.state, event.reason) == ("gw-sample-01", "closed", "401")
