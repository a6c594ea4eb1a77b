"""pt_BR.po is complete for the addon's .pot: every message translated, none fuzzy, the
placeholders kept. (Whether the .pot itself is up to date with the code is checked on the Odoo
side: visionmetrics_whatsapp/tests/test_i18n_pot.py compares it with what Odoo exports.)"""

import re
from pathlib import Path

import polib
import pytest

ADDON = "visionmetrics_whatsapp"
I18N = Path(__file__).resolve().parent.parent / ADDON / "i18n"
POT = I18N / f"{ADDON}.pot"
LANGS = ["pt_BR"]
# %(name)s, %s, %d... (Python and Odoo's JS sprintf) and {name} (Python format / OWL)
PLACEHOLDER_RE = re.compile(r"%\(\w+\)[sdifr]|%[sdifr]|\{\w*\}")


def key(entry):
    return (entry.msgctxt, entry.msgid)


def describe(entry):
    first = entry.msgid.splitlines()[0] if entry.msgid else ""
    return f"{first[:70]!r} ({', '.join(o[0] for o in entry.occurrences[:2]) or 'no occurrence'})"


@pytest.fixture(scope="module")
def template():
    pot = polib.pofile(str(POT))
    assert len(pot) > 0, f"{POT} has no message"
    return pot


@pytest.fixture(scope="module", params=LANGS)
def catalog(request):
    path = I18N / f"{request.param}.po"
    assert path.is_file(), f"{path} is missing"
    po = polib.pofile(str(path))
    assert po.metadata.get("Language") == request.param, f"{path.name}: header Language is not {request.param}"
    return po


def test_every_message_of_the_pot_is_in_the_po(template, catalog):
    translated = {key(e) for e in catalog if not e.obsolete}
    missing = [describe(e) for e in template if key(e) not in translated]
    assert not missing, f"{len(missing)} message(s) of the .pot not in the .po (run msgmerge):\n" + "\n".join(missing)


def test_no_message_is_untranslated_or_fuzzy(catalog):
    empty = [describe(e) for e in catalog if not e.obsolete and not (e.msgstr or any(e.msgstr_plural.values()))]
    fuzzy = [describe(e) for e in catalog if not e.obsolete and e.fuzzy]
    assert not empty, f"{len(empty)} message(s) with an empty msgstr:\n" + "\n".join(empty)
    assert not fuzzy, f"{len(fuzzy)} fuzzy message(s) (Odoo ignores them):\n" + "\n".join(fuzzy)


def test_the_po_has_no_message_the_pot_dropped(template, catalog):
    current = {key(e) for e in template}
    stale = [describe(e) for e in catalog if not e.obsolete and key(e) not in current]
    assert not stale, f"{len(stale)} message(s) no longer in the .pot (run msgmerge):\n" + "\n".join(stale)


def test_translations_keep_the_placeholders(catalog):
    # a lost or renamed %(count)s raises at run time in the user's language only
    wrong = []
    for entry in catalog:
        if entry.obsolete or not entry.msgstr:
            continue
        expected = sorted(PLACEHOLDER_RE.findall(entry.msgid))
        found = sorted(PLACEHOLDER_RE.findall(entry.msgstr))
        if expected != found:
            wrong.append(f"{describe(entry)}: {expected} in the source, {found} in the translation")
    assert not wrong, "placeholders differ:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    "msgstr, fuzzy, failing",
    [
        ("Olá", False, None),
        ("", False, "test_no_message_is_untranslated_or_fuzzy"),
        ("Olá", True, "test_no_message_is_untranslated_or_fuzzy"),
    ],
)
def test_the_checks_catch_a_broken_catalog(template, msgstr, fuzzy, failing):
    """The checks above on a copy of the .pot with one message translated in different ways."""
    po = polib.POFile()
    po.metadata = {"Language": "pt_BR"}
    for entry in template:
        po.append(polib.POEntry(msgid=entry.msgid, msgctxt=entry.msgctxt, msgstr=entry.msgid))
    po[0].msgstr = msgstr
    if fuzzy:
        po[0].flags.append("fuzzy")
    if failing:
        with pytest.raises(AssertionError):
            test_no_message_is_untranslated_or_fuzzy(po)
    else:
        test_no_message_is_untranslated_or_fuzzy(po)
    test_every_message_of_the_pot_is_in_the_po(template, po)
    po.pop()
    with pytest.raises(AssertionError, match="not in the .po"):
        test_every_message_of_the_pot_is_in_the_po(template, po)
    po.append(polib.POEntry(msgid="A message nobody wrote", msgstr="Uma mensagem"))
    with pytest.raises(AssertionError, match="no longer in the .pot"):
        test_the_po_has_no_message_the_pot_dropped(template, po)
    po.append(polib.POEntry(msgid="%(count)s sent", msgstr="%(contagem)s enviadas"))
    with pytest.raises(AssertionError, match="placeholders differ"):
        test_translations_keep_the_placeholders(po)
