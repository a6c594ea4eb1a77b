"""Phone normalization and token extraction used by lead attribution."""

import pytest

from visionmetrics_whatsapp.providers.utils import digits_to_e164, phone_from_jid
from visionmetrics_whatsapp.tools.phone import mask, to_e164, variants
from visionmetrics_whatsapp.tools.token import extract_token


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("5511987654321", None, "+5511987654321"),  # wa_id / JID user part
        ("+55 (11) 98765-4321", None, "+5511987654321"),
        ("(11) 98765-4321", "BR", "+5511987654321"),  # national form, company in Brazil
        ("11 98765-4321", "br", "+5511987654321"),
        ("5511987654321", "BR", "+5511987654321"),  # international digits with a default region
        ("556481234567", None, "+556481234567"),  # 12-digit BR (no ninth digit)
        ("+1 415 555 2671", "BR", "+14155552671"),
        ("14155552671", None, "+14155552671"),
        ("", None, None),
        (None, "BR", None),
        ("abc", None, None),
        ("12", None, None),
    ],
)
def test_to_e164(raw, region, expected):
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5511987654321", "+5511987654321"),
        ("+5511987654321", "+5511987654321"),
        (5511987654321, "+5511987654321"),  # ids sometimes arrive as numbers
        ("14155552671", "+14155552671"),
        ("7911111", None),  # 6 to 15 digits, but no possible number
        ("12345", None),
        ("1" * 16, None),
        ("+55 11 98765-4321", None),  # providers send bare digits: anything else is not a wa_id
        ("５５１１９８７６５４３２１", None),  # fullwidth digits
        ("BR.1", None),  # a business-scoped user id
        (None, None),
    ],
)
def test_provider_digits_are_normalized_like_every_phone(raw, expected):
    assert digits_to_e164(raw) == expected
    if expected:
        assert digits_to_e164(raw) == to_e164(raw)


def test_only_phone_jids_give_a_phone():
    assert phone_from_jid("5511987654321:12@s.whatsapp.net") == "+5511987654321"
    assert phone_from_jid("5511987654321@c.us") == "+5511987654321"
    assert phone_from_jid("5511987654321@lid") is None
    assert phone_from_jid("120363@g.us") is None


def test_brazilian_ninth_digit_variants_are_the_same_person():
    assert variants("+5511987654321") == ["+5511987654321", "+551187654321"]
    assert variants("+551187654321") == ["+551187654321", "+5511987654321"]
    assert variants("+556481234567") == ["+556481234567", "+5564981234567"]


def test_no_variants_for_landlines_and_other_countries():
    assert variants("+551132654321") == ["+551132654321"]  # 8-digit landline starting with 3
    assert variants("+14155552671") == ["+14155552671"]
    assert variants(None) == []


def test_mask_hides_the_middle():
    assert mask("+5511987654321") == "+55119****4321"
    assert "98765" not in mask("+5511987654321")
    assert mask("") == ""


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("Olá! vm_token:abc-123", "abc-123"),
        ("VM_TOKEN : AbC-9 quero saber", "AbC-9"),
        ("Vm_Token:x1\nmais texto", "x1"),
        ("first vm_token:one then vm_token:two", "one"),
        ("(vm_token:paren)", "paren"),
        ("vm_token: spaced", "spaced"),
    ],
)
def test_extract_token(text, token):
    assert extract_token(text) == token


@pytest.mark.parametrize("text", ["", None, "no token here", "vm_token:", "vm_token: !!", "xvm_token:abc"])
def test_no_token(text):
    assert extract_token(text) is None
