"""clean_text, bounded_id and clean_json: what reaches PostgreSQL from outside."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visionmetrics_whatsapp.tools.text import (
    ELLIPSIS,
    ID_MAX_LENGTH,
    JSON_MAX_ITEMS,
    bounded_id,
    clean_json,
    clean_text,
)

# every code point, lone surrogates included (hypothesis leaves them out by default)
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=400)


def storable(value):
    """What PostgreSQL and psycopg2 take: encodable as UTF-8, no NUL."""
    value.encode("utf-8")
    return "\x00" not in value


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("a\x00b", "ab"),
        ("\x00", ""),
        ("a\x01\x07\x08\x0b\x0c\x0e\x1fb", "ab"),
        ("line\tone\r\nline two\n", "line\tone\r\nline two\n"),
        ("high \ud800 alone", "high \ufffd alone"),
        ("low \udc00 alone", "low \ufffd alone"),
        ("reversed \ude00\ud83d", "reversed \ufffd\ufffd"),
        ("end \udbff", "end \ufffd"),
        ("Olá 😀 ação", "Olá 😀 ação"),
        ("😀\ud800😀", "😀\ufffd😀"),
        # a surrogate pair written as two code points is the character it encodes
        ("\ud83d\ude00", "😀"),
        ("\ud800\ud83d\ude00", "\ufffd😀"),
        ("", ""),
    ],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_clean_text_returns_other_types_unchanged():
    assert clean_text(None) is None
    assert clean_text(12, 1) == 12
    marker = object()
    assert clean_text(marker) is marker


def test_clean_text_cuts_with_a_visible_ending():
    assert clean_text("a" * 10, 10) == "a" * 10
    cut = clean_text("a" * 11, 10)
    assert cut == "a" * 9 + ELLIPSIS and len(cut) == 10
    assert clean_text("a" * 3000, 256) == "a" * 255 + ELLIPSIS
    # controls are removed before measuring: the text fits once cleaned
    assert clean_text("\x00" * 5 + "abc", 3) == "abc"
    assert clean_text("abc", 1) == ELLIPSIS
    assert clean_text("abc", 0) == ""


def test_clean_text_cuts_between_characters_never_inside_one():
    cut = clean_text("😀" * 300, 256)
    assert cut == "😀" * 255 + ELLIPSIS
    assert storable(cut)


@given(value=any_text, max_length=st.none() | st.integers(0, 500))
def test_clean_text_always_storable_and_bounded(value, max_length):
    cleaned = clean_text(value, max_length)
    assert storable(cleaned)
    assert not any(ch in cleaned for ch in "\x01\x02\x1b\x1f")
    if max_length is not None:
        assert len(cleaned) <= max_length
    assert clean_text(cleaned, max_length) == cleaned  # cleaning twice changes nothing


def test_bounded_id_keeps_short_ids():
    assert bounded_id("wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjA=") == "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjA="
    assert bounded_id("x" * ID_MAX_LENGTH) == "x" * ID_MAX_LENGTH
    assert bounded_id("A1\x00B2\ud800") == "A1B2\ufffd"
    assert bounded_id(None) is None


def test_bounded_id_hashes_long_ids_to_exactly_the_limit():
    long_id = "3EB0" + "7" * 3000
    bounded = bounded_id(long_id)
    assert len(bounded) == ID_MAX_LENGTH
    prefix, sep, digest = bounded.rpartition("~")
    assert sep and long_id.startswith(prefix) and len(digest) == 32
    assert re.fullmatch("[0-9a-f]{32}", digest)
    assert bounded_id(long_id) == bounded  # deterministic: redeliveries deduplicate
    assert len(bounded_id("a" * 201)) == ID_MAX_LENGTH
    assert len(bounded_id("a" * 3000, 64)) == 64


def test_bounded_id_keeps_two_long_ids_with_a_common_prefix_apart():
    common = "false_5511987654321@c.us_" + "A" * 2900
    first, second = bounded_id(common + "1"), bounded_id(common + "2")
    assert first != second
    assert first[:-33] == second[:-33]  # the readable part is the same, the hash differs


def test_bounded_id_hashes_the_cleaned_id():
    """A NUL the provider adds or drops between deliveries is the same id."""
    assert bounded_id("a" * 300 + "\x00") == bounded_id("a" * 300)


def test_bounded_id_needs_room_for_its_hash():
    with pytest.raises(ValueError):
        bounded_id("x", 33)


@given(value=any_text, max_length=st.integers(34, 300))
def test_bounded_id_always_storable_and_bounded(value, max_length):
    bounded = bounded_id(value, max_length)
    assert storable(bounded) and len(bounded) <= max_length
    assert bounded_id(value, max_length) == bounded


def test_clean_json_cleans_strings_and_keys():
    media = {"url\x00": "https://x/\x00f.jpg", "caption": "a\ud800", "size": 12, "ok": True, "none": None}
    assert clean_json(media) == {"url": "https://x/f.jpg", "caption": "a\ufffd", "size": 12, "ok": True, "none": None}
    assert clean_json({"k" * 100: "v" * 10_000}, max_length=100, max_key_length=10) == {
        "k" * 9 + ELLIPSIS: "v" * 99 + ELLIPSIS
    }
    assert clean_json({1: "one"}) == {"1": "one"}


def test_clean_json_bounds_depth_and_size():
    deep = {"a": {"b": {"c": {"d": {"e": "too deep"}, "kept": 1}}}}
    assert clean_json(deep) == {"a": {"b": {"c": {"kept": 1}}}}
    assert clean_json(list(range(1000))) == list(range(JSON_MAX_ITEMS))
    assert len(clean_json({str(i): i for i in range(1000)})) == JSON_MAX_ITEMS
    assert clean_json({"nan": float("nan"), "inf": float("inf"), "set": {1}, "f": 1.5}) == {"f": 1.5}
    assert clean_json(b"bytes") is None


@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | any_text,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5),
        max_leaves=40,
    )
)
def test_clean_json_always_storable(value):
    cleaned = clean_json(value, max_length=50, max_key_length=10, max_depth=3, max_items=4)
    text = json.dumps(cleaned, ensure_ascii=False, allow_nan=False)
    assert storable(text)
