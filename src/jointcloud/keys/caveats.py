"""Caveats and macaroon API keys in the published format (storj.io/common/macaroon).

An API key is a :class:`~jointcloud.keys.macaroon.Macaroon` whose caveats are
protobuf ``macaroon.Caveat`` messages (``types.proto``), serialized as
base58check with version byte 0 (the Bitcoin alphabet; checksum = first 4
bytes of SHA-256(SHA-256(version ‖ payload))).

The protobuf classes are built at import time from a
``FileDescriptorProto`` written below in Python (field numbers copied from
``types.proto``; the machinery and base58check are in ``keys/wire.py``).
Field order on the wire is by field number, which is also the order
``types.pico.go`` writes.

Decoding is strict where the Go decoder is lenient: a caveat with a field
this module does not know (say, a restriction added by a newer release) is
refused with ``"caveat: unknown field N"`` rather than ignored, because an
ignored restriction would widen access. Everything else in a key made by
the published tools is decoded faithfully and left for the caller to judge;
the checks of :meth:`KeyCaveat.validate` (time window, empty permission set,
positive TTL, aware datetimes) run when a caveat is *added* here.

Paths: our grants use the null path cipher (DESIGN §6), so a caveat's
``encrypted_path_prefix`` is the plain UTF-8 object-key prefix and its
``bucket`` the package (S3 bucket) name. Bytes that are not UTF-8 (a prefix
encrypted by a client using AES-GCM path encryption) decode with
``surrogateescape``: they round-trip exactly and never match a real path.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

from jointcloud.errors import BadArgument
from jointcloud.keys.macaroon import Macaroon, new_secret
from jointcloud.keys.wire import (
    MAX_BASE58,
    base58check_decode,
    base58check_encode,
    build_messages,
    decode_strict,
    message_class,
    message_proto,
)

__all__ = [
    "BASIC_PERMISSIONS",
    "MAX_BASE58",
    "APIKey",
    "CaveatPath",
    "KeyCaveat",
    "Permission",
    "base58check_decode",
    "base58check_encode",
    "new_api_key",
    "new_secret",
]

NONCE_SIZE = 4
SECRET_SIZE = 32
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)  # Go's time.Time{}: never encoded
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


_CAVEAT_POOL = build_messages(
    "jointcloud/keys/macaroon_types.proto",
    "macaroon",
    [
        message_proto(
            "Caveat",
            [
                ("disallow_reads", 1, "bool"),
                ("disallow_writes", 2, "bool"),
                ("disallow_lists", 3, "bool"),
                ("disallow_deletes", 4, "bool"),
                ("disallow_locks", 5, "bool"),
                ("disallow_put_retention", 6, "bool"),
                ("disallow_get_retention", 7, "bool"),
                ("disallow_put_legal_hold", 8, "bool"),
                ("disallow_get_legal_hold", 9, "bool"),
                ("allowed_paths", 10, "message", ".macaroon.Caveat_Path", True),
                ("disallow_bypass_governance_retention", 11, "bool"),
                ("disallow_put_bucket_object_lock_configuration", 12, "bool"),
                ("disallow_get_bucket_object_lock_configuration", 13, "bool"),
                ("disallow_put_bucket_notification_configuration", 14, "bool"),
                ("disallow_get_bucket_notification_configuration", 15, "bool"),
                ("not_after", 20, "message", ".google.protobuf.Timestamp"),
                ("not_before", 21, "message", ".google.protobuf.Timestamp"),
                ("max_object_ttl", 22, "message", ".google.protobuf.Duration"),
                ("nonce", 30, "bytes"),
            ],
        ),
        # A top-level message rather than a nested one: the name never
        # reaches the wire, and a flat list keeps the descriptor simple.
        message_proto(
            "Caveat_Path", [("bucket", 1, "bytes"), ("encrypted_path_prefix", 2, "bytes")]
        ),
    ],
)
CaveatMessage = message_class(_CAVEAT_POOL, "macaroon.Caveat")


class _SecondsNanos(Protocol):
    seconds: int
    nanos: int

    def SetInParent(self) -> None: ...


class _PathPB(Protocol):
    bucket: bytes
    encrypted_path_prefix: bytes


class _PathList(Protocol):
    def add(self, **kwargs: bytes) -> _PathPB: ...

    def __iter__(self) -> Any: ...


class _CaveatPB(Protocol):
    allowed_paths: _PathList
    not_after: _SecondsNanos
    not_before: _SecondsNanos
    max_object_ttl: _SecondsNanos
    nonce: bytes

    def HasField(self, name: str) -> bool: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


# --------------------------------------------------------------------------
# the caveat, in Python terms


class Permission(enum.StrEnum):
    """An operation a caveat may disallow (one ``disallow_*`` field each)."""

    READ = "read"
    WRITE = "write"
    LIST = "list"
    DELETE = "delete"
    LOCK = "lock"
    PUT_RETENTION = "put_retention"
    GET_RETENTION = "get_retention"
    PUT_LEGAL_HOLD = "put_legal_hold"
    GET_LEGAL_HOLD = "get_legal_hold"
    BYPASS_GOVERNANCE_RETENTION = "bypass_governance_retention"
    PUT_BUCKET_OBJECT_LOCK_CONFIGURATION = "put_bucket_object_lock_configuration"
    GET_BUCKET_OBJECT_LOCK_CONFIGURATION = "get_bucket_object_lock_configuration"
    PUT_BUCKET_NOTIFICATION_CONFIGURATION = "put_bucket_notification_configuration"
    GET_BUCKET_NOTIFICATION_CONFIGURATION = "get_bucket_notification_configuration"


BASIC_PERMISSIONS: frozenset[Permission] = frozenset(
    {Permission.READ, Permission.WRITE, Permission.LIST, Permission.DELETE}
)

_DISALLOW_FIELD: dict[Permission, str] = {
    Permission.READ: "disallow_reads",
    Permission.WRITE: "disallow_writes",
    Permission.LIST: "disallow_lists",
    Permission.DELETE: "disallow_deletes",
    Permission.LOCK: "disallow_locks",
    Permission.PUT_RETENTION: "disallow_put_retention",
    Permission.GET_RETENTION: "disallow_get_retention",
    Permission.PUT_LEGAL_HOLD: "disallow_put_legal_hold",
    Permission.GET_LEGAL_HOLD: "disallow_get_legal_hold",
    Permission.BYPASS_GOVERNANCE_RETENTION: "disallow_bypass_governance_retention",
    Permission.PUT_BUCKET_OBJECT_LOCK_CONFIGURATION: (
        "disallow_put_bucket_object_lock_configuration"
    ),
    Permission.GET_BUCKET_OBJECT_LOCK_CONFIGURATION: (
        "disallow_get_bucket_object_lock_configuration"
    ),
    Permission.PUT_BUCKET_NOTIFICATION_CONFIGURATION: (
        "disallow_put_bucket_notification_configuration"
    ),
    Permission.GET_BUCKET_NOTIFICATION_CONFIGURATION: (
        "disallow_get_bucket_notification_configuration"
    ),
}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _show(text: str) -> str:
    """Text for people: bytes that were not UTF-8 (an encrypted prefix) as hex."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "<encrypted " + _raw(text).hex() + ">"
    return text


