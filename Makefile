# The two commands of README.rst. Database settings: PGHOST, PGPORT, PGUSER, PGPASSWORD.
PYTHON ?= python3

.PHONY: demo test deps test-deps lint i18n screenshots

deps:
	$(PYTHON) -m pip install --quiet -r requirements.txt

test-deps:
	$(PYTHON) -m pip install --quiet -r requirements-test.txt

## make demo: database visionmetrics_demo with the addon, a sandbox integration and demo leads,
## served at http://localhost:8069 (admin / admin)
demo: deps
	$(PYTHON) scripts/demo.py

## make test: tests without Odoo, then (when Odoo 18 is importable or ODOO_SRC is set) the Odoo
## tests on a fresh database and the end-to-end tests
test: test-deps
	$(PYTHON) tests/run_suites.py

## make lint: ruff (lint and format) and pylint-odoo on every file, through pre-commit
lint: test-deps
	$(PYTHON) -m pre_commit run --all-files --show-diff-on-failure

## make i18n: export the .pot from a fresh database, merge pt_BR.po, list what is left to translate
i18n: test-deps
	$(PYTHON) scripts/update_i18n.py

## make screenshots: PNGs of the screens listed in scripts/screenshots.py, from the demo database
## (the server at http://localhost:8069, or one started for the run), into static/description/
screenshots: deps
	$(PYTHON) scripts/screenshots.py
