"""Click-to-WhatsApp ad referrals: the Cloud API ``referral`` (Meta, 360dialog) and the Baileys
``contextInfo`` (Evolution, WAHA NOWEB), parsed into ``InboundMessage.referral`` and sanitized."""

import json

import pytest

from visionmetrics_whatsapp.providers.dialog360 import Dialog360Provider
from visionmetrics_whatsapp.providers.events import AdReferral, InboundMessage
from visionmetrics_whatsapp.providers.evolution import EvolutionProvider
from visionmetrics_whatsapp.providers.meta import MetaProvider
from visionmetrics_whatsapp.providers.referral import baileys_referral, cloud_api_referral
from visionmetrics_whatsapp.providers.waha import WahaProvider
from visionmetrics_whatsapp.providers.zapi import ZapiProvider

CLID = "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a"


def only_message(provider, body):
    events = provider.parse_events(body)
    assert len(events) == 1 and isinstance(events[0], InboundMessage)
    return events[0]


@pytest.mark.parametrize("provider_class", [MetaProvider, Dialog360Provider])
def test_cloud_api_referral(provider_class, sample):
    folder = "meta" if provider_class is MetaProvider else "360dialog"
    message = only_message(provider_class(), sample(f"{folder}/text.referral.json"))
    assert message.text == "Olá! Quero saber mais sobre o curso."
    referral = message.referral
    assert referral.source_id == "120210987654321098"
    assert referral.source_url == "https://fb.me/3bKqW7zYp"
    assert referral.source_type == "ad"
    assert referral.headline == "Curso de Marketing Digital"
    assert referral.body.startswith("Inscrições abertas")
    assert referral.media_type == "image"
    assert referral.ctwa_clid == CLID
    assert referral.welcome_message == "Olá! Como podemos ajudar?"
    assert referral.origin == "cloud_api" and referral.click_delay is None


def test_cloud_api_status_ad_has_no_click_id(sample):
    referral = only_message(MetaProvider(), sample("meta/text.referral-instagram-no-clid.json")).referral
    assert referral.source_id == "120219876543210987"
    assert referral.ctwa_clid is None
    assert referral.source_url.startswith("https://www.instagram.com/")
    assert referral.media_type == "video"


def test_cloud_api_plain_message_has_no_referral(sample):
    assert only_message(MetaProvider(), sample("meta/text.json")).referral is None


def test_evolution_external_ad_reply(sample):
    message = only_message(EvolutionProvider(), sample("evolution/messages.upsert.ad-reply.json"))
    referral = message.referral
    assert message.text == "Olá! Quero saber mais sobre o curso."
    assert referral.source_id == "120210987654321098"
    assert referral.source_url == "https://fb.me/3bKqW7zYp"
    assert referral.headline == "Curso de Marketing Digital"
    assert referral.media_type == "image"
    assert referral.ctwa_clid.startswith("AffhXKgV")
    assert referral.entry_point == "ctwa_ad"
    assert referral.click_delay == 21
    assert referral.origin == "baileys"


def test_evolution_markers_only_is_an_ad_without_id(sample):
    referral = only_message(EvolutionProvider(), sample("evolution/messages.upsert.ad-markers-only.json")).referral
    assert referral is not None
    assert referral.source_id is None and referral.ctwa_clid is None
    assert referral.entry_point == "ctwa_ad"
    assert referral.click_delay == 8


def test_evolution_wa_me_link_and_quoted_reply_are_no_ad(sample):
    assert only_message(EvolutionProvider(), sample("evolution/messages.upsert.wa-me-link.json")).referral is None
    assert only_message(EvolutionProvider(), sample("evolution/messages.upsert.reply-flattened.json")).referral is None


def test_evolution_context_only_in_the_content(sample):
    """Builds that do not lift contextInfo to ``data`` (2.4.0-rc) keep it in the content."""
    payload = json.loads(sample("evolution/messages.upsert.ad-reply.json"))
    del payload["data"]["contextInfo"]
    referral = only_message(EvolutionProvider(), json.dumps(payload).encode()).referral
    assert referral.source_id == "120210987654321098"


def test_evolution_own_messages_carry_no_referral(sample):
    payload = json.loads(sample("evolution/messages.upsert.ad-reply.json"))
    payload["data"]["key"]["fromMe"] = True
    assert only_message(EvolutionProvider(), json.dumps(payload).encode()).referral is None


def test_waha_noweb_raw_message(sample):
    referral = only_message(WahaProvider(), sample("waha/message.ad-reply.json")).referral
    assert referral.source_id == "120210987654321098"
    assert referral.origin == "baileys"


def test_waha_webjs_and_zapi_have_none(sample):
    assert only_message(WahaProvider(), sample("waha/message.json")).referral is None
    assert only_message(ZapiProvider(), sample("zapi/on-message-received.text.json")).referral is None


@pytest.mark.parametrize(
    "bad",
    [
        {"source_id": "\x00\x01", "source_url": "javascript:alert(1)"},
        {"source_id": None, "ctwa_clid": 12.5, "source_url": ["x"]},
        {},
    ],
)
def test_junk_referral_is_dropped(bad):
    referral = cloud_api_referral({"referral": bad})
    assert referral is None or referral.sanitized() is None


def test_referral_values_are_bounded():
    referral = AdReferral(
        source_id="1" * 5000,
        source_url="https://fb.me/" + "a" * 5000,
        headline="h\x00" * 3000,
        ctwa_clid="c" * 900,
        click_delay=10**9,
        origin="elsewhere",
    ).sanitized()
    assert len(referral.source_id) == 200 and len(referral.ctwa_clid) == 200
    assert referral.source_url is None  # a cut URL points elsewhere: dropped
    assert len(referral.headline) <= 1024 and "\x00" not in referral.headline
    assert referral.click_delay is None and referral.origin == "cloud_api"


def test_baileys_link_preview_is_no_ad():
    """An externalAdReply without id, click id, attribution flag or ad entry point is a preview."""
    assert baileys_referral({"externalAdReply": {"title": "Exemplo", "sourceUrl": "https://exemplo.com.br"}}) is None
    assert baileys_referral({"externalAdReply": "x", "entryPointConversionSource": 5}) is None
    assert baileys_referral(None, [], "x") is None


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [("IMAGE", "image"), (1, "image"), (2, "video"), ("VIDEO", "video")]
    + [(True, None), ({}, None), ([1], None), (3, None)],
)
def test_baileys_media_type_of_any_json_value(media_type, expected):
    """Baileys gives the ad's media type as an enum name or its number; any other JSON value
    (an object, a list, a boolean) is no media type, not an error."""
    context = {"externalAdReply": {"sourceId": "120210987654321098", "mediaType": media_type}}
    assert baileys_referral(context).media_type == expected
