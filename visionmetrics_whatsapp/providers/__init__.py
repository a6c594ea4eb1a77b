"""Provider adapters: plain Python, no Odoo import (see base.py).

The registry: every module of this package is imported below, and each adapter class registers
itself with ``@register`` under its ``code``. Adding a provider is adding its file here; the
integration's provider selection (``selection()``), the fields its form shows (the class's
``capabilities()``) and the adapters the addon builds (``get_provider_class()``) all read
``PROVIDERS``.
"""

import importlib
import pkgutil

from .base import (
    CAPABILITIES,
    SIGNATURE_INVALID,
    SIGNATURE_MISSING,
    SIGNATURE_VALID,
    WEBHOOK_AUTHS,
    OutboundMedia,
    WhatsAppProvider,
)
from .events import EVENT_KINDS
from .exceptions import (
    WebhookPayloadError,
    WhatsAppProviderError,
    WhatsAppProviderOutcomeUnknownError,
    WhatsAppProviderRetryableError,
    WhatsAppSessionNotFoundError,
)

__all__ = [
    "CAPABILITIES",
    "PROVIDERS",
    "OutboundMedia",
    "SIGNATURE_INVALID",
    "SIGNATURE_MISSING",
    "SIGNATURE_VALID",
    "WebhookPayloadError",
    "WhatsAppProvider",
    "WhatsAppProviderError",
    "WhatsAppProviderOutcomeUnknownError",
    "WhatsAppProviderRetryableError",
    "WhatsAppSessionNotFoundError",
    "get_provider_class",
    "provider_classes",
    "register",
    "selection",
]

PROVIDERS = {}  # code -> adapter class


def register(cls):
    """Class decorator: make an adapter available under its ``code``. Refuses a class that does
    not describe itself (code, name, webhook authentication, event kinds) or takes the code of
    another class."""
    if not (isinstance(cls.code, str) and cls.code.isidentifier() and cls.provider_name):
        raise TypeError(f"{cls.__name__}: a provider needs a code (an identifier) and a provider_name.")
    if cls.webhook_auth not in WEBHOOK_AUTHS:
        raise TypeError(f"{cls.__name__}: webhook_auth must be one of {WEBHOOK_AUTHS}, not {cls.webhook_auth!r}.")
    if not cls.event_kinds <= EVENT_KINDS:
        raise TypeError(f"{cls.__name__}: unknown event kinds {sorted(cls.event_kinds - EVENT_KINDS)}.")
    other = PROVIDERS.get(cls.code)
    if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"Provider code {cls.code!r} is taken by {other.__name__}.")
    PROVIDERS[cls.code] = cls
    return cls


def get_provider_class(code):
    """The adapter class for a provider code; KeyError for an unknown code."""
    return PROVIDERS[code]


def provider_classes():
    """The registered adapter classes, in the order of the provider selection."""
    return sorted(PROVIDERS.values(), key=lambda cls: (cls.sequence, cls.code))


def selection():
    """``[(code, label)]`` of every registered provider: vm.whatsapp.integration.provider."""
    return [(cls.code, cls.label or cls.provider_name) for cls in provider_classes()]


def _import_adapters():
    """Import every module of this package, so that each adapter's ``@register`` runs."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_adapters()
