"""Recorded provider payload shapes (see shared samples and the provider references), built with
the values a test needs, and signed the way each provider signs them."""

import hashlib
import hmac
import json
import time
from pathlib import Path


def dump(payload):
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def meta_envelope(phone_number_id, value):
    """A Cloud API webhook body (Meta, 360dialog) around one change ``value``."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def meta_text(phone_number_id, wa_id, text, message_id, name="Sheena Nelson", timestamp=1749416383):
    message = {"from": wa_id, "id": message_id, "timestamp": str(timestamp), "type": "text", "text": {"body": text}}
    return dump(
        meta_envelope(
            phone_number_id, {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [message]}
        )
    )


def meta_image(phone_number_id, wa_id, message_id, caption="Foto do produto", media_id="1479537139650973"):
    payload = json.loads(meta_text(phone_number_id, wa_id, "", message_id))
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(
        type="image",
        image={"caption": caption, "mime_type": "image/jpeg", "sha256": "abc=", "id": media_id},
    )
    return dump(payload)


def meta_status(phone_number_id, message_id, status, recipient="16505551234", timestamp=1750030073):
    status = {"id": message_id, "status": status, "timestamp": str(timestamp), "recipient_id": recipient}
    return dump(meta_envelope(phone_number_id, {"statuses": [status]}))


def evolution_text(
    instance, jid, text, message_id, name="Maria Silva", from_me=False, timestamp=1760341100, apikey=None
):
    """A messages.upsert of Evolution API 2.3.6 (``apikey``: its instance token, when it exposes it)."""
    return dump(
        {
            "event": "messages.upsert",
            "instance": instance,
            "data": {
                "key": {"remoteJid": jid, "fromMe": from_me, "id": message_id},
                "pushName": name,
                "status": "DELIVERY_ACK",
                "message": {"conversation": text},
                "messageType": "conversation",
                "messageTimestamp": timestamp,
                "instanceId": "0b9c3e1a-5d7f-4c2e-9a8b-1f2e3d4c5b6a",
                "source": "ios",
            },
            "destination": "https://odoo.example.com/whatsapp/webhook/evolution",
            "date_time": "2025-10-13T07:38:20.004Z",
            "sender": "5511900000000@s.whatsapp.net",
            "server_url": "https://evolution.example.com",
            "apikey": apikey,
        }
    )


def waha_text(session, chat_id, text, message_id, timestamp=1667561485):
    """A message event; WAHA dates the envelope (signed) when it sends it: now."""
    return dump(
        {
            "id": "evt_01aaaaaaaaaaaaaaaaaaaaaaaa",
            "timestamp": int(time.time() * 1000),
            "event": "message",
            "session": session,
            "engine": "WEBJS",
            "payload": {
                "id": message_id,
                "timestamp": timestamp,
                "from": chat_id,
                "fromMe": False,
                "source": "app",
                "to": "5511900000000@c.us",
                "body": text,
                "hasMedia": False,
                "ack": 1,
                "vCards": [],
                "_data": {"notifyName": "Carlos"},
            },
        }
    )


def waha_session_status(session, status, event_id, timestamp_ms):
    """A session.status as WAHA posts it: its event id and time (ms) are in the signed body."""
    return dump(
        {
            "id": event_id,
            "timestamp": int(timestamp_ms),
            "event": "session.status",
            "session": session,
            "me": {"id": "5511900000000@c.us", "pushName": "Loja"},
            "payload": {"status": status},
            "engine": "WEBJS",
            "environment": {"version": "2025.11.1", "engine": "WEBJS", "tier": "CORE"},
        }
    )


def sign(provider_code, secret, body):
    """The headers with which the provider authenticates ``body``."""
    if provider_code == "meta":
        return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if provider_code == "sandbox":
        return {"X-VM-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if provider_code == "waha":
        return {
            "X-Webhook-Hmac": hmac.new(secret.encode(), body, hashlib.sha512).hexdigest(),
            "X-Webhook-Hmac-Algorithm": "sha512",
        }
    return {"X-VM-Webhook-Secret": secret}  # evolution, dialog360


def evolution_connection(instance, state, date_time, status_reason=200):
    """A connection.update as Evolution API 2.3.6 posts it (its instance token in ``apikey``)."""
    return dump(
        {
            "event": "connection.update",
            "instance": instance,
            "data": {"instance": instance, "state": state, "statusReason": status_reason},
            "destination": "https://odoo.example.com/vm_whatsapp/webhook/evolution/x",
            "date_time": date_time,
            "server_url": "http://127.0.0.1:18080",
            "apikey": "INSTANCE-TOKEN-REDACTED",
        }
    )


def zapi_received(instance, phone, text, message_id, from_me=False, momment=1632228638000):
    """A Z-API ReceivedCallback (the documentation's example, trimmed)."""
    return dump(
        {
            "isStatusReply": False,
            "senderLid": "81896604192873@lid",
            "connectedPhone": "554499999999",
            "isGroup": False,
            "instanceId": instance,
            "messageId": message_id,
            "phone": phone,
            "fromMe": from_me,
            "momment": momment,
            "status": "RECEIVED",
            "chatName": "Joana",
            "senderName": "Joana",
            "type": "ReceivedCallback",
            "text": {"message": text},
        }
    )


SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "samples"


def sample(relative, replace=None):
    """A payload of tests/samples, its strings ``replace``d ({old: new}), as bytes."""
    text = (SAMPLES / relative).read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return text.encode("utf-8")
