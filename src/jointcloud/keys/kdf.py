"""Root-key derivation of access grants, as ``storj.io/common/encryption/password.go``.

``DeriveRootKey(password, salt, path, threads)``::

    mixed_salt = HMAC-SHA256(key=password,   msg=salt)
    path_salt  = HMAC-SHA256(key=mixed_salt, msg=path)        # path "" for grants
    root_key   = Argon2id(password, path_salt, t=1, m=64 MiB, p=threads, 32 bytes)

``uplink.RequestAccessWithPassphrase`` calls it with ``path=""`` and
``threads=8`` (``uplink.DeriveEncryptionKey`` uses 1; the thread count
changes the output, so it is part of the format). The salt is the project
salt the satellite hands out: SHA-256 of the project UUID's 16 bytes
(DESIGN §6).

The server never keeps a root key. It keeps a *verifier*
``HMAC-SHA256(root_key, "jcs passphrase verifier")``: a one-way function of
the root key, so a leaked table does not yield grants, and a grant made with
another passphrase can be told apart without a second Argon2 run.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from argon2.low_level import Type, hash_secret_raw

from jointcloud.errors import BadArgument

__all__ = [
    "ARGON2_MEMORY_KIB",
    "ARGON2_THREADS",
    "ARGON2_TIME",
    "derive_root_key",
    "passphrase_verifier",
    "project_root_key",
    "project_salt",
    "verify_passphrase",
]

ARGON2_TIME = 1
ARGON2_MEMORY_KIB = 64 * 1024  # 64 MiB
ARGON2_THREADS = 8  # uplink.RequestAccessWithPassphrase
KEY_SIZE = 32
_VERIFIER_LABEL = b"jcs passphrase verifier"


def project_salt(project_id: uuid.UUID | bytes | str) -> bytes:
    """SHA-256 of the project UUID's 16 bytes."""
    if isinstance(project_id, str):
        try:
            project_id = uuid.UUID(project_id)
        except ValueError:
            raise BadArgument("project id: not a UUID") from None
    if isinstance(project_id, uuid.UUID):
        raw = project_id.bytes
    elif isinstance(project_id, bytes) and len(project_id) == 16:
        raw = project_id
    else:
        raise BadArgument("project id: expected a UUID (16 bytes)")
    return hashlib.sha256(raw).digest()


def _utf8(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        return passphrase.encode("utf-8")
    if isinstance(passphrase, bytes):
        return passphrase
    raise BadArgument("passphrase: expected text")


def derive_root_key(
    passphrase: str | bytes, salt: bytes, path: str = "", threads: int = ARGON2_THREADS
) -> bytes:
    """``encryption.DeriveRootKey``: 32 bytes (CPU- and memory-heavy: ~64 MiB)."""
    password = _utf8(passphrase)
    if not password:
        raise BadArgument("passphrase: empty")
    if not 1 <= threads <= 255:
        raise BadArgument("argon2 threads: must be 1..255")
    mixed = hmac.new(password, salt, hashlib.sha256).digest()
    path_salt = hmac.new(mixed, path.encode("utf-8"), hashlib.sha256).digest()
    return hash_secret_raw(
        secret=password,
        salt=path_salt,
        time_cost=ARGON2_TIME,
        memory_cost=ARGON2_MEMORY_KIB,
        parallelism=threads,
        hash_len=KEY_SIZE,
        type=Type.ID,
        version=19,
    )


def project_root_key(passphrase: str | bytes, project_id: uuid.UUID | bytes | str) -> bytes:
    """The root key an uplink would derive for this project and passphrase."""
    return derive_root_key(passphrase, project_salt(project_id))


def passphrase_verifier(root_key: bytes) -> bytes:
    """What the server keeps in place of the root key (32 bytes)."""
    if len(root_key) != KEY_SIZE:
        raise BadArgument(f"root key: expected {KEY_SIZE} bytes")
    return hmac.new(root_key, _VERIFIER_LABEL, hashlib.sha256).digest()


def verify_passphrase(root_key: bytes, verifier: bytes) -> bool:
    """True if ``root_key`` matches the stored ``verifier`` (constant-time)."""
    if len(root_key) != KEY_SIZE:
        return False
    return hmac.compare_digest(passphrase_verifier(root_key), verifier)
