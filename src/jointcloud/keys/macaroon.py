"""Macaroons as the published decentralised store uses them (storj.io/common/macaroon).

A macaroon here is three things: a ``head`` (32 random bytes naming the root
key), a list of first-party ``caveats`` (opaque bytes; the API key layer puts
protobuf ``Caveat`` messages in them) and a ``tail``, the last link of an
HMAC-SHA256 chain::

    tail_0 = HMAC-SHA256(key=secret,   msg=head)
    tail_i = HMAC-SHA256(key=tail_i-1, msg=caveat_i)

Anyone holding a macaroon can append a caveat (the new tail is keyed by the old
one), nobody can remove one, and only the holder of ``secret`` can recompute the
chain. Every intermediate tail is returned by :meth:`Macaroon.tails` so that
revoking one link revokes every key derived from it.

The wire format is libmacaroons' "v2" binary framing exactly as ``serialize.go``
writes it: a version byte ``2``, then packets ``varint(field type)
varint(length) bytes`` grouped in sections ended by an ``EOS`` (0) field::

    02 | 02 len head | 00 | (02 len caveat | 00)* | 00 | 06 20 tail(32)

Why this module is hand-written: the only Python macaroon library on PyPI,
``pymacaroons`` (0.13.0, last released in February 2018, pinned to PyNaCl < 2
and ``six``), derives its first signature as ``HMAC(HMAC("macaroons-key-
generator", key), identifier)`` instead of ``HMAC(secret, head)``, so it cannot
produce or verify a Storj key; and its v2 serializer writes the identifier only
when a location is set. The format is small (≈ 100 lines), so we write it here
against ``serialize.go`` and test it with that repository's own vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from jointcloud.errors import BadArgument

__all__ = ["Macaroon", "new_secret", "sign"]

VERSION = 2
FIELD_EOS = 0
FIELD_LOCATION = 1
FIELD_IDENTIFIER = 2
FIELD_VERIFICATION_ID = 4
FIELD_SIGNATURE = 6

TAIL_SIZE = 32
_MAX_VARINT = 0x7FFFFFFF  # serialize.go refuses larger lengths/field types


def sign(key: bytes, data: bytes) -> bytes:
    """One link of the chain: HMAC-SHA256(key, data)."""
    return hmac.new(key, data, hashlib.sha256).digest()


def new_secret() -> bytes:
    """32 cryptographically random bytes (``NewSecret``)."""
    return secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class Macaroon:
    """An immutable macaroon; :meth:`add_first_party_caveat` returns a new one."""

    head: bytes
    caveats: tuple[bytes, ...]
    tail: bytes

    # --- construction -------------------------------------------------

    @classmethod
    def new_unrestricted(cls, secret: bytes, head: bytes | None = None) -> Macaroon:
        """A macaroon with no caveats: a random 32-byte head (or ``head``) and
        ``tail = HMAC(secret, head)`` (``NewUnrestricted`` / ``...FromParts``)."""
        if head is None:
            head = new_secret()
        return cls(head=bytes(head), caveats=(), tail=sign(secret, head))

    def add_first_party_caveat(self, caveat: bytes) -> Macaroon:
        """A copy with ``caveat`` appended and the chain extended by one link."""
        caveat = bytes(caveat)
        return Macaroon(self.head, (*self.caveats, caveat), sign(self.tail, caveat))

    # --- verification -------------------------------------------------

    def tails(self, secret: bytes) -> tuple[bytes, ...]:
        """Every tail of the chain recomputed from ``secret``: the root key's
        tail first, this macaroon's own (expected) tail last."""
        tail = sign(secret, self.head)
        out = [tail]
        for cav in self.caveats:
            tail = sign(tail, cav)
            out.append(tail)
        return tuple(out)

    def validate(self, secret: bytes) -> bool:
        """True if the chain recomputed from ``secret`` ends in :attr:`tail`
        (constant-time comparison)."""
        return hmac.compare_digest(self.tails(secret)[-1], self.tail)

    def validate_and_tails(self, secret: bytes) -> tuple[bool, tuple[bytes, ...]]:
        tails = self.tails(secret)
        return hmac.compare_digest(tails[-1], self.tail), tails

    # --- wire format ---------------------------------------------------

    def serialize(self) -> bytes:
        """The v2 binary form, byte for byte as ``(*Macaroon).Serialize``."""
        out = bytearray([VERSION])
        _put_packet(out, FIELD_IDENTIFIER, self.head)
        out.append(FIELD_EOS)
        for cav in self.caveats:
            _put_packet(out, FIELD_IDENTIFIER, cav)
            out.append(FIELD_EOS)
        out.append(FIELD_EOS)
        _put_packet(out, FIELD_SIGNATURE, self.tail)
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes, *, what: str = "API key") -> Macaroon:
        """Parse the v2 binary form as ``ParseMacaroon`` does.

        Accepts (and drops) location and verification-id fields as the Go
        parser does; refuses, unlike it, bytes after the signature, so that
        one key has one spelling. Every malformed input raises
        :class:`BadArgument` with ``"<what>: <problem>"``.
        """
        reader = _Reader(bytes(data), what)
        if len(data) < 2:
            raise reader.bad("truncated macaroon" if data else "empty macaroon")
        if data[0] != VERSION:
            raise reader.bad(f"unsupported macaroon version {data[0]}")
        reader.pos = 1

        section = reader.section()
        if section and section[0][0] == FIELD_LOCATION:
            section = section[1:]
        if len(section) != 1 or section[0][0] != FIELD_IDENTIFIER:
            raise reader.bad("invalid macaroon header")
        head = section[0][1]

        caveats: list[bytes] = []
        while True:
            section = reader.section()
            if not section:
                break
            if section[0][0] == FIELD_LOCATION:
                section = section[1:]
            if not section or section[0][0] != FIELD_IDENTIFIER:
                raise reader.bad("caveat without identifier")
            caveats.append(section[0][1])
            rest = section[1:]
            if len(rest) > 1:
                raise reader.bad("extra fields in caveat")
            if rest and rest[0][0] != FIELD_VERIFICATION_ID:
                raise reader.bad(f"invalid field {rest[0][0]} in caveat")

        field, sig = reader.packet()
        if field != FIELD_SIGNATURE:
            raise reader.bad("signature missing")
        if len(sig) != TAIL_SIZE:
            raise reader.bad(f"signature has {len(sig)} bytes, expected {TAIL_SIZE}")
        if reader.pos != len(reader.data):
            raise reader.bad("trailing bytes after signature")
        return cls(head=head, caveats=tuple(caveats), tail=sig)


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_packet(out: bytearray, field: int, data: bytes) -> None:
    _put_varint(out, field)
    _put_varint(out, len(data))
    out += data


class _Reader:
    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def bad(self, problem: str) -> BadArgument:
        return BadArgument(f"{self.what}: {problem}")

    def varint(self) -> int:
        value = shift = 0
        for i in range(10):
            if self.pos >= len(self.data):
                raise self.bad("truncated macaroon")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if i == 9 and byte > 1:
                    break  # more than 64 bits
                if value > _MAX_VARINT:
                    raise self.bad("macaroon varint out of range")
                return value
        raise self.bad("macaroon varint out of range")

    def packet(self) -> tuple[int, bytes]:
        field = self.varint()
        if field == FIELD_EOS:
            return field, b""
        length = self.varint()
        if length > len(self.data) - self.pos:
            raise self.bad("truncated macaroon")
        start = self.pos
        self.pos += length
        return field, self.data[start : self.pos]

    def section(self) -> list[tuple[int, bytes]]:
        packets: list[tuple[int, bytes]] = []
        previous = -1
        while True:
            if self.pos >= len(self.data):
                raise self.bad("truncated macaroon")
            field, body = self.packet()
            if field == FIELD_EOS:
                return packets
            if field <= previous:
                raise self.bad("macaroon fields out of order")
            packets.append((field, body))
            previous = field
