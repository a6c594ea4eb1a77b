# The two commands of README.rst. Database settings: PGHOST, PGPORT, PGUSER, PGPASSWORD.
PYTHON ?= python3

.PHONY: demo test deps test-deps lint

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

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
