"""The checksum a copy is asked to carry (S3's CopyObject with
``x-amz-checksum-algorithm``): a value of the whole object, of the asked
algorithm.

The source's own value is copied when it is of the whole object. Otherwise
(none of that algorithm, or a COMPOSITE one made of a multipart upload's
part values) it is made: a CRC of the whole from the parts' CRCs and sizes
(no byte read), else by reading the object once, streamed (memory stays
flat), with the hashing off the event loop. A copy shares its source's
stored bytes, so this is the only copy that reads any; sources larger than
S3's copy limit are refused rather than read. The value is of one version
of the source; the copy commits it only if that version is still the
source when it commits.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime

from jointcloud.core.blockstore import BlockStore
from jointcloud.core.models import ChecksumAlgorithm, ObjectContent, ObjectInfo
from jointcloud.errors import CopyTooLarge
from jointcloud.redundancy.checksums import FULL_OBJECT_CHECKSUMS, Checksums, combine_checksums

# Pieces at least this large are hashed in a worker thread (CRCs and
# hashlib release the GIL); smaller ones cost less than the hop.
_THREAD_AT = 256 * 1024
# S3 copies at most 5 GiB in one CopyObject; a checksum is read for no more.
MAX_READ_FOR_CHECKSUM = 5 * 1024**3


@dataclass(frozen=True)
class SourceChecksum:
    """A checksum of one version of an object (the version's row, ETag and
    update time: an overwrite changes at least one)."""

    version: tuple[int, str, datetime]
    algorithm: ChecksumAlgorithm
    value: str

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


async def checksum_of_object(
    store: BlockStore, content: ObjectContent, algorithm: ChecksumAlgorithm
) -> SourceChecksum:
    """``content``'s whole-object ``algorithm`` checksum, as S3 gives it
    (base64 of the big-endian digest)."""
    version = version_of(content.info)
    combined = _combined(content, algorithm)
    if combined is not None:
        return SourceChecksum(version, algorithm, combined)
    if content.info.size > MAX_READ_FOR_CHECKSUM:
        raise CopyTooLarge(
            f"the copy source is {content.info.size} bytes: a checksum of another "
            f"algorithm is computed for copies of at most {MAX_READ_FOR_CHECKSUM} bytes "
            "(copy it in parts, with UploadPartCopy)"
        )
    sums = Checksums([str(algorithm)])
    sha256 = hashlib.sha256() if algorithm is ChecksumAlgorithm.SHA256 else None

    def update(piece: bytes) -> None:
        sums.update(piece)
        if sha256 is not None:
            sha256.update(piece)

    async for piece in store.read(content, 0, content.info.size):
        if len(piece) >= _THREAD_AT:
            await asyncio.to_thread(update, piece)
        else:
            update(piece)
    digest = sha256.digest() if sha256 is not None else b""
    return SourceChecksum(version, algorithm, sums.result(digest)[str(algorithm)])


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
