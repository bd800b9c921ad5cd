"""Typed, protocol-neutral commands and addresses of the core services.

Every protocol (JCS v1, S3, the gateway facade, link sharing) parses its wire
format into these and calls a core service with a ``Principal``; nothing here
knows a header, a JSON field name or an XML element. Addresses name things the
way the protocols do — by id (JCS) or by name, project → package → path (S3:
credentials scoped to a project, bucket = package, key = path) — and the core
resolves them, checking the principal, in one place (``PackageService.resolve``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# Plain data the metadata layer stores too, so it lives in core.models (which
# meta may import); re-exported here with the other commands.
from jointcloud.core.models import NO_META, ChecksumAlgorithm, ObjectMeta

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
    conditions: Conditions = NO_CONDITIONS
    redundancy: object = None  # a policy override (JCS), None: the package's


@dataclass(frozen=True)
class GetObject:
    address: ObjectAddress
    range: ByteRange | None = None
    conditions: Conditions = NO_CONDITIONS


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


@dataclass(frozen=True)
class DeleteObject:
    address: ObjectAddress
    conditions: Conditions = NO_CONDITIONS


@dataclass(frozen=True)
class ListObjects:
    package: PackageRef
    prefix: str = ""
    delimiter: str | None = None
    start_after: str | None = None  # exclusive; also what a continuation resumes from
    max_keys: int = 1000
