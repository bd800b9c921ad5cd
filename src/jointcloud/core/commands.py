"""Typed, protocol-neutral commands and addresses of the core services.

Every protocol (JCS v1, S3, the gateway facade, link sharing) parses its wire
format into these and calls a core service with a ``Principal``; nothing here
knows a header, a JSON field name or an XML element. Addresses name things the
way the protocols do — by id (JCS) or by name, project → package → path (S3:
credentials scoped to a project, bucket = package, key = path) — and the core
resolves them, checking the principal, in one place (``PackageService.resolve``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

# Plain data the metadata layer stores too, so it lives in core.models (which
# meta may import); re-exported here with the other commands.
from jointcloud.core.models import NO_META, ChecksumAlgorithm, ObjectInfo, ObjectMeta, StagedLayout
from jointcloud.core.paths import check_chars
from jointcloud.errors import (
    BadArgument,
    BadDigest,
    InvalidRange,
    MetadataTooLarge,
    NotModified,
    ObjectNotFound,
    PayloadMismatch,
    PreconditionFailed,
)
from jointcloud.redundancy.stream import Checksums

__all__ = [
    "NO_CONDITIONS",
    "NO_META",
    "ByteRange",
    "ChecksumAlgorithm",
    "Conditions",
    "CopyObject",
    "DeleteObject",
    "GetObject",
    "ListObjects",
    "MetadataDirective",
    "ObjectAddress",
    "ObjectMeta",
    "PackageRef",
    "PutObject",
    "Trailer",
    "check_checksum",
    "check_content_md5",
    "check_meta",
    "check_payload",
    "check_read_conditions",
    "check_source_conditions",
    "check_tags",
    "check_write_conditions",
    "resolve_range",
    "tag_map",
    "trailing_checksums",
]


@dataclass(frozen=True)
class PackageRef:
    """A package by id, or by name inside a project (JCS bucket) given by id
    or by name; with neither project field, the principal's project."""

    package_id: int | None = None
    name: str | None = None
    project_id: int | None = None  # the JCS bucketID
    project_name: str | None = None  # the JCS bucket name

    @classmethod
    def by_id(cls, package_id: int) -> PackageRef:
        return cls(package_id=package_id)

    @classmethod
    def by_name(cls, name: str, project_id: int | None = None) -> PackageRef:
        return cls(name=name, project_id=project_id)


@dataclass(frozen=True)
class ObjectAddress:
    package: PackageRef
    path: str


@dataclass(frozen=True)
class Conditions:
    """RFC 7232 preconditions, evaluated by core against the current object
    inside the transaction that acts on it (so ``if_none_match=("*",)`` is an
    atomic create-only-if-absent). ETags are compared without quotes."""

    if_match: tuple[str, ...] | None = None
    if_none_match: tuple[str, ...] | None = None  # ("*",): the object must not exist
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None

    @property
    def empty(self) -> bool:
        return (
            self.if_match is None
            and self.if_none_match is None
            and self.if_modified_since is None
            and self.if_unmodified_since is None
        )


NO_CONDITIONS = Conditions()


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end]`` inclusive (``end`` None: to the end); a suffix
    range (``suffix``: the last N bytes) has no start. Resolved against the
    object's size by core: no overlap is ``InvalidRange``."""

    start: int | None = None
    end: int | None = None
    suffix: int | None = None


# Checksums a client sends after the body (an HTTP trailer): asked for once
# the body has been read, verified before anything is committed.
Trailer = Callable[[], Mapping[ChecksumAlgorithm, str]]


def trailing_checksums(trailer: Trailer | None) -> dict[ChecksumAlgorithm, str]:
    if trailer is None:
        return {}
    return {
        ChecksumAlgorithm(a): check_checksum(ChecksumAlgorithm(a), v) for a, v in trailer().items()
    }


