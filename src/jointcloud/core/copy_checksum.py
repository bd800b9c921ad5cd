"""What a copy of one piece must read its source for (S3's CopyObject):
the MD5 of a source completed from uploaded parts, and a checksum of an
algorithm the source does not have whole (one asked for, or the algorithm
of the source's COMPOSITE value, which a copy of one piece has whole).

A copy shares its source's stored bytes, and most copies read none. Two
cases must: S3's CopyObject makes a new object of one piece, whose ETag is
the MD5 of its bytes, not its multipart source's ``<md5>-N`` (AWS; clients
such as rclone take a 32-digit ETag for the bytes' MD5); and a copy asked
for a checksum (``x-amz-checksum-algorithm``) carries a value of the whole
object of that algorithm. The source's own value is copied when it is of
the whole object; a CRC of the whole is combined from the parts' CRCs and
sizes (no byte read); otherwise the object is read once, streamed (memory
stays flat), hashing off the event loop, and one read serves both. Sources
larger than S3's copy limit are refused rather than read. What is read is
of one version of the source; the copy commits it only if that version is
still the source when it commits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from jointcloud.core.blockstore import BlockStore
from jointcloud.core.models import ChecksumAlgorithm, ObjectContent, ObjectInfo
from jointcloud.core.object_parts import multipart_etag
from jointcloud.errors import CopyTooLarge
from jointcloud.redundancy.checksums import FULL_OBJECT_CHECKSUMS, Checksums, combine_checksums
from jointcloud.redundancy.tasks import _cpu

# Pieces at least this large are hashed in a worker thread (CRCs and
# hashlib release the GIL); smaller ones cost less than the hop.
_THREAD_AT = 256 * 1024
# S3 copies at most 5 GiB in one CopyObject; no copy reads more.
MAX_READ_FOR_COPY = 5 * 1024**3


@dataclass(frozen=True)
class SourceDigest:
    """What was read of one version of an object (the version's row, ETag
    and update time: an overwrite changes at least one)."""

    version: tuple[int, str, datetime]
    checksum: tuple[ChecksumAlgorithm, str] | None  # (algorithm, S3's base64 value)
    md5: str | None  # hex, for the ETag of a copy of one piece

    def of(self, info: ObjectInfo) -> bool:
        return self.version == version_of(info)


def version_of(info: ObjectInfo) -> tuple[int, str, datetime]:
    return (info.object_id, info.etag, info.update_time)


def needs_checksum(info: ObjectInfo, algorithm: ChecksumAlgorithm | None) -> bool:
    """Whether a copy of ``info`` asked for ``algorithm`` must make its value:
    the source has none of it, or only a COMPOSITE one (``…-N``)."""
    if algorithm is None:
        return False
    own = info.checksums.get(algorithm)
    return own is None or "-" in own


def copy_algorithm(
    info: ObjectInfo, asked: ChecksumAlgorithm | None, one_piece: bool
) -> ChecksumAlgorithm | None:
    """The algorithm whose whole-object value a copy of ``info`` carries:
    the one asked for; else, for a copy of one piece, that of a COMPOSITE
    value of the source ("with a copy command, the checksum of the object
    is a direct checksum of the full object", AWS's user guide); else none
    (the source's values are copied as they are)."""
    if asked is not None or not one_piece:
        return asked
    composite = [algorithm for algorithm, value in info.checksums.items() if "-" in value]
    return composite[0] if composite else None


def to_read(
    info: ObjectInfo, asked: ChecksumAlgorithm | None, one_piece: bool
) -> tuple[ChecksumAlgorithm | None, bool]:
    """What a copy of ``info`` must make by reading it: the algorithm of a
    whole-object checksum it lacks (or None), and whether its MD5."""
    algorithm = copy_algorithm(info, asked, one_piece)
    checksum = algorithm if needs_checksum(info, algorithm) else None
    return checksum, needs_md5(info, one_piece)


def needs_md5(info: ObjectInfo, one_piece: bool) -> bool:
    """Whether a copy of one piece must read ``info``'s MD5 for its ETag."""
    return one_piece and multipart_etag(info.etag)


def refuse_too_large(info: ObjectInfo) -> None:
    if info.size > MAX_READ_FOR_COPY:
        raise CopyTooLarge(
            "The specified copy source is larger than the maximum allowable size for a "
            f"copy source: {MAX_READ_FOR_COPY} (it is {info.size} bytes; copy it in "
            "parts, with UploadPartCopy)"
        )


async def read_digests(
    store: BlockStore,
    content: ObjectContent,
    algorithm: ChecksumAlgorithm | None,
    *,
    md5: bool,
) -> SourceDigest:
    """``content``'s whole-object ``algorithm`` checksum, as S3 gives it
    (base64 of the big-endian digest), and its MD5 if ``md5``: the source
    is read at most once, for both."""
    version = version_of(content.info)
    checksum = None
    if algorithm is not None:
        combined = _combined(content, algorithm)
        if combined is not None:
            checksum, algorithm = (algorithm, combined), None
    if algorithm is None and not md5:
        return SourceDigest(version, checksum, None)
    refuse_too_large(content.info)
    sums = Checksums([] if algorithm is None else [str(algorithm)])
    hashers = []
    if md5:
        hashers.append(hashlib.md5(usedforsecurity=False))
    sha256 = hashlib.sha256() if algorithm is ChecksumAlgorithm.SHA256 else None
    if sha256 is not None:
        hashers.append(sha256)

    def update(piece: bytes) -> None:
        sums.update(piece)
        for hasher in hashers:
            hasher.update(piece)

    # The data path's CPU pool, not the default executor the spaces' file
    # I/O runs in (reads this waits on); the stream closed however it ends.
    pieces = store.read(content, 0, content.info.size)
    try:
        async for piece in pieces:
            if len(piece) >= _THREAD_AT:
                await _cpu(update, piece)
            else:
                update(piece)
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]  # an async generator
    if algorithm is not None:
        digest = sha256.digest() if sha256 is not None else b""
        checksum = (algorithm, sums.result(digest)[str(algorithm)])
    return SourceDigest(version, checksum, hashers[0].hexdigest() if md5 else None)


def _combined(content: ObjectContent, algorithm: ChecksumAlgorithm) -> str | None:
    """A CRC of the whole made of every part's CRC and size, if each part
    kept its value of ``algorithm``."""
    if str(algorithm) not in FULL_OBJECT_CHECKSUMS or not content.parts:
        return None
    values = content.part_checksums
    if len(values) != len(content.parts) or not all(algorithm in v for v in values):
        return None
    pieces = [(v[algorithm], rec.size) for v, (_, rec) in zip(values, content.parts, strict=True)]
    return combine_checksums(str(algorithm), pieces)
