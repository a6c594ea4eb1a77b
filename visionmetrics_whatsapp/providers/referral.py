"""Click-to-WhatsApp ad referrals in the providers' payloads (reference/attribution.md §1).

No Odoo import. Two shapes:

- Cloud API (Meta, 360dialog): ``messages[].referral`` = ``{source_url, source_id, source_type,
  body, headline, media_type, image_url|video_url, thumbnail_url, ctwa_clid, welcome_message:
  {text}}``, on the first message after the click only.
- Baileys (Evolution, WAHA NOWEB): the message's ``contextInfo``: ``externalAdReply`` =
  ``{title, body, mediaType, sourceType, sourceId, sourceUrl, ctwaClid, sourceApp, ...}`` next to
  ``conversionSource`` ("FB_Ads"), ``entryPointConversionSource`` ("ctwa_ad", or
  "click_to_chat_link" for a wa.me link, which is no ad) and ``entryPointConversionDelaySeconds``.
  Some Baileys versions drop ``externalAdReply`` and keep only the markers: still an ad, with no id.
"""

from .events import AdReferral
from .utils import as_dict, as_text

# entryPointConversionSource / conversionSource values that say "a click on an ad"
AD_ENTRY_POINTS = frozenset({"ctwa_ad", "fb_ads", "ig_ads", "ctwa"})
BAILEYS_MEDIA_TYPES = {"1": "image", "2": "video", "IMAGE": "image", "VIDEO": "video"}  # keys as as_text gives them


def cloud_api_referral(message):
    """The AdReferral of a Cloud API message object, or None."""
    referral = message.get("referral")
    if not isinstance(referral, dict) or not referral:
        return None
    return AdReferral(
        source_id=as_text(referral.get("source_id")),
        source_url=as_text(referral.get("source_url")),
        source_type=as_text(referral.get("source_type")),
        headline=as_text(referral.get("headline")),
        body=as_text(referral.get("body")),
        media_type=as_text(referral.get("media_type")),
        ctwa_clid=as_text(referral.get("ctwa_clid")),
        welcome_message=as_text(as_dict(referral.get("welcome_message")).get("text")),
        origin="cloud_api",
    )


def baileys_referral(*context_infos):
    """The AdReferral of the first Baileys ``contextInfo`` (of those given, in order) that shows
    an ad: an ``externalAdReply`` with an id, a click id or a URL, or an ad entry point. None for
    a quoted reply, a wa.me link's entry point or a link preview."""
    for context in context_infos:
        context = as_dict(context)
        reply = as_dict(context.get("externalAdReply"))
        entry_point = as_text(context.get("entryPointConversionSource"))
        conversion = as_text(context.get("conversionSource"))
        is_ad_entry = any((value or "").lower() in AD_ENTRY_POINTS for value in (entry_point, conversion))
        identified = any(as_text(reply.get(key)) for key in ("sourceId", "ctwaClid"))
        # an externalAdReply is also how link previews and channel forwards are shown: only an
        # id, a click id, showAdAttribution or an ad entry point make it an ad
        if not (identified or is_ad_entry or reply.get("showAdAttribution") is True):
            continue
        delay = context.get("entryPointConversionDelaySeconds", context.get("conversionDelaySeconds"))
        return AdReferral(
            source_id=as_text(reply.get("sourceId")),
            source_url=as_text(reply.get("sourceUrl")),
            source_type=as_text(reply.get("sourceType")) or "ad",
            headline=as_text(reply.get("title")),
            body=as_text(reply.get("body")),
            media_type=BAILEYS_MEDIA_TYPES.get(as_text(reply.get("mediaType")) or ""),
            ctwa_clid=as_text(reply.get("ctwaClid")),
            welcome_message=as_text(reply.get("greetingMessageBody")),
            entry_point=entry_point or conversion,
            click_delay=delay if isinstance(delay, int) else None,
            origin="baileys",
        )
    return None


def message_context_infos(message):
    """The ``contextInfo`` objects of a Baileys message content (``{conversation |
    extendedTextMessage | imageMessage ...: {..., contextInfo}}``), wrappers included."""
    found = []
    for _depth in range(4):
        message = as_dict(message)
        for value in message.values():
            context = as_dict(value).get("contextInfo") if isinstance(value, dict) else None
            if isinstance(context, dict):
                found.append(context)
        inner = next(
            (
                as_dict(message[key]).get("message")
                for key in ("ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "documentWithCaptionMessage")
                if isinstance(message.get(key), dict)
            ),
            None,
        )
        if not isinstance(inner, dict):
            break
        message = inner
    return found