@dataclass(frozen=True)
class PutObject:
    address: ObjectAddress
    body: AsyncIterator[bytes]
    meta: ObjectMeta = NO_META
    # Values the client sent (base64, as S3): verified against the bytes and
    # stored; a mismatch stores nothing.
    checksums: Mapping[ChecksumAlgorithm, str] = field(default_factory=dict)
    # Algorithms to compute and store although the client sent no value.
    compute: frozenset[ChecksumAlgorithm] = frozenset()
    content_md5: str | None = None  # hex; verified like a checksum
    # The SHA-256 (hex) the client declared for the payload: checked against
    # the digest the store computes anyway (PayloadMismatch), so a protocol
    # that signs it need not hash the bytes a second time.
    payload_sha256: str | None = None
    # Checksums sent after the body (their algorithms belong in ``compute``).
    trailer: Trailer | None = None
    conditions: Conditions = NO_CONDITIONS
    redundancy: object = None  # a policy override (JCS), None: the package's
    affinity: int | None = None  # the user space tried first (JCS)


@dataclass(frozen=True)
class GetObject:
    address: ObjectAddress
    range: ByteRange | None = None
    conditions: Conditions = NO_CONDITIONS
    # One part of a multipart object (1-based), read from the same snapshot
    # that says where it lies; not together with ``range``.
    part_number: int | None = None


class MetadataDirective(enum.StrEnum):
    COPY = "COPY"
    REPLACE = "REPLACE"


@dataclass(frozen=True)
class CopyObject:
    """A server-side copy: the destination shares the source's immutable
    layouts, no byte moves."""

    source: ObjectAddress
    dest: ObjectAddress
    source_conditions: Conditions = NO_CONDITIONS
    conditions: Conditions = NO_CONDITIONS  # on the destination (If-None-Match: *)
    directive: MetadataDirective = MetadataDirective.COPY
    meta: ObjectMeta = NO_META  # with REPLACE
    tags_directive: MetadataDirective = MetadataDirective.COPY
    # The copy's checksum is to be of this algorithm: the source's own if it
    # has one, else computed by reading the source once (the copy then has
    # that one alone).
    checksum: ChecksumAlgorithm | None = None
    # The request names a storage class or an encryption for the copy: a
    # copy onto itself is then allowed (as S3) though neither can differ
    # here from what the object has.
    restates: bool = False
    # The copy is a new object of one piece, as S3's CopyObject makes: a
    # source over 5 GiB is refused, and a source completed from uploaded
    # parts (ETag ``<md5>-N``) is read once for the MD5 the copy's ETag is
    # and for a whole-object value in place of a COMPOSITE checksum.
    one_piece: bool = False


@dataclass(frozen=True)
class DeleteObject:
    address: ObjectAddress
    conditions: Conditions = NO_CONDITIONS


@dataclass(frozen=True)
class ListObjects:
    package: PackageRef
    prefix: str = ""
    delimiter: str | None = None
    start_after: str | None = None  # exclusive
    # ``start_after`` is a common prefix a page ended with: skip all under it.
    after_prefix: bool = False
    # A ``Listing.next_token`` of an earlier page; wins over ``start_after``.
    continuation: str | None = None
    max_keys: int = 1000  # 0..1000; more is served as 1000 (as S3)


# --- limits of what a client sets with an object (checked by core) ----------

MAX_USER_METADATA = 2048  # bytes of UTF-8, names + values (S3)
MAX_TAGS = 10
MAX_TAG_KEY = 128  # characters
MAX_TAG_VALUE = 256  # characters
# Characters; the sizes of the columns that keep them.
CONTENT_FIELDS = {
    "content_type": 255,
    "content_encoding": 255,
    "cache_control": 255,
    "content_disposition": 1024,
    "expires": 64,
    "content_language": 255,
    "website_redirect_location": 2048,
}
_METADATA_NAME = re.compile(r"[!-~]+")  # printable ASCII, no space
# Bytes of each digest; the value is its base64 (S3).
CHECKSUM_BYTES = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}


