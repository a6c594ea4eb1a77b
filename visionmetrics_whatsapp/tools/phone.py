"""Phone numbers: E.164 normalization and the variants that are the same person.

No Odoo import. Brazilian mobiles gained a ninth digit (9 after the area code) between 2012 and
2016; WhatsApp ids of older accounts still carry the 8-digit form, so ``+55 11 9 8765-4321`` and
``+55 11 8765-4321`` are one person.
"""

import functools

import phonenumbers


@functools.lru_cache(maxsize=4096)  # the inbox normalizes the same returning senders again and again
def to_e164(raw, default_region=None):
    """``raw`` (digits, +E.164, or a national number in ``default_region``) as E.164, or None
    when it is not a possible phone number."""
    if not raw:
        return None
    text = str(raw).strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return None
    if not text.startswith("+") and not default_region:
        text = "+" + digits  # provider ids (wa_id, JID user part) are international digits
    try:
        number = phonenumbers.parse(text, (default_region or "").upper() or None)
    except phonenumbers.NumberParseException:
        if text.startswith("+"):
            return None
        return to_e164("+" + digits)
    if not phonenumbers.is_possible_number(number):
        # digits without "+" that are already international (e.g. 5511987654321 with region BR)
        if not text.startswith("+") and text == digits:
            return to_e164("+" + digits)
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def variants(e164):
    """The E.164 forms of the same subscriber: the number itself and, for a Brazilian mobile,
    the form with or without the ninth digit."""
    if not e164:
        return []
    forms = [e164]
    if e164.startswith("+55"):
        national = e164[3:]
        if len(national) == 11 and national[2] == "9":
            forms.append(f"+55{national[:2]}{national[3:]}")
        elif len(national) == 10 and national[2] in "6789":
            forms.append(f"+55{national[:2]}9{national[2:]}")
    return forms


def mask(e164):
    """A phone number for logs: country code, area and the last 4 digits (``+55119****4321``)."""
    if not e164:
        return ""
    text = str(e164)
    if len(text) <= 10:
        return "*" * len(text)
    return text[:6] + "*" * (len(text) - 10) + text[-4:]
