"""S3 credentials and auth records in storj.io/edge's encodings (pkg/auth/authdb)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from jointcloud.errors import BadArgument
from jointcloud.keys import credentials as cr

# edge pkg/authclient/authclient_test.go, pkg/server/middleware/*_test.go
EDGE_ACCESS_KEY_ID = "jwaohtj3dhixxfpzhwj522x7z3pb"
EDGE_ACCESS_KEY_ID_2 = "ju5umq3nrhaf6xo6srpb4xvldglq"  # linksharing dns_static_test.go


def test_edge_ids_parse() -> None:
    raw = cr.access_key_id_bytes(EDGE_ACCESS_KEY_ID)
    assert len(raw) == 16
    # Go's base32 ignores the unused low bits of the last character:
    # "...pb" is the same key as the canonical "...pa"
    assert cr.parse_access_key_id(EDGE_ACCESS_KEY_ID) == "jwaohtj3dhixxfpzhwj522x7z3pa"
    assert cr.access_key_id_bytes(EDGE_ACCESS_KEY_ID.upper()) == raw
    assert cr.parse_access_key_id(EDGE_ACCESS_KEY_ID_2) == EDGE_ACCESS_KEY_ID_2
    # byte 0 is edge's version byte 77
    decoded = base64.b32decode(EDGE_ACCESS_KEY_ID_2.upper() + "====")
    assert decoded[0] == 77 and decoded[1:] == cr.access_key_id_bytes(EDGE_ACCESS_KEY_ID_2)


def test_new_ids_and_secrets_have_the_published_shape() -> None:
    ids = {cr.new_access_key_id() for _ in range(20)}
    assert len(ids) == 20
    for i in ids:
        assert len(i) == 28 and i.startswith("j") and i == i.lower()
        assert cr.parse_access_key_id(i) == i
    secret = cr.new_secret_key()
    assert len(secret) == 53 and secret.startswith("j")
    raw = cr.secret_key_bytes(secret)
    assert len(raw) == 32 and cr.secret_key_text(raw) == secret
    assert base64.b32decode(secret.upper() + "===")[0] == 78


def test_key_hash_is_sha256_of_the_key_bytes() -> None:
    raw = cr.access_key_id_bytes(EDGE_ACCESS_KEY_ID_2)
    assert cr.key_hash(EDGE_ACCESS_KEY_ID_2) == hashlib.sha256(raw).digest()
    assert cr.key_hash(raw) == cr.key_hash(EDGE_ACCESS_KEY_ID_2.upper())
    assert cr.key_hash(EDGE_ACCESS_KEY_ID) == cr.key_hash("jwaohtj3dhixxfpzhwj522x7z3pa")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "access key id: expected 28 characters, got 0"),
        (EDGE_ACCESS_KEY_ID[1:], "access key id: expected 28 characters, got 27"),
        (EDGE_ACCESS_KEY_ID + "a", "access key id: expected 28 characters, got 29"),
        ("jwaohtj3dhixxfpzhwj522x7z3p1", "access key id: not base32"),
        ("jwaohtj3dhixxfpzhwj522x7z3p=", "access key id: not base32"),
        ("jwaohtj3dhixxfpzhwj522x7z3pé", "access key id: not base32"),
        ("a" + EDGE_ACCESS_KEY_ID[1:], "access key id: wrong version byte"),
    ],
)
def test_bad_access_key_ids(text: str, problem: str) -> None:
    with pytest.raises(BadArgument) as err:
        cr.access_key_id_bytes(text)
    assert err.value.message.startswith(problem)


def test_bad_secret_keys() -> None:
    with pytest.raises(BadArgument, match="secret key: expected 53 characters"):
        cr.parse_secret_key(cr.new_access_key_id())
    with pytest.raises(BadArgument, match="secret key: wrong version byte"):
        cr.parse_secret_key("a" + cr.new_secret_key()[1:])


def test_seal_record_is_edge_database_put() -> None:
    """Spelled out from authdb.Database.Put: AES-GCM, key = id bytes ‖ 16
    zero bytes, nonce 0 for the secret (its 32 bytes), nonce 1 for the grant."""
    key_id = EDGE_ACCESS_KEY_ID_2
    secret = cr.new_secret_key()
    grant = "1grant"
    sealed = cr.seal_record(key_id, secret, grant)
    aead = AESGCM(cr.access_key_id_bytes(key_id) + bytes(16))
    assert sealed.encrypted_secret_key == aead.encrypt(bytes(12), cr.secret_key_bytes(secret), None)
    assert sealed.encrypted_access_grant == aead.encrypt(b"\x01" + bytes(11), b"1grant", None)
    assert cr.open_record(key_id, sealed) == (secret, grant)
    other = cr.new_access_key_id()
    with pytest.raises(BadArgument, match="does not decrypt with this access key id"):
        cr.open_record(other, sealed)


def test_seal_and_open() -> None:
    key_id = cr.new_access_key_id()
    sealed = cr.seal(key_id, b"hello")
    assert sealed != cr.seal(key_id, b"hello")  # random nonce
    assert cr.open(key_id, sealed) == b"hello" == cr.unseal(key_id, sealed)
    with pytest.raises(BadArgument, match="does not decrypt"):
        cr.open(cr.new_access_key_id(), sealed)
    with pytest.raises(BadArgument, match="does not decrypt"):
        cr.open(key_id, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(BadArgument, match="truncated"):
        cr.open(key_id, sealed[:20])


_B32ISH = "abcdefghijklmnopqrstuvwxyz234567ABZ01=8 é"


@settings(max_examples=300)
@given(
    st.text(max_size=60)
    | st.text(alphabet=_B32ISH, min_size=28, max_size=28)
    | st.text(alphabet=_B32ISH, min_size=53, max_size=53)
)
def test_fuzz_ids_only_bad_argument(text: str) -> None:
    for parse in (cr.parse_access_key_id, cr.parse_secret_key):
        try:
            parse(text)
        except BadArgument:
            continue