def check_meta(meta: ObjectMeta) -> ObjectMeta:
    """``meta`` within its limits, user metadata names lowercased; a
    ``BadArgument`` naming the field otherwise."""
    for name, limit in CONTENT_FIELDS.items():
        value = getattr(meta, name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BadArgument(f"{name} must be a string")
        check_chars(value, name)
        if len(value) > limit:
            raise BadArgument(f"{name} is {len(value)} characters long; at most {limit}")
    users: dict[str, str] = {}
    total = 0
    for raw, value in meta.user_metadata.items():
        if not isinstance(raw, str) or not _METADATA_NAME.fullmatch(raw):
            raise BadArgument(
                f"user metadata name {raw!r} must be 1 or more printable ASCII characters "
                "without spaces"
            )
        name = raw.lower()
        if name in users:
            raise BadArgument(f"user metadata name {name!r} is given twice (names ignore case)")
        if not isinstance(value, str):
            raise BadArgument(f"user metadata {name!r} must be a string")
        check_chars(value, f"user metadata {name!r}")
        total += len(name.encode()) + len(value.encode())
        users[name] = value
    if total > MAX_USER_METADATA:
        raise MetadataTooLarge(
            f"user metadata is {total} bytes (names and values, UTF-8); at most {MAX_USER_METADATA}"
        )
    return replace(meta, user_metadata=users, tags=check_tags(meta.tags))


def check_tags(
    tags: Mapping[str, str], limit: int = MAX_TAGS, owner: str = "object"
) -> dict[str, str]:
    """At most ``limit`` tags, keys of 1-128 and values of 0-256
    characters, no control characters."""
    if len(tags) > limit:
        raise BadArgument(f"tags: {len(tags)} given; at most {limit} per {owner}")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadArgument("tags must map strings to strings")
        if not 1 <= len(key) <= MAX_TAG_KEY:
            raise BadArgument(
                f"tag key {key[:40]!r} is {len(key)} characters; 1 to {MAX_TAG_KEY} allowed"
            )
        check_chars(key, "tag key")
        if len(value) > MAX_TAG_VALUE:
            raise BadArgument(
                f"tag {key!r} has a value of {len(value)} characters; at most {MAX_TAG_VALUE}"
            )
        check_chars(value, f"tag {key!r} value")
        out[key] = value
    return out


def tag_map(
    pairs: Iterable[tuple[str, str]], limit: int = MAX_TAGS, owner: str = "object"
) -> dict[str, str]:
    """Tags as a protocol parsed them (a query string, an XML tag set): a key
    given twice is refused."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise BadArgument(f"tag key {key!r} is given twice")
        out[key] = value
    return check_tags(out, limit, owner)


def checksum_of(algorithm: ChecksumAlgorithm, data: bytes) -> str:
    """The checksum of bytes held whole (a small request body, joined part
    checksums), base64 as S3 sends it: by the write path's own ``Checksums``."""
    sums = Checksums([str(algorithm)])
    sums.update(data)
    sha256 = hashlib.sha256(data).digest() if algorithm is ChecksumAlgorithm.SHA256 else b""
    return sums.result(sha256)[str(algorithm)]


def check_checksum(algorithm: ChecksumAlgorithm, value: str) -> str:
    """A checksum value a client supplied: the base64 of a digest of the
    algorithm's size."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) != CHECKSUM_BYTES[algorithm] or base64.b64encode(raw).decode() != value:
        # No content can match it: S3 answers BadDigest (ceph s3-tests).
        raise BadDigest(
            f"checksum {algorithm}: {str(value)[:80]!r} is not the base64 of a "
            f"{CHECKSUM_BYTES[algorithm]}-byte value"
        )
    return value


def check_payload(staged: StagedLayout, payload_sha256: str | None) -> None:
    """The payload's declared SHA-256 against the stored bytes' digest."""
    if payload_sha256 is not None and payload_sha256.lower() != staged.sha256:
        raise PayloadMismatch(
            f"the payload's declared SHA-256 {payload_sha256[:64]} does not match "
            f"the {staged.size} bytes received"
        )


def check_content_md5(value: str) -> str:
    """An MD5 the client supplied (hex); lowercased."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        raise BadArgument(f"content MD5 {str(value)[:80]!r} is not 32 hexadecimal digits")
    return value.lower()


# --- preconditions (RFC 7232 §6) and ranges, evaluated by core --------------


def _etag_in(etag: str, candidates: tuple[str, ...]) -> bool:
    """Strong comparison (ETags here are strong); quotes are tolerated."""
    return any(c == "*" or c.strip().strip('"') == etag for c in candidates)


def _changed_since(info: ObjectInfo, when: datetime) -> bool:
    """HTTP dates have whole seconds: compare the last modification so."""
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return info.update_time.replace(microsecond=0) > when


def check_read_conditions(info: ObjectInfo, cond: Conditions, *, source: bool = False) -> None:
    """Preconditions of a read (GET, HEAD) of ``info``: If-Match, else
    If-Unmodified-Since → ``PreconditionFailed``; If-None-Match, else
    If-Modified-Since → ``NotModified``. ``source``: the source of a copy,
    where every failure is ``PreconditionFailed`` (S3's copy-source rules)."""
    if cond.empty:
        return
    what = "the copy source" if source else "the object"
    if cond.if_match is not None:
        if not _etag_in(info.etag, cond.if_match):
            raise PreconditionFailed(f"if-match: {what} has another ETag")
    elif cond.if_unmodified_since is not None and _changed_since(info, cond.if_unmodified_since):
        raise PreconditionFailed(f"if-unmodified-since: {what} changed since")
    if cond.if_none_match is not None:
        if _etag_in(info.etag, cond.if_none_match):
            _unchanged(info, f"if-none-match: {what} has that ETag", source)
    elif cond.if_modified_since is not None and not _changed_since(info, cond.if_modified_since):
        _unchanged(info, f"if-modified-since: {what} has not changed since", source)


def _unchanged(info: ObjectInfo, message: str, source: bool) -> None:
    if source:
        raise PreconditionFailed(message)
    raise NotModified(message, etag=info.etag, update_time=info.update_time)


def check_source_conditions(source: ObjectInfo, cond: Conditions) -> None:
    """The source of a copy (or of a part copy)."""
    check_read_conditions(source, cond, source=True)


def check_write_conditions(current: ObjectInfo | None, cond: Conditions) -> None:
    """Preconditions of a write (put, the destination of a copy, a multipart
    completion) or a delete, on the object now at the path (``None``: none),
    evaluated in the transaction that writes. If-Match (``*`` too) needs an
    object there (else ``ObjectNotFound``) with a matching ETag, else If-Unmodified-Since an object
    unchanged since; If-None-Match ``*`` needs the path free, a list of ETags
    an object without any of them. If-Modified-Since is ignored (RFC 7232
    §3.3: it applies to GET and HEAD only)."""
    if cond.empty:
        return
    if cond.if_match is not None:
        if current is None:
            # S3 (conditional writes and deletes): a missing object is 404, not 412
            raise ObjectNotFound("if-match: there is no object at that path")
        if not _etag_in(current.etag, cond.if_match):
            raise PreconditionFailed("if-match: the object there has another ETag")
    elif (
        cond.if_unmodified_since is not None
        and current is not None
        and _changed_since(current, cond.if_unmodified_since)
    ):
        raise PreconditionFailed("if-unmodified-since: the object there changed since")
    if cond.if_none_match is not None and current is not None:
        if "*" in cond.if_none_match:
            raise PreconditionFailed("if-none-match: an object already exists at that path")
        if _etag_in(current.etag, cond.if_none_match):
            raise PreconditionFailed("if-none-match: the object there has that ETag")


def resolve_range(rng: ByteRange | None, size: int) -> tuple[int, int]:
    """(offset, length) of ``rng`` in an object of ``size`` bytes (RFC 9110
    §14.1.2): the end is clamped to the object; a range that selects nothing
    (a start at or past the end, a suffix of 0, any range of an empty object)
    is ``InvalidRange``; a malformed one (negative, end before start) is a
    ``BadArgument`` — a protocol that ignores those must not pass them."""
    if rng is None:
        return 0, size
    if rng.suffix is not None:
        if rng.start is not None or rng.end is not None:
            raise BadArgument("a suffix range has no start or end")
        if rng.suffix < 0:
            raise BadArgument(f"range suffix {rng.suffix} is negative")
        if rng.suffix == 0 or size == 0:
            raise InvalidRange(f"the last {rng.suffix} bytes of {size} select nothing", size=size)
        length = min(rng.suffix, size)
        return size - length, length
    start = rng.start or 0
    if start < 0 or (rng.end is not None and rng.end < start):
        raise BadArgument(f"invalid byte range {start}-{'' if rng.end is None else rng.end}")
    if start >= size:
        raise InvalidRange(
            f"the range starts at byte {start}, beyond the object's {size} bytes", size=size
        )
    end = size - 1 if rng.end is None else min(rng.end, size - 1)
    return start, end - start + 1
