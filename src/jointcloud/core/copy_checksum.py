"""The checksum a copy is asked to carry when its source has none of that
algorithm (S3's CopyObject with ``x-amz-checksum-algorithm``).

A copy shares its source's stored bytes, so no byte is read for it — except
here: a checksum of another algorithm can only be had by reading the whole
object once, streamed (memory stays flat) with the hashing off the event
loop. The value is of the bytes of one version of the source; the copy
commits it only if that version is still the source when it commits.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime

from jointcloud.core.blockstore import BlockStore
from jointcloud.core.models import ChecksumAlgorithm, ObjectContent, ObjectInfo
from jointcloud.redundancy.checksums import Checksums

# Pieces at least this large are hashed in a worker thread (CRCs and
# hashlib release the GIL); smaller ones cost less than the hop.
_THREAD_AT = 256 * 1024


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
    """Whether a copy of ``info`` asked for ``algorithm`` must compute it
    (the source's own value of that algorithm, if any, is copied)."""
    return algorithm is not None and algorithm not in info.checksums


async def checksum_of_object(
    store: BlockStore, content: ObjectContent, algorithm: ChecksumAlgorithm
) -> SourceChecksum:
    """Read ``content`` whole and return its ``algorithm`` checksum, as
    S3 gives it (base64 of the big-endian digest)."""
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
    return SourceChecksum(version_of(content.info), algorithm, sums.result(digest)[str(algorithm)])
