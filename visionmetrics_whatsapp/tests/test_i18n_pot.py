import io
from pathlib import Path

import polib

from odoo.tests import TransactionCase, tagged
from odoo.tools.translate import trans_export

ADDON = "visionmetrics_whatsapp"
POT = Path(__file__).resolve().parent.parent / "i18n" / f"{ADDON}.pot"
HOW_TO = (
    "regenerate it: odoo --i18n-export=/tmp/x.pot --modules=visionmetrics_whatsapp --stop-after-init, "
    "copy it to i18n/, msgmerge pt_BR.po, translate (see README.rst, Translations)"
)


@tagged("post_install", "-at_install")
class TestPotIsCurrent(TransactionCase):
    """i18n/visionmetrics_whatsapp.pot holds exactly the messages Odoo exports for the addon
    (the order, the header and the source references aside)."""

    def _exported(self):
        buffer = io.BytesIO()
        trans_export(None, [ADDON], buffer, "po", self.env.cr)
        return {(e.msgctxt, e.msgid) for e in polib.pofile(buffer.getvalue().decode())}

    def test_the_pot_has_every_exported_message_and_no_other(self):
        exported = self._exported()
        self.assertGreater(len(exported), 100)
        in_file = {(e.msgctxt, e.msgid) for e in polib.pofile(str(POT))}
        missing = sorted(m for _c, m in exported - in_file)
        stale = sorted(m for _c, m in in_file - exported)
        problems = [f"not in the .pot: {m[:80]!r}" for m in missing]
        problems += [f"no longer exported: {m[:80]!r}" for m in stale]
        self.assertFalse(problems, f"{POT.name} is out of date ({HOW_TO}):\n" + "\n".join(problems))
