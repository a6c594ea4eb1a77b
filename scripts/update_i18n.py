"""`make i18n`: export the addon's .pot from a fresh database, merge i18n/pt_BR.po with it and list
the messages left to translate (exit status 1 while there are some).

The database (VM_I18N_DB, default vm_whatsapp_i18n) is created for the export and dropped after.
Merging uses gettext's msgmerge when installed (--no-fuzzy-matching), polib otherwise.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import odoo_env  # noqa: E402

I18N = odoo_env.ROOT / odoo_env.ADDON / "i18n"
POT = I18N / f"{odoo_env.ADDON}.pot"
LANGS = ["pt_BR"]


def export_pot(target):
    try:
        odoo_cmd, odoo_addons, _ = odoo_env.find_odoo()
    except odoo_env.OdooNotFound as e:
        sys.exit(f"make i18n needs Odoo 18.0: {e}")
    params = odoo_env.db_params()
    odoo_env.ensure_role(params)
    dbname = os.environ.get("VM_I18N_DB", "vm_whatsapp_i18n")
    odoo_env.drop_database(params, dbname)
    with tempfile.TemporaryDirectory(prefix="vm-whatsapp-i18n-") as workdir:
        conf = odoo_env.write_config(
            Path(workdir) / "odoo.conf", params, odoo_addons, odoo_env.free_port(), odoo_env.new_key(), dbname
        )
        base = [*odoo_cmd, "-c", str(conf), "-d", dbname, "--log-level=warn", "--stop-after-init"]
        env = odoo_env.odoo_env()
        try:
            print(f"Installing {odoo_env.ADDON} on a fresh database {dbname!r}...", flush=True)
            odoo_env.run_checked([*base, "-i", odoo_env.ADDON, "--without-demo=all"], env)
            odoo_env.run_checked([*base, f"--i18n-export={target}", f"--modules={odoo_env.ADDON}"], env)
        finally:
            odoo_env.drop_database(params, dbname)


def merge(po_path):
    if shutil.which("msgmerge"):
        cmd = ["msgmerge", "--quiet", "-U", "--no-fuzzy-matching", "--backup=none", str(po_path), str(POT)]
        subprocess.run(cmd, check=True)  # noqa: S603 - fixed command, our own paths
    else:
        po = polib.pofile(str(po_path))
        po.merge(polib.pofile(str(POT)))
        po.save()


def main():
    with tempfile.TemporaryDirectory(prefix="vm-whatsapp-pot-") as tmp:
        exported = Path(tmp) / "export.pot"
        export_pot(exported)
        shutil.copyfile(exported, POT)
    print(f"Wrote {POT.relative_to(odoo_env.ROOT)} ({len(polib.pofile(str(POT)))} messages).")
    left = 0
    for lang in LANGS:
        po_path = I18N / f"{lang}.po"
        merge(po_path)
        po = polib.pofile(str(po_path))
        todo = [e for e in po if not e.obsolete and (not e.msgstr or e.fuzzy)]
        print(f"{po_path.name}: {len(po.translated_entries())} translated, {len(todo)} to translate")
        for entry in todo:
            print(f"  {entry.msgid[:100]!r}")
        left += len(todo)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
