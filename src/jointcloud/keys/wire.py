"""The wire forms shared by API keys and access grants (storj.io/common):
base58check text and protobuf messages built without ``protoc``.

The protobuf classes are built at import time from ``FileDescriptorProto``s
written in Python (field numbers copied from the published ``.proto``
files) and turned into classes with ``message_factory.GetMessageClass`` in
a private descriptor pool: no ``protoc`` step, no generated file to keep in
sync, and the well-kept ``protobuf`` runtime does the wire encoding.
Decoding is strict (``decode_strict``): an unknown field is refused rather
than ignored, because an ignored restriction would widen access.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import base58
from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, timestamp_pb2
from google.protobuf import message as pb_message
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.unknown_fields import UnknownFieldSet

from jointcloud.errors import BadArgument

if TYPE_CHECKING:
    from google.protobuf.message import Message

__all__ = [
    "MAX_BASE58",
    "FieldSpec",
    "base58check_decode",
    "base58check_encode",
    "build_messages",
    "decode_strict",
    "message_class",
    "message_proto",
]


# --------------------------------------------------------------------------
# base58check (storj.io/common/base58: CheckEncode / CheckDecode)


def base58check_encode(payload: bytes, version: int = 0) -> str:
    """``version ‖ payload ‖ SHA-256d(version ‖ payload)[:4]`` in base58."""
    body = bytes([version]) + payload
    return base58.b58encode(body + _checksum(body)).decode("ascii")


# A key or grant is a few hundred characters; each caveat adds some dozens.
MAX_BASE58 = 8192


def base58check_decode(text: str, *, what: str) -> bytes:
    """The payload of a base58check string with version 0; every problem is a
    :class:`BadArgument` saying ``"<what>: <problem>"``."""
    if not isinstance(text, str):
        raise BadArgument(f"{what}: expected text")
    text = text.strip()
    if not text:
        raise BadArgument(f"{what}: empty")
    if not text.isascii():
        raise BadArgument(f"{what}: bad base58 (non-ASCII character)")
    if len(text) > MAX_BASE58:
        # Decoding base58 costs the square of its length (0.07 s at this
        # bound, 4 s at 60,000), on the caller's thread: an event loop.
        raise BadArgument(f"{what}: longer than {MAX_BASE58} characters")
    try:
        raw = base58.b58decode(text)
    except ValueError as exc:
        raise BadArgument(f"{what}: bad base58 ({exc})") from None
    if len(raw) < 5:
        raise BadArgument(f"{what}: truncated base58check")
    body, check = raw[:-4], raw[-4:]
    if _checksum(body) != check:
        raise BadArgument(f"{what}: bad base58check checksum")
    if body[0] != 0:
        raise BadArgument(f"{what}: unsupported base58check version {body[0]}")
    return body[1:]


def _checksum(body: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4]


# --------------------------------------------------------------------------
# protobuf classes without protoc


_T = FieldDescriptor
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
_TYPES = {
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "message": descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
}

FieldSpec = tuple[str, int, str] | tuple[str, int, str, str] | tuple[str, int, str, str, bool]


def message_proto(name: str, fields: Sequence[FieldSpec]) -> descriptor_pb2.DescriptorProto:
    """A ``DescriptorProto``: fields are ``(name, number, type[, message
    type name[, repeated]])``."""
    msg = descriptor_pb2.DescriptorProto(name=name)
    for spec in fields:
        fname, number, ftype = spec[0], spec[1], spec[2]
        fld = msg.field.add(name=fname, number=number, type=_TYPES[ftype], label=_OPTIONAL)
        if len(spec) >= 4:
            fld.type_name = spec[3]
        if len(spec) == 5 and spec[4]:
            fld.label = _REPEATED
    return msg


def build_messages(
    file_name: str, package: str, messages: Iterable[descriptor_pb2.DescriptorProto]
) -> descriptor_pool.DescriptorPool:
    """A private descriptor pool holding one proto3 file made of ``messages``
    (plus the well-known Timestamp and Duration it may refer to)."""
    pool = descriptor_pool.DescriptorPool()
    for wkt in (timestamp_pb2, duration_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(wkt.DESCRIPTOR.serialized_pb))
    fdp = descriptor_pb2.FileDescriptorProto(
        name=file_name,
        package=package,
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/protobuf/duration.proto"],
    )
    fdp.message_type.extend(messages)
    pool.Add(fdp)
    return pool


def message_class(pool: descriptor_pool.DescriptorPool, full_name: str) -> type[Message]:
    return GetMessageClass(pool.FindMessageTypeByName(full_name))


def decode_strict(cls: type[Message], data: bytes, what: str) -> Message:
    """Parse ``data`` as ``cls``; refuse garbage and unknown fields."""
    msg = cls()
    try:
        msg.ParseFromString(bytes(data))
    except pb_message.DecodeError:
        raise BadArgument(f"{what}: not a valid protobuf message") from None
    _reject_unknown(msg, what)
    return msg


def _reject_unknown(msg: Message, what: str) -> None:
    desc = msg.DESCRIPTOR
    unknowns: Iterable[Any] = UnknownFieldSet(msg)  # type: ignore[assignment]
    for unknown in unknowns:
        number = unknown.field_number
        known = desc.fields_by_number.get(number)
        if known is not None:
            raise BadArgument(f"{what}: field {number} ({known.name}) has the wrong wire type")
        raise BadArgument(f"{what}: unknown field {number}")
    for fdesc, value in msg.ListFields():
        if fdesc.type != _T.TYPE_MESSAGE:
            continue
        if fdesc.is_repeated:
            for item in value:
                _reject_unknown(item, what)
        else:
            _reject_unknown(value, what)
