"""`pip install .` makes `odoo.addons.visionmetrics_whatsapp` importable and installs the addon's
Python dependencies. Odoo itself is not installed by this package (see README.rst)."""

from pathlib import Path

from setuptools import setup

ADDON = "visionmetrics_whatsapp"
manifest = eval(Path(ADDON, "__manifest__.py").read_text())  # a plain dict literal  # noqa: S307
packages = [".".join(("odoo", "addons", *init.parent.parts)) for init in sorted(Path(ADDON).rglob("__init__.py"))]
requirements = [
    line.strip() for line in Path("requirements.txt").read_text().splitlines() if line.strip() and line[0] != "#"
]

setup(
    name="odoo-addon-visionmetrics-whatsapp",
    version=manifest["version"],
    description=manifest["summary"],
    long_description=Path("README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license=manifest["license"],
    author=manifest["author"],
    python_requires=">=3.10",
    packages=packages,
    package_dir={f"odoo.addons.{ADDON}": ADDON},
    include_package_data=True,
    package_data={
        f"odoo.addons.{ADDON}": [
            "*.py",
            "**/*.xml",
            "**/*.csv",
            "**/*.po",
            "**/*.png",
            "**/*.js",
            "**/*.scss",
            "**/*.rst",
            "**/*.md",
            "static/**/*",
        ]
    },
    install_requires=requirements,
    classifiers=[
        "Framework :: Odoo",
        "Framework :: Odoo :: 18.0",
        "License :: OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)",
    ],
)
