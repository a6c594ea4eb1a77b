"""Shared setup for the tests that need no Odoo.

``visionmetrics_whatsapp/__init__.py`` imports Odoo, so the addon is registered here as a bare
package: its pure-Python sub-packages (``providers``, ``tools``...) import without running it.
"""

import importlib.machinery
import importlib.util
import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ADDON = "visionmetrics_whatsapp"

if ADDON not in sys.modules:
    _spec = importlib.machinery.ModuleSpec(ADDON, None, is_package=True)
    _package = importlib.util.module_from_spec(_spec)
    _package.__path__ = [str(ROOT / ADDON)]
    sys.modules[ADDON] = _package

# Recorded provider payloads, kept in the repository (tests/samples); $SAMPLES overrides.
SAMPLES = pathlib.Path(os.environ.get("SAMPLES") or ROOT / "tests" / "samples")


@pytest.fixture
def sample():
    """``sample("meta/text.json")`` -> the raw bytes of a recorded payload (skips when absent)."""

    def load(relative):
        path = SAMPLES / relative
        if not path.is_file():
            pytest.skip(f"sample payload {relative} not found under {SAMPLES} (set SAMPLES to the samples folder)")
        return path.read_bytes()

    return load


@pytest.fixture
def sample_json(sample):
    """``sample_json("meta/text.json")`` -> the decoded payload."""
    return lambda relative: json.loads(sample(relative))
