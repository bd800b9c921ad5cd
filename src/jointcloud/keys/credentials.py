"""S3 credentials of the auth service, in the published encodings (storj.io/edge
``pkg/auth/authdb``).

Access key id
    16 random bytes (edge's ``EncryptionKey``), written as lowercase RFC 4648
    base32 without padding of ``0x4d ‖ key`` (version byte 77): 17 bytes →
    28 characters, always starting with ``j``.
Secret key
    32 random bytes (``SecretKey``), written as base32 of ``0x4e ‖ secret``
    (version byte 78): 33 bytes → 53 characters, starting with ``j``. The
    text form is what S3 clients sign with.
Key hash
    ``SHA-256(key)`` of the 16 key bytes (``EncryptionKey.Hash``): the
    record's index, so the table alone does not give the id.
Records
    edge encrypts the secret and the grant with AES-GCM under
    ``key ‖ 16 zero bytes`` (``ToStorjKey``: AES-256), the secret with
    the all-zero 12-byte nonce and the grant with nonce ``01 00 … 00``.
    :func:`seal_record` / :func:`open_record` do exactly that, so records
    are interchangeable with edge's (each key encrypts exactly these two
    messages, so the fixed nonces never repeat). :func:`seal` /
    :func:`open` use the same key with a random nonce for anything else.

Parsing accepts what edge's ``FromBase32`` accepts: either case, and (as Go's
decoder) any value in the unused low bits of the last character, so
``…z3pa`` and ``…z3pb`` are one id (edge's own tests use the latter). The
record is found by :func:`key_hash` of the *bytes*, so spellings never
matter; :func:`parse_access_key_id` returns the canonical one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from jointcloud.errors import BadArgument

__all__ = [
    "ACCESS_KEY_ID_LENGTH",
    "SECRET_KEY_LENGTH",
    "SealedRecord",
    "access_key_id_bytes",
    "access_key_id_text",
    "key_hash",
    "new_access_key_id",
    "new_secret_key",
    "open",
    "open_record",
    "parse_access_key_id",
    "parse_secret_key",
    "seal",
    "seal_record",
    "secret_key_bytes",
    "secret_key_text",
    "unseal",
]

ACCESS_KEY_ID_VERSION = 77
SECRET_KEY_VERSION = 78
ACCESS_KEY_ID_SIZE = 16
SECRET_KEY_SIZE = 32
ACCESS_KEY_ID_LENGTH = 28
SECRET_KEY_LENGTH = 53
_NONCE_SIZE = 12
_SECRET_NONCE = bytes(12)
_GRANT_NONCE = b"\x01" + bytes(11)


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str, *, length: int, version: int, size: int, what: str) -> bytes:
    if not isinstance(text, str):
        raise BadArgument(f"{what}: expected text")
    if len(text) != length:
        raise BadArgument(f"{what}: expected {length} characters, got {len(text)}")
    upper = text.upper()
    if not upper.isascii() or not upper.isalnum():
        raise BadArgument(f"{what}: not base32")
    padded = upper + "=" * (-len(upper) % 8)
    try:
        raw = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        raise BadArgument(f"{what}: not base32") from None
    if len(raw) != size + 1:
        raise BadArgument(f"{what}: not base32")
    if raw[0] != version:
        raise BadArgument(f"{what}: wrong version byte {raw[0]}")
    return raw[1:]


# --- access key ids --------------------------------------------------------


def access_key_id_text(key: bytes) -> str:
    """The 28-character id of 16 key bytes (``EncryptionKey.ToBase32``)."""
    if len(key) != ACCESS_KEY_ID_SIZE:
        raise BadArgument(f"access key id: expected {ACCESS_KEY_ID_SIZE} bytes")
    return _b32(bytes([ACCESS_KEY_ID_VERSION]) + key)


def new_access_key_id() -> str:
    """A new random access key id (``NewEncryptionKey().ToBase32()``)."""
    return access_key_id_text(secrets.token_bytes(ACCESS_KEY_ID_SIZE))


def access_key_id_bytes(access_key_id: str) -> bytes:
    """The 16 key bytes of an id (``EncryptionKey.FromBase32``)."""
    return _unb32(
        access_key_id,
        length=ACCESS_KEY_ID_LENGTH,
        version=ACCESS_KEY_ID_VERSION,
        size=ACCESS_KEY_ID_SIZE,
        what="access key id",
    )


def parse_access_key_id(access_key_id: str) -> str:
    """The id validated and in its canonical (lowercase) spelling."""
    return access_key_id_text(access_key_id_bytes(access_key_id))


def key_hash(access_key_id: str | bytes) -> bytes:
    """``EncryptionKey.Hash``: SHA-256 of the 16 key bytes (32 bytes)."""
    key = access_key_id_bytes(access_key_id) if isinstance(access_key_id, str) else access_key_id
    if len(key) != ACCESS_KEY_ID_SIZE:
        raise BadArgument(f"access key id: expected {ACCESS_KEY_ID_SIZE} bytes")
    return hashlib.sha256(key).digest()


# --- secret keys -----------------------------------------------------------


def secret_key_text(secret: bytes) -> str:
    """The 53-character text of 32 secret bytes (``SecretKey.ToBase32``)."""
    if len(secret) != SECRET_KEY_SIZE:
        raise BadArgument(f"secret key: expected {SECRET_KEY_SIZE} bytes")
    return _b32(bytes([SECRET_KEY_VERSION]) + secret)


def new_secret_key() -> str:
    return secret_key_text(secrets.token_bytes(SECRET_KEY_SIZE))


def secret_key_bytes(secret_key: str) -> bytes:
    return _unb32(
        secret_key,
        length=SECRET_KEY_LENGTH,
        version=SECRET_KEY_VERSION,
        size=SECRET_KEY_SIZE,
        what="secret key",
    )


def parse_secret_key(secret_key: str) -> str:
    return secret_key_text(secret_key_bytes(secret_key))


# --- record encryption -----------------------------------------------------


def _aead(access_key_id: str | bytes) -> AESGCM:
    key = access_key_id_bytes(access_key_id) if isinstance(access_key_id, str) else access_key_id
    if len(key) != ACCESS_KEY_ID_SIZE:
        raise BadArgument(f"access key id: expected {ACCESS_KEY_ID_SIZE} bytes")
    return AESGCM(key + bytes(32 - ACCESS_KEY_ID_SIZE))  # EncryptionKey.ToStorjKey


def _edge_encrypt(aead: AESGCM, nonce: bytes, data: bytes) -> bytes:
    return aead.encrypt(nonce, data, None) if data else b""  # encryption.Encrypt: "" stays ""


def _edge_decrypt(aead: AESGCM, nonce: bytes, data: bytes, what: str) -> bytes:
    if not data:
        return b""
    try:
        return aead.decrypt(nonce, data, None)
    except InvalidTag:
        raise BadArgument(f"{what}: does not decrypt with this access key id") from None


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """The two encrypted columns of an auth record, as edge stores them."""

    encrypted_secret_key: bytes
    encrypted_access_grant: bytes


def seal_record(access_key_id: str, secret_key: str, access_grant: str) -> SealedRecord:
    """Encrypt a record's secret (its 32 bytes) and grant (its text) as edge's
    ``Database.Put`` does."""
    aead = _aead(access_key_id)
    return SealedRecord(
        encrypted_secret_key=_edge_encrypt(aead, _SECRET_NONCE, secret_key_bytes(secret_key)),
        encrypted_access_grant=_edge_encrypt(aead, _GRANT_NONCE, access_grant.encode("utf-8")),
    )


def open_record(access_key_id: str, record: SealedRecord) -> tuple[str, str]:
    """``(secret_key, access_grant)`` of a record sealed by :func:`seal_record`
    or by edge (``Database.Get``)."""
    aead = _aead(access_key_id)
    secret = _edge_decrypt(aead, _SECRET_NONCE, record.encrypted_secret_key, "secret key")
    grant = _edge_decrypt(aead, _GRANT_NONCE, record.encrypted_access_grant, "access grant")
    if len(secret) != SECRET_KEY_SIZE:
        raise BadArgument("secret key: sealed record holds a malformed secret")
    try:
        grant_text = grant.decode("utf-8")
    except UnicodeDecodeError:
        raise BadArgument("access grant: sealed record holds malformed text") from None
    return secret_key_text(secret), grant_text


def seal(access_key_id: str, plaintext: bytes) -> bytes:
    """AES-256-GCM under the id's key with a random nonce: ``nonce(12) ‖
    ciphertext ‖ tag(16)``. For any value other than the two record columns."""
    nonce = secrets.token_bytes(_NONCE_SIZE)
    return nonce + _aead(access_key_id).encrypt(nonce, bytes(plaintext), None)


def unseal(access_key_id: str, sealed: bytes) -> bytes:
    """Inverse of :func:`seal`; a wrong id or altered bytes is a BadArgument."""
    aead = _aead(access_key_id)
    if len(sealed) < _NONCE_SIZE + 16:
        raise BadArgument("sealed value: truncated")
    try:
        return aead.decrypt(sealed[:_NONCE_SIZE], bytes(sealed[_NONCE_SIZE:]), None)
    except InvalidTag:
        raise BadArgument("sealed value: does not decrypt with this access key id") from None


open = unseal  # the name the auth service asked for; shadows the builtin only here
