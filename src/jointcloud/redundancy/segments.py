"""Layouts and their segments (DESIGN §5): where an object's blocks live, how
its bytes are cut into segments and where each segment's chunk sits in a block.

Chunk ``j`` of every block starts at ``j * chunk_len``; only the last one is
shorter. That fixed geometry is what lets a ranged read fetch exactly the
chunks it needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass, field

from jointcloud.redundancy.cipher import OVERHEAD
from jointcloud.redundancy.erasure import ErasureCodec
from jointcloud.redundancy.policy import EcPolicy, Redundancy
from jointcloud.spaces.base import Space

# 1 MiB, not 4: an upload holds about four segments at once (received, being
# sealed, being written, MD5 lagging one behind), so eight concurrent part uploads
# peaked at 230-270 MB of RSS with 4 MiB and 175 MB with 1 MiB, at the same
# throughput (bench/s3.py's big PUT; decisions.md, "Block format"). Layouts keep
# their own segment size, so objects written with 4 MiB segments still read.
REPLICA_SEGMENT = 1024 * 1024


@dataclass(frozen=True)
class BlockRef:
    """Where one block of a layout lives."""

    index: int  # 0 for none; 0..rep-1 for rep; fragment index 0..n-1 for ec
    space: Space
    key: str
    space_id: int


@dataclass(frozen=True)
class Layout:
    """Everything needed to read an object back from its blocks."""

    policy: Redundancy
    size: int  # plaintext bytes
    segment_size: int  # plaintext bytes per full segment
    chunk_len: int  # stored bytes per full segment in each block (incl. GCM tag)
    data_key: bytes


@dataclass
class WriteResult:
    size: int
    sha256: str  # lower hex
    md5: str  # lower hex
    segment_size: int
    chunk_len: int
    block_sizes: list[int]  # by block index
    checksums: dict[str, str] = field(default_factory=dict)  # see ``Checksums``


def segment_size_for(policy: Redundancy) -> int:
    """Default segment size: ``k * chunkSize`` for ec, ``REPLICA_SEGMENT`` otherwise."""
    return policy.segment_size if isinstance(policy, EcPolicy) else REPLICA_SEGMENT


def chunk_len_for(policy: Redundancy, segment_size: int) -> int:
    """Stored bytes per full segment in each block."""
    if isinstance(policy, EcPolicy):
        return ErasureCodec(policy.k, policy.n).fragment_len(segment_size) + OVERHEAD
    return segment_size + OVERHEAD


class _Geometry:
    """Segment arithmetic of one layout."""

    def __init__(self, policy: Redundancy, size: int, segment_size: int, chunk_len: int):
        if segment_size <= 0:
            raise ValueError("segment size must be positive")
        self.size = size
        self.segment_size = segment_size
        self.chunk_len = chunk_len
        self.codec = ErasureCodec(policy.k, policy.n) if isinstance(policy, EcPolicy) else None
        self.count = -(-size // segment_size)

    def seg_len(self, j: int) -> int:
        return min(self.segment_size, self.size - j * self.segment_size)

    def stored_len(self, j: int) -> int:
        n = self.seg_len(j)
        if n == self.segment_size:
            return self.chunk_len
        return (self.codec.fragment_len(n) if self.codec else n) + OVERHEAD

    @classmethod
    def of(cls, layout: Layout) -> _Geometry:
        return cls(layout.policy, layout.size, layout.segment_size, layout.chunk_len)


class _Segmenter:
    """Cuts a byte stream into ``size``-byte segments with at most one copy per byte."""

    def __init__(self, source: AsyncIterable[bytes], size: int) -> None:
        self._it = aiter(source)
        self._size = size
        self._parts: list[bytes | memoryview] = []
        self._have = 0
        self._eof = False

    async def next(self) -> bytes | None:
        while self._have < self._size and not self._eof:
            try:
                chunk = await anext(self._it)
            except StopAsyncIteration:
                self._eof = True
                break
            if chunk:
                # A bytearray/memoryview may be reused by its producer: take a copy.
                part = chunk if isinstance(chunk, bytes) else bytes(chunk)
                self._parts.append(part)
                self._have += len(part)
        if not self._have:
            return None
        return self._cut(min(self._size, self._have))

    def _cut(self, size: int) -> bytes:
        parts = self._parts
        out: list[bytes | memoryview] = []
        need, i = size, 0
        while need:
            part = parts[i]
            if len(part) <= need:
                out.append(part)
                need -= len(part)
                i += 1
            else:
                view = memoryview(part)
                out.append(view[:need])
                parts[i] = view[need:]
                need = 0
        del parts[:i]
        self._have -= size
        if len(out) == 1 and type(out[0]) is bytes:
            return out[0]  # a source chunk that is exactly one segment: no copy
        return b"".join(out)
