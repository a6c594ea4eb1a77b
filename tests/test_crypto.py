"""The AES-256-GCM envelope of integration secrets (visionmetrics_whatsapp/tools/crypto.py)."""

import base64

import pytest

from visionmetrics_whatsapp.tools import crypto

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
AAD = crypto.associated_data("vm.whatsapp.integration", "api_key", 7, 1)


def keyring(current=KEY, previous=()):
    return crypto.Keyring(current, previous)


def test_round_trip_and_envelope_shape():
    envelope = keyring().encrypt("s3cret-ção-محمد", AAD)
    prefix, kid, nonce, sealed = envelope.split(":")
    assert prefix == "vmenc1"
    assert kid == crypto.key_id(KEY)
    assert len(base64.b64decode(nonce)) == 12
    assert len(base64.b64decode(sealed)) == len("s3cret-ção-محمد".encode()) + 16  # ciphertext + tag
    assert "s3cret" not in envelope
    assert keyring().decrypt(envelope, AAD) == "s3cret-ção-محمد"


def test_nonce_is_new_for_every_encryption():
    ring = keyring()
    envelopes = {ring.encrypt("same", AAD) for _ in range(50)}
    assert len(envelopes) == 50
    assert len({e.split(":")[2] for e in envelopes}) == 50


@pytest.mark.parametrize("position", [2, 3])
def test_tampered_ciphertext_or_nonce_is_rejected(position):
    parts = keyring().encrypt("value", AAD).split(":")
    raw = bytearray(base64.b64decode(parts[position]))
    raw[0] ^= 0x01
    parts[position] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(crypto.DecryptionError, match="altered or copied"):
        keyring().decrypt(":".join(parts), AAD)


def test_other_slot_is_rejected():
    envelope = keyring().encrypt("value", AAD)
    for other in (
        crypto.associated_data("vm.whatsapp.integration", "api_key", 8, 1),  # another record
        crypto.associated_data("vm.whatsapp.integration", "api_key", 7, 2),  # another company
        crypto.associated_data("vm.whatsapp.integration", "webhook_secret", 7, 1),  # another field
    ):
        with pytest.raises(crypto.DecryptionError):
            keyring().decrypt(envelope, other)


def test_wrong_key_is_rejected_with_a_hint():
    envelope = keyring().encrypt("value", AAD)
    with pytest.raises(crypto.DecryptionError, match="integrations_key_previous"):
        keyring(OTHER_KEY).decrypt(envelope, AAD)


def test_same_key_id_but_wrong_key_material_is_rejected():
    envelope = keyring().encrypt("value", AAD)
    forged = envelope.replace(crypto.key_id(KEY), crypto.key_id(OTHER_KEY))
    with pytest.raises(crypto.DecryptionError, match="altered or copied"):
        keyring(OTHER_KEY).decrypt(forged, AAD)


@pytest.mark.parametrize("garbage", ["", "plain text", "vmenc1:abc", "vmenc2:a:b:c", "vmenc1:kid:!!:??", None])
def test_garbage_is_rejected(garbage):
    with pytest.raises(crypto.DecryptionError):
        keyring().decrypt(garbage, AAD)


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(KEY).decode(),
        base64.urlsafe_b64encode(KEY).decode().rstrip("="),
        KEY.hex(),
        KEY.hex().upper(),
        f"  {KEY.hex()}\n",
    ],
)
def test_key_formats(text):
    assert crypto.parse_key(text) == KEY


def test_raw_32_character_key():
    assert crypto.parse_key("0123456789abcdef0123456789abcdeX") == b"0123456789abcdef0123456789abcdeX"


@pytest.mark.parametrize("text", ["short", base64.b64encode(b"x" * 16).decode(), "ab" * 31, "é" * 20])
def test_malformed_key_names_the_option_and_the_fix(text):
    with pytest.raises(crypto.MalformedKeyError) as caught:
        crypto.parse_key(text)
    message = str(caught.value)
    assert "'integrations_key'" in message
    assert "os.urandom(32)" in message
    assert text.strip() not in message  # never echo the configured value


def test_missing_key():
    with pytest.raises(crypto.MissingKeyError, match="integrations_key.*INTEGRATIONS_KEY"):
        crypto.Keyring.from_config({}, environ={})


def test_config_option_wins_over_environment():
    ring = crypto.Keyring.from_config({"integrations_key": KEY.hex()}, environ={"INTEGRATIONS_KEY": OTHER_KEY.hex()})
    assert ring.current == KEY
    ring = crypto.Keyring.from_config({}, environ={"INTEGRATIONS_KEY": OTHER_KEY.hex()})
    assert ring.current == OTHER_KEY


def test_rotation_previous_key_decrypts_and_needs_rotation():
    old_envelope = keyring(OTHER_KEY).encrypt("value", AAD)
    ring = crypto.Keyring.from_config(
        {"integrations_key": KEY.hex(), "integrations_key_previous": OTHER_KEY.hex()}, environ={}
    )
    assert ring.decrypt(old_envelope, AAD) == "value"
    assert ring.needs_rotation(old_envelope)
    new_envelope = ring.encrypt(ring.decrypt(old_envelope, AAD), AAD)
    assert not ring.needs_rotation(new_envelope)
    # after the rotation the previous key can be removed
    assert keyring(KEY).decrypt(new_envelope, AAD) == "value"


def test_several_previous_keys():
    third = bytes(range(2, 34))
    ring = crypto.Keyring.from_values(KEY.hex(), f"{OTHER_KEY.hex()}, {third.hex()}")
    assert ring.decrypt(keyring(third).encrypt("v", AAD), AAD) == "v"


def test_self_test_returns_key_id():
    assert keyring().self_test() == crypto.key_id(KEY)


def test_a_cached_decryption_is_the_envelope_s_and_a_failure_is_not_remembered():
    ring = keyring()
    first, second = ring.encrypt("one", AAD), ring.encrypt("two", AAD)
    assert crypto.decrypt_cached(ring, first, AAD) == "one"
    assert crypto.decrypt_cached(ring, second, AAD) == "two", "a new secret is a new envelope"
    assert crypto.decrypt_cached(ring, first, AAD) == "one"
    for _attempt in range(2):
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt_cached(ring, first, AAD + "-other")
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_cached(keyring(OTHER_KEY), first, AAD)
