"""Provider adapters: plain Python, no Odoo import (see base.py)."""

from .base import SIGNATURE_INVALID, SIGNATURE_MISSING, SIGNATURE_VALID, WhatsAppProvider
from .exceptions import (
    WebhookPayloadError,
    WhatsAppProviderError,
    WhatsAppProviderRetryableError,
    WhatsAppSessionNotFoundError,
)

__all__ = [
    "PROVIDERS",
    "SIGNATURE_INVALID",
    "SIGNATURE_MISSING",
    "SIGNATURE_VALID",
    "WebhookPayloadError",
    "WhatsAppProvider",
    "WhatsAppProviderError",
    "WhatsAppProviderRetryableError",
    "WhatsAppSessionNotFoundError",
    "get_provider_class",
    "register",
]

PROVIDERS = {}


def register(cls):
    """Class decorator: make an adapter available under its ``code``."""
    PROVIDERS[cls.code] = cls
    return cls


def get_provider_class(code):
    """The adapter class for a provider code; KeyError for an unknown code."""
    return PROVIDERS[code]


# Importing the adapters registers them.
from . import dialog360, evolution, meta, sandbox, waha  # noqa: E402, F401