def _show_path(path: CaveatPath) -> str:
    if not path.prefix:
        return f"{_show(path.bucket)} (whole package)"
    return f"{_show(path.bucket)}/{_show(path.prefix)}"


class CaveatPath(NamedTuple):
    """One allowed path: ``bucket`` is the package (S3 bucket), ``prefix`` the
    object-key prefix in clear (null path cipher); ``""`` means the whole
    bucket."""

    bucket: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class KeyCaveat:
    """One caveat. Caveats combine with AND; inside one caveat, ``paths``
    combine with OR (access must fall in at least one of them)."""

    disallow: frozenset[Permission] = frozenset()
    paths: tuple[CaveatPath, ...] = ()
    not_before: datetime | None = None
    not_after: datetime | None = None
    max_object_ttl: timedelta | None = None
    nonce: bytes = field(default=b"", repr=False)

    @classmethod
    def allowing(
        cls,
        allow: Iterable[Permission | str] = BASIC_PERMISSIONS,
        *,
        paths: Iterable[CaveatPath | tuple[str, str]] = (),
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        max_object_ttl: timedelta | None = None,
    ) -> KeyCaveat:
        """A caveat that disallows every permission not in ``allow`` (as
        ``grant.Restrict`` builds one from a ``Permission``)."""
        try:
            allowed = {Permission(p) for p in allow}
        except ValueError as exc:
            raise BadArgument(f"caveat: unknown permission ({exc})") from None
        return cls(
            disallow=frozenset(set(Permission) - allowed),
            paths=tuple(CaveatPath(*p) for p in paths),
            not_before=not_before,
            not_after=not_after,
            max_object_ttl=max_object_ttl,
        )

    @property
    def allowed(self) -> frozenset[Permission]:
        return frozenset(BASIC_PERMISSIONS - self.disallow)

    # --- checks ---------------------------------------------------------

    def validate(self) -> None:
        """The checks made before a caveat is added to a key here."""
        for name in ("not_before", "not_after"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise BadArgument(f"caveat: {name} must be a datetime with a time zone")
        if (
            self.not_before is not None
            and self.not_after is not None
            and self.not_after < self.not_before
        ):
            raise BadArgument("caveat: not_after before not_before")
        if self.disallow >= BASIC_PERMISSIONS:
            raise BadArgument(
                "caveat: empty permission set (read, write, list, delete all disallowed)"
            )
        if self.max_object_ttl is not None and self.max_object_ttl <= timedelta(0):
            raise BadArgument("caveat: max_object_ttl must be positive")
        for p in self.paths:
            if not isinstance(p, CaveatPath) or not isinstance(p.bucket, str):
                raise BadArgument("caveat: a path is (bucket, prefix) text")
            if not p.bucket and p.prefix:
                raise BadArgument("caveat: path prefix without a bucket")

    def refusal(
        self, op: Permission, bucket: str | None, path: str | None, at: datetime
    ) -> str | None:
        """Why this caveat refuses ``op`` on ``bucket``/``path`` at ``at``, or
        ``None`` if it allows it. Same rules as ``(*Caveat).Allows``,
        including its exceptions: reading *bucket metadata* (``op`` READ, no
        path) is allowed in every bucket the caveat names, and GET_RETENTION
        is refused only when PUT_RETENTION is disallowed too."""
        if self.not_after is not None and at > self.not_after:
            return f"expired at {self.not_after.isoformat()}"
        if self.not_before is not None and self.not_before > at:
            return f"not valid before {self.not_before.isoformat()}"
        if op is Permission.READ and not path:
            if not self.paths or not bucket or any(p.bucket == bucket for p in self.paths):
                return None
            return f"package {bucket!r} not allowed"
        if op is Permission.GET_RETENTION:
            # Go: a key that may put retention may also read it back
            if {Permission.PUT_RETENTION, Permission.GET_RETENTION} <= self.disallow:
                return f"{op.value} not allowed"
        elif op in self.disallow:
            return f"{op.value} not allowed"
        if self.paths:
            target = path or ""
            if not any(p.bucket == bucket and target.startswith(p.prefix) for p in self.paths):
                if bucket is not None and not any(p.bucket == bucket for p in self.paths):
                    return f"package {bucket!r} not allowed"
                return f"path {target!r} outside the allowed prefixes"
        return None

    def describe(self) -> str:
        """The caveat in words (for ``jcs key inspect``)."""
        parts: list[str] = []
        basic = [p.value for p in Permission if p in BASIC_PERMISSIONS and p not in self.disallow]
        if self.disallow & BASIC_PERMISSIONS:
            parts.append("allow " + (", ".join(basic) if basic else "nothing"))
        other = sorted(p.value for p in self.disallow - BASIC_PERMISSIONS)
        if other and not (self.disallow & BASIC_PERMISSIONS):
            parts.append("disallow " + ", ".join(other))
        if self.paths:
            parts.append("only " + ", ".join(_show_path(p) for p in self.paths))
        if self.not_before is not None:
            parts.append(f"not before {self.not_before.isoformat()}")
        if self.not_after is not None:
            parts.append(f"not after {self.not_after.isoformat()}")
        if self.max_object_ttl is not None:
            parts.append(f"objects expire after {self.max_object_ttl}")
        return "; ".join(parts) if parts else "no restriction"

    # --- wire -----------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The protobuf encoding, as ``picobuf.Marshal(&caveat)`` writes it."""
        msg = cast(_CaveatPB, CaveatMessage())
        for perm in self.disallow:
            setattr(msg, _DISALLOW_FIELD[Permission(perm)], True)
        for p in self.paths:
            msg.allowed_paths.add(bucket=_raw(p.bucket), encrypted_path_prefix=_raw(p.prefix))
        for name, value in (("not_after", self.not_after), ("not_before", self.not_before)):
            if value is None:
                continue
            if value.tzinfo is None:
                raise BadArgument(f"caveat: {name} must be a datetime with a time zone")
            if value == _GO_ZERO_TIME:
                continue
            delta = value - _EPOCH
            ts: _SecondsNanos = getattr(msg, name)
            ts.SetInParent()
            ts.seconds = delta.days * 86400 + delta.seconds
            ts.nanos = delta.microseconds * 1000
        if self.max_object_ttl is not None:
            ns = _timedelta_ns(self.max_object_ttl)
            ns = max(_INT64_MIN, min(_INT64_MAX, ns))
            seconds = abs(ns) // 10**9 * (1 if ns >= 0 else -1)
            msg.max_object_ttl.SetInParent()
            msg.max_object_ttl.seconds = seconds
            msg.max_object_ttl.nanos = ns - seconds * 10**9
        msg.nonce = bytes(self.nonce)
        return msg.SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "caveat") -> KeyCaveat:
        """Decode a caveat made anywhere; unknown fields are refused."""
        msg = cast(_CaveatPB, decode_strict(CaveatMessage, data, what))
        disallow = frozenset(p for p, name in _DISALLOW_FIELD.items() if getattr(msg, name))
        paths = tuple(
            CaveatPath(_text(p.bucket), _text(p.encrypted_path_prefix)) for p in msg.allowed_paths
        )
        not_after = _time(msg.not_after, what, "not_after") if msg.HasField("not_after") else None
        not_before = (
            _time(msg.not_before, what, "not_before") if msg.HasField("not_before") else None
        )
        ttl = None
        if msg.HasField("max_object_ttl"):
            d = msg.max_object_ttl
            ns = max(_INT64_MIN, min(_INT64_MAX, d.seconds * 10**9 + d.nanos))
            ttl = timedelta(microseconds=ns // 1000)
        return cls(
            disallow=disallow,
            paths=paths,
            not_before=not_before,
            not_after=not_after,
            max_object_ttl=ttl,
            nonce=bytes(msg.nonce),
        )


def _timedelta_ns(value: timedelta) -> int:
    return ((value.days * 86400 + value.seconds) * 10**6 + value.microseconds) * 1000


def _time(ts: _SecondsNanos, what: str, name: str) -> datetime:
    try:
        return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    except OverflowError:
        raise BadArgument(f"{what}: {name} out of range") from None


# --------------------------------------------------------------------------
# API keys


# The first byte of a serialized access grant (protobuf field 1, a string):
# a macaroon's is its version, 2.
_GRANT_START = b"\x0a"


class APIKey:
    """A macaroon API key (``storj.io/common/macaroon.APIKey``), immutable.

    Parsing decodes every caveat at once, so a key that parses has only
    caveats this module understands."""

    __slots__ = ("_caveats", "_mac")

    def __init__(self, mac: Macaroon) -> None:
        self._mac = mac
        self._caveats = tuple(
            KeyCaveat.from_bytes(raw, what=f"API key: caveat {i}")
            for i, raw in enumerate(mac.caveats, start=1)
        )

    # --- text and bytes -------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> APIKey:
        """``ParseAPIKey``: base58check version 0 of the v2 macaroon."""
        raw = base58check_decode(text, what="API key")
        if raw[:1] == _GRANT_START:
            # Both are base58check text: an access grant given where a key
            # goes was refused as "unsupported macaroon version 10" (review).
            raise BadArgument(
                "API key: this is an access grant (a serialized grant, not a macaroon); "
                "give the API key itself"
            )
        return cls.from_bytes(raw)

    @classmethod
    def from_bytes(cls, raw: bytes) -> APIKey:
        """``ParseRawAPIKey``: the macaroon bytes (as inside a grant)."""
        return cls(Macaroon.parse(raw, what="API key"))

    def serialize(self) -> str:
        return base58check_encode(self._mac.serialize(), 0)

    def to_bytes(self) -> bytes:
        return self._mac.serialize()

    # --- parts ----------------------------------------------------------

    @property
    def macaroon(self) -> Macaroon:
        return self._mac

    @property
    def head(self) -> bytes:
        """The root key's identifier: equal for a key and all its restrictions."""
        return self._mac.head

    @property
    def tail(self) -> bytes:
        return self._mac.tail

    def caveats(self) -> tuple[KeyCaveat, ...]:
        return self._caveats

    def not_after(self) -> datetime | None:
        """The earliest ``not_after`` of all caveats (when the key expires)."""
        times = [c.not_after for c in self._caveats if c.not_after is not None]
        return min(times) if times else None

    def not_before(self) -> datetime | None:
        times = [c.not_before for c in self._caveats if c.not_before is not None]
        return max(times) if times else None

    def max_object_ttl(self) -> timedelta | None:
        ttls = [c.max_object_ttl for c in self._caveats if c.max_object_ttl is not None]
        return min(ttls) if ttls else None

    def allowed_buckets(self) -> frozenset[str] | None:
        """Buckets named by every path-restricting caveat (their
        intersection); ``None`` if no caveat restricts paths."""
        allowed: set[str] | None = None
        for cav in self._caveats:
            if not cav.paths:
                continue
            names = {p.bucket for p in cav.paths}
            allowed = names if allowed is None else allowed & names
        return None if allowed is None else frozenset(allowed)

    # --- restriction and verification ----------------------------------

    def restrict(self, caveat: KeyCaveat, *, nonce: bytes | None = None) -> APIKey:
        """A narrower key: ``caveat`` (validated, with a random 4-byte nonce
        like ``macaroon.WithNonce`` unless ``nonce`` is given) appended."""
        if not isinstance(caveat, KeyCaveat):
            raise BadArgument("caveat: expected a KeyCaveat")
        caveat.validate()
        if nonce is None:
            nonce = secrets.token_bytes(NONCE_SIZE)
        raw = KeyCaveat(
            disallow=caveat.disallow,
            paths=caveat.paths,
            not_before=caveat.not_before,
            not_after=caveat.not_after,
            max_object_ttl=caveat.max_object_ttl,
            nonce=nonce,
        ).to_bytes()
        return APIKey(self._mac.add_first_party_caveat(raw))

    def verify(self, secret: bytes) -> bool:
        """True if the key was made from ``secret`` and no caveat was altered
        or removed (constant-time)."""
        return self._mac.validate(secret)

    def tails(self, secret: bytes) -> tuple[bytes, ...]:
        """Every tail of the chain from ``secret``; check each against the
        revocation list (revoking a tail revokes every key derived from it)."""
        return self._mac.tails(secret)

    def verify_and_tails(self, secret: bytes) -> tuple[bool, tuple[bytes, ...]]:
        return self._mac.validate_and_tails(secret)

    def refusal(
        self, op: Permission, bucket: str | None, path: str | None, at: datetime
    ) -> str | None:
        """``None`` if every caveat allows the action, else which caveat refuses
        it and why (the signature is *not* checked here: see :meth:`verify`)."""
        for i, cav in enumerate(self._caveats, start=1):
            why = cav.refusal(op, bucket, path, at)
            if why is not None:
                return f"caveat {i} ({cav.describe()}): {why}"
        return None

    # --- identity ---------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, APIKey) and self._mac == other._mac

    def __hash__(self) -> int:
        return hash(self._mac)

    def __repr__(self) -> str:  # never the key text: it is a bearer credential
        return f"<APIKey head={self.head.hex()[:12]}… caveats={len(self._caveats)}>"


def new_api_key(secret: bytes) -> APIKey:
    """``NewAPIKey``: an unrestricted key with a random 32-byte head whose
    chain starts from ``secret`` (32 bytes, from :func:`new_secret`, kept by
    the server and never shown)."""
    if not isinstance(secret, bytes) or len(secret) != SECRET_SIZE:
        raise BadArgument(f"API key secret must be {SECRET_SIZE} bytes")
    return APIKey(Macaroon.new_unrestricted(secret))


def api_key_from_parts(head: bytes, secret: bytes) -> APIKey:
    """``FromParts`` without caveats: the root key for ``head``."""
    return APIKey(Macaroon.new_unrestricted(secret, head=head))
