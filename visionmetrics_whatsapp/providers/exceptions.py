"""Exceptions raised by provider adapters.

They carry no secret: messages are safe to show to an administrator and to log.
"""


class WhatsAppProviderError(Exception):
    """A provider call failed in a way that retrying as-is will not fix
    (bad credentials, unknown instance, rejected request)."""

    def __init__(self, message, status_code=None, provider=None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.provider = provider

    def __str__(self):
        return self.message


class WhatsAppSessionNotFoundError(WhatsAppProviderError):
    """The provider does not know the instance / session (deleted, or never created there)."""


class WhatsAppProviderRetryableError(WhatsAppProviderError):
    """A transient failure (timeout, connection refused, 5xx, 429): try again later."""


class WhatsAppProviderOutcomeUnknownError(WhatsAppProviderRetryableError):
    """The request may have reached the provider, but no answer came back (read time-out, the
    connection lost after the request was sent): a message may or may not have been sent, so it
    must not be sent again blindly. Idempotent reads may still be retried."""


class WebhookPayloadError(ValueError):
    """A webhook body that cannot be understood (not JSON, wrong shape)."""
