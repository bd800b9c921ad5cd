"""Access grants in the published format (``storj.io/common/grant``).

A grant is the protobuf ``Scope`` (``grant/internal/pb/scope.pico.go``)
serialized as base58check version 0::

    Scope            { string satellite_addr = 1; bytes api_key = 2;
                       EncryptionAccess encryption_access = 3; }
    EncryptionAccess { bytes default_key = 1; repeated StoreEntry store_entries = 2;
                       CipherSuite default_path_cipher = 3;
                       EncryptionParameters default_encryption_parameters = 4; }
    StoreEntry       { bytes bucket = 1; bytes unencrypted_path = 2;
                       bytes encrypted_path = 3; bytes key = 4;
                       CipherSuite path_cipher = 5;
                       EncryptionParameters encryption_parameters = 6; }
    EncryptionParameters { CipherSuite cipher_suite = 1; int64 block_size = 2; }

``api_key`` holds the raw macaroon bytes (not base58). The message classes
are built from descriptors in Python exactly like the caveat's (see
:mod:`jointcloud.keys.caveats`); ``satellite_addr`` is declared ``bytes``
(same wire form as ``string``) so that bad UTF-8 gets our own error rather
than the runtime's.

Grants made here use the null path cipher (``ENC_NULL``, DESIGN §6: the
server keeps object keys in clear, so caveat prefixes are plain text) and a
default key derived from the passphrase by :mod:`jointcloud.keys.kdf`.
:meth:`Grant.restrict` narrows the embedded API key and keeps the default
key: in this system the root key protects no data (objects are encrypted
under the server's master key) and is what proves the passphrase; the
published ``grant.Restrict`` would instead replace it by per-prefix keys,
and ``ParseAccess`` there does that on reading any restricted grant.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from jointcloud.errors import BadArgument
from jointcloud.keys.caveats import APIKey, KeyCaveat
from jointcloud.keys.kdf import KEY_SIZE, derive_root_key, project_salt
from jointcloud.keys.wire import (
    base58check_decode,
    base58check_encode,
    build_messages,
    decode_strict,
    message_class,
    message_proto,
)

__all__ = [
    "CipherSuite",
    "EncryptionParameters",
    "Grant",
    "StoreEntry",
    "new_grant",
    "parse_grant",
]


class CipherSuite(enum.IntEnum):
    """``storj.CipherSuite`` / ``pb.CipherSuite``."""

    UNSPECIFIED = 0
    NULL = 1
    AESGCM = 2
    SECRETBOX = 3
    NULL_BASE64URL = 4


@dataclass(frozen=True, slots=True)
class EncryptionParameters:
    cipher_suite: int = 0
    block_size: int = 0


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """A per-prefix key of the encryption store (grants restricted by the
    published tools carry these instead of a default key)."""

    bucket: bytes
    unencrypted_path: bytes
    encrypted_path: bytes
    key: bytes
    path_cipher: CipherSuite
    encryption_parameters: EncryptionParameters | None = None


_POOL = build_messages(
    "jointcloud/keys/grant_scope.proto",
    "grant",
    [
        message_proto(
            "Scope",
            [
                ("satellite_addr", 1, "bytes"),
                ("api_key", 2, "bytes"),
                ("encryption_access", 3, "message", ".grant.EncryptionAccess"),
            ],
        ),
        message_proto(
            "EncryptionAccess",
            [
                ("default_key", 1, "bytes"),
                ("store_entries", 2, "message", ".grant.StoreEntry", True),
                ("default_path_cipher", 3, "int32"),
                ("default_encryption_parameters", 4, "message", ".grant.EncryptionParameters"),
            ],
        ),
        message_proto(
            "StoreEntry",
            [
                ("bucket", 1, "bytes"),
                ("unencrypted_path", 2, "bytes"),
                ("encrypted_path", 3, "bytes"),
                ("key", 4, "bytes"),
                ("path_cipher", 5, "int32"),
                ("encryption_parameters", 6, "message", ".grant.EncryptionParameters"),
            ],
        ),
        message_proto(
            "EncryptionParameters", [("cipher_suite", 1, "int32"), ("block_size", 2, "int64")]
        ),
    ],
)
ScopeMessage = message_class(_POOL, "grant.Scope")


class _ParamsPB(Protocol):
    cipher_suite: int
    block_size: int

    def SetInParent(self) -> None: ...


class _EntryPB(Protocol):
    bucket: bytes
    unencrypted_path: bytes
    encrypted_path: bytes
    key: bytes
    path_cipher: int
    encryption_parameters: _ParamsPB

    def HasField(self, name: str) -> bool: ...


class _EntryList(Protocol):
    def add(self, **kwargs: Any) -> _EntryPB: ...

    def __iter__(self) -> Any: ...


class _EncAccessPB(Protocol):
    default_key: bytes
    store_entries: _EntryList
    default_path_cipher: int
    default_encryption_parameters: _ParamsPB

    def HasField(self, name: str) -> bool: ...

    def SetInParent(self) -> None: ...


class _ScopePB(Protocol):
    satellite_addr: bytes
    api_key: bytes
    encryption_access: _EncAccessPB

    def HasField(self, name: str) -> bool: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


def _cipher(value: int, what: str) -> CipherSuite:
    try:
        return CipherSuite(value)
    except ValueError:
        raise BadArgument(f"{what}: unknown cipher suite {value}") from None


def _params(msg: _ParamsPB) -> EncryptionParameters:
    return EncryptionParameters(cipher_suite=msg.cipher_suite, block_size=msg.block_size)


def _set_params(target: _ParamsPB, params: EncryptionParameters) -> None:
    target.SetInParent()
    target.cipher_suite = params.cipher_suite
    target.block_size = params.block_size


@dataclass(frozen=True, slots=True)
class Grant:
    """A parsed access grant (``grant.Access``)."""

    satellite_address: str
    api_key: APIKey
    root_key: bytes | None
    """The default key (the passphrase-derived root key), or ``None`` in a
    grant that carries only per-prefix keys."""
    path_cipher: CipherSuite = CipherSuite.NULL
    store_entries: tuple[StoreEntry, ...] = ()
    default_encryption_parameters: EncryptionParameters | None = None

    def serialize(self) -> str:
        """``(*Access).Serialize``: base58check version 0 of the ``Scope``."""
        if not self.satellite_address:
            raise BadArgument("access grant: missing satellite address")
        if self.root_key is not None and len(self.root_key) != KEY_SIZE:
            raise BadArgument(f"access grant: default key must be {KEY_SIZE} bytes")
        msg = cast(_ScopePB, ScopeMessage())
        msg.satellite_addr = self.satellite_address.encode("utf-8")
        msg.api_key = self.api_key.to_bytes()
        enc = msg.encryption_access
        enc.SetInParent()  # always written, as picobuf writes a non-nil message
        if self.root_key:
            enc.default_key = self.root_key
        for entry in self.store_entries:
            item = enc.store_entries.add(
                bucket=entry.bucket,
                unencrypted_path=entry.unencrypted_path,
                encrypted_path=entry.encrypted_path,
                key=entry.key,
                path_cipher=int(entry.path_cipher),
            )
            if entry.encryption_parameters is not None:
                _set_params(item.encryption_parameters, entry.encryption_parameters)
        enc.default_path_cipher = int(self.path_cipher)
        if self.default_encryption_parameters is not None:
            _set_params(enc.default_encryption_parameters, self.default_encryption_parameters)
        return base58check_encode(msg.SerializeToString(deterministic=True), 0)

    def restrict(self, caveat: KeyCaveat, *, nonce: bytes | None = None) -> Grant:
        """The same grant with its API key narrowed by ``caveat``."""
        return replace(self, api_key=self.api_key.restrict(caveat, nonce=nonce))

    def __repr__(self) -> str:  # the grant text and the key are credentials
        return (
            f"<Grant satellite={self.satellite_address!r} key={self.api_key!r} "
            f"path_cipher={self.path_cipher.name}>"
        )


def parse_grant(text: str) -> Grant:
    """``grant.ParseAccess`` (without its ``LimitTo`` of the key store)."""
    what = "access grant"
    raw = base58check_decode(text, what=what)
    msg = cast(_ScopePB, decode_strict(ScopeMessage, raw, what))
    try:
        satellite = msg.satellite_addr.decode("utf-8")
    except UnicodeDecodeError:
        raise BadArgument(f"{what}: satellite address is not UTF-8") from None
    if not satellite:
        raise BadArgument(f"{what}: missing satellite address")
    if not msg.api_key:
        raise BadArgument(f"{what}: missing API key")
    try:
        api_key = APIKey.from_bytes(msg.api_key)
    except BadArgument as exc:
        raise BadArgument(f"{what}: {exc.message}") from None

    enc = msg.encryption_access
    root_key: bytes | None = None
    if enc.default_key:
        if len(enc.default_key) != KEY_SIZE:
            raise BadArgument(f"{what}: default key must be {KEY_SIZE} bytes")
        root_key = bytes(enc.default_key)
    path_cipher = _cipher(enc.default_path_cipher, what)
    if path_cipher is CipherSuite.UNSPECIFIED:
        # as ParseAccess: grants from before the path cipher moved here used AES-GCM
        path_cipher = CipherSuite.AESGCM
    entries: list[StoreEntry] = []
    for item in enc.store_entries:
        if len(item.key) != KEY_SIZE:
            raise BadArgument(f"{what}: invalid key in encryption access entry")
        entries.append(
            StoreEntry(
                bucket=bytes(item.bucket),
                unencrypted_path=bytes(item.unencrypted_path),
                encrypted_path=bytes(item.encrypted_path),
                key=bytes(item.key),
                path_cipher=_cipher(item.path_cipher, what),
                encryption_parameters=(
                    _params(item.encryption_parameters)
                    if item.HasField("encryption_parameters")
                    else None
                ),
            )
        )
    params = (
        _params(enc.default_encryption_parameters)
        if enc.HasField("default_encryption_parameters")
        else None
    )
    return Grant(
        satellite_address=satellite,
        api_key=api_key,
        root_key=root_key,
        path_cipher=path_cipher,
        store_entries=tuple(entries),
        default_encryption_parameters=params,
    )


def new_grant(
    satellite: str,
    api_key: APIKey | str,
    passphrase: str | bytes,
    project_uuid: uuid.UUID | bytes | str,
) -> Grant:
    """A grant for ``api_key`` whose root key is derived from ``passphrase``
    and the project's salt (Argon2id, ~64 MiB; DESIGN §6), null path cipher."""
    if not isinstance(satellite, str) or not satellite.strip():
        raise BadArgument("access grant: missing satellite address")
    key = APIKey.parse(api_key) if isinstance(api_key, str) else api_key
    root_key = derive_root_key(passphrase, project_salt(project_uuid))
    return Grant(
        satellite_address=satellite.strip(),
        api_key=key,
        root_key=root_key,
        path_cipher=CipherSuite.NULL,
    )
