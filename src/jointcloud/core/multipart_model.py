"""Multipart uploads, the entities and the rules: an upload, its parts and
listing pages, the completion list's entries, and ``PartRules`` (what one
protocol's multipart allows: S3's part numbers and checks, or JCS v1's).
:mod:`~jointcloud.core.multipart` re-exports these names.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple

from jointcloud.core.commands import ChecksumAlgorithm, ObjectMeta
from jointcloud.core.models import Package
from jointcloud.errors import BadArgument, UploadNotFound
from jointcloud.meta.uploads import PartRecord, UploadRecord
from jointcloud.redundancy.policy import Redundancy

MAX_PART_INDEX = 100_000  # JCS v1 part indexes are 0..MAX_PART_INDEX
MAX_PART_NUMBER = 10_000  # S3 part numbers are 1..MAX_PART_NUMBER
DEFAULT_MIN_PART_SIZE = 5 * 1024 * 1024  # S3's (Settings.multipart_min_part_size)
MAX_PART_SIZE = 5 * 1024**3  # S3's
MAX_PAGE = 1000  # parts or uploads per listing page
UPLOAD_ID_BYTES = 32

EMPTY: Mapping[ChecksumAlgorithm, str] = MappingProxyType({})


@dataclass(frozen=True)
class PartRules:
    """What one protocol's multipart allows."""

    first_part: int = 1
    last_part: int = MAX_PART_NUMBER
    # The completion lists parts in ascending order (else: any order, no repeats).
    ascending: bool = True
    # Each listed part carries the ETag its upload answered, checked.
    check_etags: bool = True
    # Every part but the last is at least the service's ``min_part_size``.
    min_size: bool = True
    max_part_size: int | None = MAX_PART_SIZE
    # An upload whose algorithm was named and whose value is COMPOSITE (made
    # of the parts' values) takes parts only with their value of it, and is
    # completed only with each part's value listed (as S3).
    composite_part_checksums: bool = True


S3_RULES = PartRules()
JCS_RULES = PartRules(
    first_part=0,
    last_part=MAX_PART_INDEX,
    ascending=False,
    check_etags=False,
    min_size=False,
    max_part_size=None,
    composite_part_checksums=False,
)


class CompletedPart(NamedTuple):
    """One entry of a completion list: the part, the ETag its upload answered
    (quotes allowed) and the checksums it answered (base64), if any."""

    part_number: int
    etag: str | None = None
    checksums: Mapping[ChecksumAlgorithm, str] = EMPTY


@dataclass(frozen=True)
class Upload:
    upload_id: str
    package_id: int
    path: str
    redundancy: Redundancy
    meta: ObjectMeta = field(hash=False)
    checksum_algorithm: ChecksumAlgorithm | None
    object_id: int | None  # the object a JCS upload is linked to
    create_time: datetime
    update_time: datetime
    # The object's checksum: a CRC of all its bytes (S3's FULL_OBJECT), not
    # a checksum of the parts' checksums (COMPOSITE, ``…-N``).
    full_object: bool = False


@dataclass(frozen=True)
class Part:
    part_number: int
    etag: str  # MD5 hex of the part's bytes
    size: int
    checksums: Mapping[ChecksumAlgorithm, str] = field(hash=False)  # base64
    update_time: datetime


@dataclass(frozen=True)
class PartsPage:
    upload: Upload
    parts: list[Part]
    next_marker: int | None  # the part number to resume after; None: the last page


@dataclass(frozen=True)
class UploadsPage:
    uploads: list[Upload]
    # Where the next page starts (None: this is the last page).
    next_key_marker: str | None
    next_upload_id_marker: str | None


def new_upload_id() -> str:
    """Random and opaque, letters and digits only: an id beginning with '-'
    reads as an option to command-line clients (aws s3api --upload-id)."""
    return secrets.token_bytes(UPLOAD_ID_BYTES).hex()


def to_upload(rec: UploadRecord) -> Upload:
    return Upload(
        upload_id=rec.upload_id,
        package_id=rec.package_id,
        path=rec.path,
        redundancy=rec.policy,
        meta=rec.meta,
        checksum_algorithm=rec.checksum_algorithm,
        object_id=rec.object_id,
        create_time=rec.create_time,
        update_time=rec.update_time,
        full_object=rec.full_object,
    )


def to_part(rec: PartRecord) -> Part:
    return Part(
        part_number=rec.part_number,
        etag=rec.md5,
        size=rec.size,
        checksums=dict(rec.checksums),
        update_time=rec.create_time,
    )


def parts_phrase(numbers: Sequence[int]) -> str:
    listed = ", ".join(map(str, numbers))
    return f"part {listed} was" if len(numbers) == 1 else f"parts {listed} were"


def composite_algorithm(rec: UploadRecord, rules: PartRules) -> ChecksumAlgorithm | None:
    """The algorithm whose part values ``rec``'s COMPOSITE value is made of,
    when ``rules`` hold each part to carry and list its own (S3); else None."""
    if rules.composite_part_checksums and not rec.full_object:
        return rec.checksum_algorithm
    return None


def match_upload(rec: UploadRecord | None, upload_id: str, pkg: Package, path: str) -> UploadRecord:
    # An upload of another package or path does not exist here (S3: NoSuchUpload).
    if rec is None or rec.package_id != pkg.package_id or rec.path != path:
        raise UploadNotFound(
            f"no multipart upload {upload_id!r} in progress for {path!r} "
            "(finished, aborted or never begun)",
            name=upload_id,
        )
    return rec


def check_part_number(part_number: int, rules: PartRules) -> None:
    if (
        isinstance(part_number, bool)
        or not isinstance(part_number, int)
        or not rules.first_part <= part_number <= rules.last_part
    ):
        raise BadArgument(
            f"part number must be between {rules.first_part} and {rules.last_part}, "
            f"got {part_number!r}"
        )
