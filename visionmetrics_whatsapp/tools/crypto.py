"""AES-256-GCM encryption of integration secrets.

No Odoo import: the models give this module the key material and the associated data.

A ciphertext is a versioned envelope ``vmenc1:<key id>:<nonce b64>:<ciphertext+tag b64>``:

- the nonce is 96 random bits, new for every encryption;
- the key id (8 hex digits derived from the key) tells which key to decrypt with, so a previous
  key still decrypts after a rotation;
- the associated data (not stored, rebuilt by the caller) binds the ciphertext to its slot
  (model, field, record, company): a ciphertext copied elsewhere fails authentication.
"""

import base64
import binascii
import functools
import hashlib
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "vmenc1"
KEY_OPTION = "integrations_key"
PREVIOUS_KEY_OPTION = "integrations_key_previous"
KEY_ENV = "INTEGRATIONS_KEY"
PREVIOUS_KEY_ENV = "INTEGRATIONS_KEY_PREVIOUS"
GENERATE_HINT = 'python3 -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'
_HEX_RE = re.compile(r"^[0-9a-fA-F]{64}$")


class EncryptionKeyError(Exception):
    """Base of master-key problems."""


class MissingKeyError(EncryptionKeyError):
    """No master key is configured."""


class MalformedKeyError(EncryptionKeyError):
    """A configured master key is not 32 bytes in base64, hex or raw form."""


class DecryptionError(Exception):
    """A ciphertext cannot be decrypted: unknown key id, wrong associated data, or tampered."""


def parse_key(value, option=KEY_OPTION):
    """Decode a 32-byte key given as hex (64 digits), base64 (standard or URL-safe) or 32 raw
    characters. Raises MalformedKeyError naming ``option``."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    value = (value or "").strip()
    if _HEX_RE.match(value):
        return bytes.fromhex(value)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = decoder(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == 32:
            return decoded
    raw = value.encode("utf-8")
    if len(raw) == 32:
        return raw
    raise MalformedKeyError(
        f"The option '{option}' must be 32 bytes written as base64 (44 characters), hex (64 characters) "
        f"or 32 raw characters; the value configured is {len(raw)} characters long and is none of these. "
        f"Generate a key with: {GENERATE_HINT}"
    )


def key_id(key):
    """Short public identifier of a key (it reveals nothing usable about the key)."""
    return hashlib.sha256(b"visionmetrics-whatsapp-key-id:" + key).hexdigest()[:8]


class Keyring:
    """The current key (used to encrypt) and previous keys (only used to decrypt)."""

    def __init__(self, current, previous=()):
        if not current:
            raise MissingKeyError(
                f"No encryption key is configured. Set the option '{KEY_OPTION}' in the Odoo configuration "
                f"file (or the environment variable {KEY_ENV}) to a random 32-byte key, then restart Odoo. "
                f"Generate one with: {GENERATE_HINT}"
            )
        self.current = current
        self.current_id = key_id(current)
        self.keys = {self.current_id: current}
        for key in previous:
            self.keys.setdefault(key_id(key), key)

    @classmethod
    def from_values(cls, current, previous=None):
        """Build a keyring from configuration strings; ``previous`` may list several keys
        separated by commas."""
        if not (current or "").strip():
            cls(None)  # raises MissingKeyError
        previous_keys = [parse_key(part, PREVIOUS_KEY_OPTION) for part in (previous or "").split(",") if part.strip()]
        return cls(parse_key(current, KEY_OPTION), previous_keys)

    @classmethod
    def from_config(cls, options, environ=None):
        """Keyring from an Odoo configuration mapping, falling back to environment variables."""
        environ = os.environ if environ is None else environ
        current = options.get(KEY_OPTION) or environ.get(KEY_ENV)
        previous = options.get(PREVIOUS_KEY_OPTION) or environ.get(PREVIOUS_KEY_ENV)
        return _cached_keyring(cls, current, previous)

    def encrypt(self, plaintext, associated_data):
        """Encrypt ``plaintext`` (str) bound to ``associated_data`` (str); returns the envelope."""
        nonce = os.urandom(12)
        sealed = AESGCM(self.current).encrypt(nonce, plaintext.encode("utf-8"), associated_data.encode("utf-8"))
        return ":".join((PREFIX, self.current_id, base64.b64encode(nonce).decode(), base64.b64encode(sealed).decode()))

    def decrypt(self, envelope, associated_data):
        """Decrypt an envelope made by :meth:`encrypt`; raises DecryptionError on any problem."""
        try:
            prefix, kid, nonce_b64, sealed_b64 = envelope.split(":")
        except (AttributeError, ValueError):
            raise DecryptionError("The stored value is not an encrypted secret.") from None
        if prefix != PREFIX:
            raise DecryptionError(f"Unknown encryption format '{prefix}'.")
        key = self.keys.get(kid)
        if key is None:
            raise DecryptionError(
                f"The secret was encrypted with key {kid}, which is neither '{KEY_OPTION}' nor "
                f"'{PREVIOUS_KEY_OPTION}'. Configure that key as '{PREVIOUS_KEY_OPTION}' or enter the secret again."
            )
        try:
            nonce = base64.b64decode(nonce_b64, validate=True)
            sealed = base64.b64decode(sealed_b64, validate=True)
            plaintext = AESGCM(key).decrypt(nonce, sealed, associated_data.encode("utf-8"))
        except (binascii.Error, ValueError, InvalidTag):
            raise DecryptionError(
                "The secret failed authentication: it was altered or copied from another record."
            ) from None
        return plaintext.decode("utf-8")

    def needs_rotation(self, envelope):
        """True when the envelope was made with another key than the current one."""
        parts = (envelope or "").split(":")
        return len(parts) == 4 and parts[1] != self.current_id

    def self_test(self):
        """Encrypt and decrypt a random value with the current key; returns the key id."""
        probe = base64.b64encode(os.urandom(16)).decode()
        aad = "self-test"
        envelope = self.encrypt(probe, aad)
        if self.decrypt(envelope, aad) != probe:
            raise DecryptionError("The encryption self-test failed.")
        try:
            self.decrypt(envelope, aad + "-other")
        except DecryptionError:
            return self.current_id
        raise DecryptionError("The encryption self-test failed: associated data is not checked.")


@functools.lru_cache(maxsize=8)
def _cached_keyring(cls, current, previous):
    """Keyring.from_values, parsed once per configuration (every webhook request decrypts its
    integration's secret): a configuration that does not parse raises each time, uncached."""
    return cls.from_values(current, previous)


@functools.lru_cache(maxsize=256)
def decrypt_cached(keyring, envelope, associated_data):
    """``keyring.decrypt(envelope, associated_data)``, remembered by this process for the 256
    envelopes decrypted last: the webhook route decrypts its integration's secret for every
    request (a tenth of the route's own time). The plaintext stays in the memory of the process
    that can decrypt it anyway; a new secret is a new envelope, so nothing stale is returned, and
    a failure is not remembered."""
    return keyring.decrypt(envelope, associated_data)


def associated_data(model, field, res_id, company_id):
    """The associated data binding a ciphertext to its slot."""
    return f"visionmetrics_whatsapp|v1|{model}|{field}|{res_id}|{company_id}"
