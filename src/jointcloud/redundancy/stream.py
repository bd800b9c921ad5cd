"""Streaming between object bytes and stored blocks (DESIGN §5).

Write: the body is cut into segments; each segment is hashed (SHA-256 for
``fileHash``, MD5 for the S3 ETag, and the additional checksums a client asked
for: CRC32, CRC32C, CRC64NVME, SHA-1 — see ``Checksums``), then sealed (none/rep: once, the same
ciphertext goes to every replica, so replicas are byte-identical) or erasure coded
into ``n`` fragments that are sealed one by one. Chunk ``j`` of every block starts at
``j * chunk_len``; only the last one is shorter. That fixed geometry is what lets a
ranged read fetch exactly the chunks it needs.

The write pipeline has three stages running at once: segment ``j`` is written to all
blocks, ``j+1`` is hashed/encrypted/encoded in worker threads, ``j+2`` is received
from the source. So memory is bounded by about three segments whatever the object
size. MD5 and SHA-256 run in two different threads because MD5 alone is the slowest
step of the whole path (~0.5-0.75 GB/s per core) and hashlib releases the GIL.

A write is all or nothing: ``write_blocks`` returns only after every block
committed; on any failure (source, space, cancellation) every writer is aborted and
every block whose commit started is deleted before the error is re-raised.

Read: only the segments that cover the range, and from each block only the chunks
of those segments. For EC the code is systematic, so a range is served from the
data fragments that hold it; only when one of them is missing or corrupt are other
fragments fetched to make up ``k`` and decode. Segment ``j+1`` is fetched while
``j`` is consumed.

Beside it: layouts and segment geometry (``segments``), the additional
checksums (``checksums``), small objects handled whole in memory (``whole``)
and the thread pool and task helpers (``tasks``).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
)
from typing import Any, Literal, TypeGuard, TypeVar

from jointcloud.errors import BlockCorrupt, NotEnoughBlocks, SpaceError
from jointcloud.redundancy.checksums import (
    CHECKSUMS,
    FULL_OBJECT_CHECKSUMS,
    Checksums,
    combine_checksums,
)
from jointcloud.redundancy.cipher import OVERHEAD, ChunkCipher
from jointcloud.redundancy.erasure import ErasureCodec
from jointcloud.redundancy.policy import Redundancy
from jointcloud.redundancy.segments import (
    REPLICA_SEGMENT,
    BlockRef,
    Layout,
    WriteResult,
    _Geometry,
    _Segmenter,
    chunk_len_for,
    segment_size_for,
)
from jointcloud.redundancy.tasks import _cpu, _forget, _run_all
from jointcloud.redundancy.whole import (
    PUT_PARALLEL,
    BatchPut,
    decode_whole,
    encode_many,
    encode_whole,
    put_blocks,
)
from jointcloud.spaces.base import BlockingSpace, BlockWriter, CachedReads

# The data path's public names, with those defined in ``checksums``,
# ``segments`` and ``whole``: callers (``core``; ``api`` only through it)
# import them all from here.
__all__ = [
    "CHECKSUMS",
    "COPY_READ_AHEAD",
    "FULL_OBJECT_CHECKSUMS",
    "PUT_PARALLEL",
    "READ_AHEAD",
    "READ_RUN",
    "REPLICA_SEGMENT",
    "BatchPut",
    "BlockRef",
    "Checksums",
    "Layout",
    "WriteResult",
    "chunk_len_for",
    "combine_checksums",
    "decode_whole",
    "encode_many",
    "encode_whole",
    "put_blocks",
    "read_range",
    "segment_size_for",
    "stored_block_size",
    "verify_block",
    "write_blocks",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")

_background: set[asyncio.Future[Any]] = set()


def _ordered_blocks(policy: Redundancy, blocks: list[BlockRef]) -> list[BlockRef]:
    if len(blocks) != policy.width:
        raise ValueError(f"policy needs {policy.width} blocks, got {len(blocks)}")
    ordered = sorted(blocks, key=lambda b: b.index)
    if [b.index for b in ordered] != list(range(policy.width)):
        raise ValueError(f"block indexes must be 0..{policy.width - 1}")
    return ordered


async def write_blocks(
    source: AsyncIterator[bytes],
    policy: Redundancy,
    blocks: list[BlockRef],
    data_key: bytes,
    *,
    segment_size: int | None = None,
    checksums: Collection[str] = (),
) -> WriteResult:
    """Stream ``source`` into ``blocks`` under ``policy``; see the module
    docstring. ``checksums``: additional checksums to compute (``CHECKSUMS``)."""
    ordered = _ordered_blocks(policy, blocks)
    seg_size = segment_size or segment_size_for(policy)
    geometry = _Geometry(policy, 0, seg_size, chunk_len_for(policy, seg_size))
    cipher = ChunkCipher(data_key)
    codec = geometry.codec
    md5, sha = hashlib.md5(), hashlib.sha256()
    extra = Checksums(checksums) if checksums else None

    def encode(j: int, seg: bytes) -> list[bytes]:
        sha.update(seg)
        if extra is not None:
            extra.update(seg)
        if codec is None:
            return [cipher.seal(0, j, seg)]
        return [cipher.seal(i, j, frag) for i, frag in enumerate(codec.encode(seg))]

    writers: list[BlockWriter | None] = [None] * len(ordered)
    commit_started = [False] * len(ordered)
    try:
        await _run_all(_open(ordered, writers, i) for i in range(len(ordered)))
        opened = [w for w in writers if w is not None]
        size, stored = await _pump(_Segmenter(source, seg_size), md5, encode, opened)
        await _run_all(_commit(opened, commit_started, i) for i in range(len(opened)))
    except BaseException:
        await _discard(ordered, writers, commit_started)
        raise
    return WriteResult(
        size=size,
        sha256=sha.hexdigest(),
        md5=md5.hexdigest(),
        segment_size=seg_size,
        chunk_len=geometry.chunk_len,
        block_sizes=stored,
        checksums={} if extra is None else extra.result(sha.digest()),
    )


async def _open(blocks: list[BlockRef], writers: list[BlockWriter | None], i: int) -> None:
    writers[i] = await blocks[i].space.open_writer(blocks[i].key)


async def _commit(writers: list[BlockWriter], started: list[bool], i: int) -> None:
    started[i] = True
    await writers[i].commit()


async def _chain_md5(prev: asyncio.Future[None] | None, md5: Any, seg: bytes) -> None:
    if prev is not None:
        await prev
    await _cpu(md5.update, seg)


async def _pump(
    segments: _Segmenter,
    md5: Any,
    encode: Callable[[int, bytes], list[bytes]],
    writers: list[BlockWriter],
) -> tuple[int, list[int]]:
    """The pipeline; returns (plaintext size, bytes stored per block).

    MD5 is the slowest step and strictly sequential, so it runs as its own
    chain that may lag one segment behind: receiving, encoding and writing do
    not wait for it segment by segment (that lock-step left a core idle)."""
    size = 0
    stored = [0] * len(writers)
    write: asyncio.Future[list[None]] | None = None
    receive: asyncio.Future[bytes | None] | None = None
    work: asyncio.Future[list[bytes]] | None = None
    digest: asyncio.Future[None] | None = None
    try:
        seg = await segments.next()
        j = 0
        while seg is not None:
            size += len(seg)
            behind = digest
            digest = asyncio.ensure_future(_chain_md5(behind, md5, seg))
            work = asyncio.ensure_future(_cpu(encode, j, seg))
            receive = asyncio.ensure_future(segments.next())
            chunks = await work
            if write is not None:
                await write
            if len(chunks) == 1:
                chunks = chunks * len(writers)
            for i, chunk in enumerate(chunks):
                stored[i] += len(chunk)
            write = asyncio.ensure_future(
                _run_all(w.write(c) for w, c in zip(writers, chunks, strict=True))
            )
            if behind is not None:
                await behind  # bounds memory: MD5 lags at most one segment
            seg = await receive
            j += 1
        if write is not None:
            await write
        if digest is not None:
            await digest
    except BaseException:
        for fut in (work, receive, write, digest):
            _forget(fut)
        pending = [f for f in (receive, write, digest) if f is not None and not f.done()]
        if pending:
            await asyncio.wait(pending)
        raise
    return size, stored


async def _discard(
    blocks: list[BlockRef], writers: list[BlockWriter | None], commit_started: list[bool]
) -> None:
    """Abort every writer and delete every block whose commit started. Shielded: it
    finishes even if the caller is cancelled again while it runs."""

    async def one(i: int) -> None:
        writer, ref = writers[i], blocks[i]
        try:
            if writer is not None:
                await writer.abort()
        except SpaceError as exc:  # the space's own failure: one line, no traceback
            log.warning("could not abort block %s of a failed upload: %s", ref.key, exc.message)
        except Exception:
            log.warning("could not abort block %s of a failed upload", ref.key, exc_info=True)
        try:
            if commit_started[i]:
                await ref.space.delete(ref.key)
        except SpaceError as exc:
            # The GC job removes blocks that no committed layout references.
            log.warning("could not delete block %s of a failed upload: %s", ref.key, exc.message)
        except Exception:
            log.warning("could not delete block %s of a failed upload", ref.key, exc_info=True)

    task = asyncio.ensure_future(asyncio.gather(*(one(i) for i in range(len(blocks)))))
    _background.add(task)
    task.add_done_callback(_background.discard)
    await asyncio.shield(task)


def read_range(
    layout: Layout,
    blocks: list[BlockRef],
    offset: int,
    length: int | None,
    *,
    on_bad_block: Callable[[int, Exception], None] | None = None,
    read_ahead: int | None = None,
) -> AsyncIterator[bytes]:
    """Plaintext of ``[offset, offset+length)`` (clamped to the object),
    with ``read_ahead`` reads (runs or segments; ``READ_AHEAD`` if None)
    fetched and decrypted ahead of the consumer.

    ``blocks`` are in order of preference. A block that is missing, corrupt or fails
    is reported once through ``on_bad_block(index, error)`` and not used again by
    this read; ``NotEnoughBlocks`` if a segment cannot be served at all.
    """
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must not be negative")
    end = layout.size if length is None else min(layout.size, offset + length)
    if read_ahead is not None and read_ahead < 1:
        raise ValueError("read_ahead must be at least 1: with none, nothing would be read")
    depth = READ_AHEAD if read_ahead is None else read_ahead
    return _Reader(layout, blocks, on_bad_block).iterate(offset, end, depth)


def stored_block_size(layout: Layout) -> int:
    """Bytes each block of ``layout`` holds (every block has the same size)."""
    if layout.size == 0:
        return 0
    geometry = _Geometry.of(layout)
    return sum(geometry.stored_len(j) for j in range(geometry.count))


async def verify_block(layout: Layout, block: BlockRef) -> None:
    """Check every chunk of one block (size and GCM tag); raise ``BlockCorrupt`` or
    ``BlockNotFound``. For scrub."""
    geometry = _Geometry.of(layout)
    cipher = ChunkCipher(layout.data_key)
    nonce_index = block.index if geometry.codec else 0
    expected = sum(geometry.stored_len(j) for j in range(geometry.count))
    entry = await block.space.stat(block.key)
    if entry.size != expected:
        raise BlockCorrupt(f"block {block.key} has {entry.size} bytes, expected {expected}")

    async def check(run: range) -> None:
        _, failure = await _read_run(block, geometry, cipher, run, nonce_index, keep="none")
        if failure is not None:
            raise failure

    # In runs, as reads go: a chunk per request would be four times the
    # requests to a cloud space since segments became 1 MiB.
    async for _ in _prefetched(check, _runs(0, geometry.count - 1, _payload(geometry))):
        pass


def _payload(geometry: _Geometry) -> int:
    """Bytes a full chunk holds before sealing (so runs of chunks are the
    size of runs of segments: ``READ_RUN`` // this chunks each)."""
    return geometry.chunk_len - OVERHEAD


def _runs(first: int, last: int, size: int) -> Iterator[range]:
    """Indexes ``first..last`` in consecutive ranges of at most ``READ_RUN``
    bytes of ``size`` each."""
    per = max(1, READ_RUN // size)
    return (range(a, min(a + per, last + 1)) for a in range(first, last + 1, per))


async def _read_chunk(
    ref: BlockRef, geometry: _Geometry, cipher: ChunkCipher, nonce_index: int, j: int
) -> bytes:
    """Chunk ``j`` of a block, authenticated and decrypted."""
    want = geometry.stored_len(j)
    data = await ref.space.read(ref.key, j * geometry.chunk_len, want)
    if len(data) != want:
        raise BlockCorrupt(f"block {ref.key} is truncated at chunk {j}")
    try:
        return await _cpu(cipher.open, nonce_index, j, data)
    except BlockCorrupt:
        raise BlockCorrupt(f"block {ref.key} chunk {j} failed its integrity check") from None


Keep = Literal["plain", "stored", "none"]


_IMPLEMENTS: dict[tuple[type, type], bool] = {}


def _implements(space: object, protocol: type) -> bool:
    """``isinstance(space, protocol)`` (a runtime-checkable protocol), once
    per class: a protocol check looks at every method each time."""
    kind = (type(space), protocol)
    found = _IMPLEMENTS.get(kind)
    if found is None:
        found = _IMPLEMENTS[kind] = isinstance(space, protocol)
    return found


def _reads_blocking(space: object) -> TypeGuard[BlockingSpace]:
    return _implements(space, BlockingSpace)


def _reads_cached(space: object) -> TypeGuard[CachedReads]:
    return _implements(space, CachedReads)


async def _read_run(
    ref: BlockRef,
    geometry: _Geometry,
    cipher: ChunkCipher,
    run: range,
    nonce_index: int = 0,
    *,
    keep: Keep = "plain",
) -> tuple[list[bytes], BlockCorrupt | None]:
    """Chunks ``run`` of a block (a replica's: nonce index 0), read together
    and authenticated, up to the first that is missing or fails its check;
    with that failure (None: all of them). Each chunk is authenticated on
    its own, so the ones before a bad one are good. ``keep``: what to
    return of each good chunk: its plaintext (reads), its stored bytes
    (rebuilds copy them) or nothing (scrub only checks)."""
    lens = [geometry.stored_len(j) for j in run]
    offset, length = run.start * geometry.chunk_len, sum(lens)

    def open_all(data: bytes | bytearray) -> tuple[list[bytes], BlockCorrupt | None]:
        view, pos = memoryview(data), 0
        out: list[bytes] = []
        for j, n in zip(run, lens, strict=True):
            if pos + n > len(data):
                return out, BlockCorrupt(f"block {ref.key} is truncated at chunk {j}")
            try:
                piece = view[pos : pos + n]
                plain = cipher.open(nonce_index, j, piece)
                if keep == "plain":
                    out.append(plain)
                elif keep == "stored":
                    out.append(bytes(piece))
            except BlockCorrupt:
                return out, BlockCorrupt(f"block {ref.key} chunk {j} failed its integrity check")
            pos += n
        return out, None

    space = ref.space
    if keep == "plain" and length <= CACHED_RUN and _reads_cached(space):
        cached = space.read_cached(ref.key, offset, length)
        if cached is not None:
            return open_all(cached)
    if _reads_blocking(space):
        # Read and open in one worker thread: one hop instead of two, each
        # waiting for a turn of the loop and for the GIL (bench/small_objects.py:
        # 1 MiB downloads, docs/benchmarks.md).
        return await _cpu(lambda: open_all(space.read_blocking(ref.key, offset, length)))
    return await _cpu(open_all, await space.read(ref.key, offset, length))


async def _flattened(runs: AsyncGenerator[list[T], None]) -> AsyncGenerator[T, None]:
    try:
        async for pieces in runs:
            for piece in pieces:
                yield piece
    finally:
        await runs.aclose()  # now, not when collected: it cancels the reads ahead


READ_AHEAD = 3  # reads (runs or segments) fetched and decrypted ahead of the consumer
# Ahead of a consumer that stores what it reads (a part copy): the writer is
# the slower side, so more reads ahead only hold memory, 4 MiB of plaintext
# and of ciphertext each (eight concurrent 64 MiB part copies peaked at
# 400 MB of RSS with READ_AHEAD).
COPY_READ_AHEAD = 1
# Consecutive replica chunks fetched with one read (and opened in one CPU task):
# 1 MiB segments read one by one cost a thread hop, an open and a path check
# each, which made large GETs about a fifth dearer per byte than 4 MiB ones.
READ_RUN = 4 * 1024 * 1024
# A read's runs of up to one sealed 1 MiB segment are read and opened on the
# loop when their bytes are in memory (``CachedReads``): about 0.1 ms of the
# loop's time against two thread hand-offs. Longer runs (large objects) stay
# in worker threads, where several are opened at once; so do scrub's and
# rebuild's (``keep`` other than "plain"), which are background work.
CACHED_RUN = REPLICA_SEGMENT + OVERHEAD


async def _prefetched(
    make: Callable[[K], Awaitable[T]], indexes: Iterable[K], depth: int = READ_AHEAD
) -> AsyncGenerator[T, None]:
    """Results of ``make(j)`` in order, with up to ``depth`` later ones running
    meanwhile (reads and decryption of several segments overlap the send)."""
    it = iter(indexes)
    window: collections.deque[asyncio.Future[T]] = collections.deque()

    def fill() -> None:
        while len(window) < depth:
            j = next(it, None)
            if j is None:
                return
            window.append(asyncio.ensure_future(make(j)))

    try:
        fill()
        while window:
            result = await window[0]
            window.popleft()
            fill()
            yield result
    finally:
        for task in window:
            _forget(task)


class _Reader:
    """One ranged read: remembers bad blocks so each is tried and reported once."""

    def __init__(
        self,
        layout: Layout,
        blocks: list[BlockRef],
        on_bad_block: Callable[[int, Exception], None] | None,
    ) -> None:
        self.geometry = _Geometry.of(layout)
        self.cipher = ChunkCipher(layout.data_key)
        self.blocks = blocks
        self.on_bad_block = on_bad_block
        self.bad: set[int] = set()
        codec = self.geometry.codec
        if codec is not None:
            self.by_index: dict[int, BlockRef] = {}
            for ref in blocks:
                self.by_index.setdefault(ref.index, ref)
            # Data fragments first (no decoding needed), then parity; caller's order within.
            self.ec_order = [b.index for b in blocks if b.index < codec.k] + [
                b.index for b in blocks if b.index >= codec.k
            ]

    def iterate(self, start: int, end: int, depth: int) -> AsyncIterator[bytes]:
        size = self.geometry.segment_size
        first, last = start // size, (end - 1) // size
        if start >= end:
            first, last = 0, -1

        def bounds(j: int) -> tuple[int, int]:
            lo = start - j * size if j == first else 0
            hi = end - j * size if j == last else self.geometry.seg_len(j)
            return lo, hi

        codec = self.geometry.codec
        if codec is None:
            runs = _runs(first, last, size)
            return _flattened(_prefetched(lambda run: self._replica_run(run, bounds), runs, depth))

        def segment(j: int) -> Awaitable[bytes]:
            return self._ec_segment(codec, j, *bounds(j))

        return _prefetched(segment, range(first, last + 1), depth)

    async def _try(self, ref: BlockRef, nonce_index: int, j: int) -> bytes | None:
        try:
            return await _read_chunk(ref, self.geometry, self.cipher, nonce_index, j)
        except SpaceError as exc:
            self._mark_bad(ref, exc)
            return None

    def _mark_bad(self, ref: BlockRef, exc: SpaceError) -> None:
        if ref.index not in self.bad:
            self.bad.add(ref.index)
            if self.on_bad_block is not None:
                self.on_bad_block(ref.index, exc)

    async def _replica_run(
        self, run: range, bounds: Callable[[int], tuple[int, int]]
    ) -> list[bytes]:
        """The plaintext of segments ``run``, each cut to ``bounds(j)``: from
        the first replica that serves them, the rest of the run from the
        next one from the first segment a replica failed on."""
        plains: list[bytes] = []
        todo = run
        for ref in self.blocks:
            if ref.index in self.bad:
                continue
            try:
                opened, failure = await _read_run(ref, self.geometry, self.cipher, todo)
            except SpaceError as exc:
                self._mark_bad(ref, exc)
                continue
            plains += opened
            if failure is None:
                break
            self._mark_bad(ref, failure)
            todo = range(todo.start + len(opened), todo.stop)
        else:
            raise NotEnoughBlocks(
                f"cannot read segment {todo.start}: found 0 of 1 blocks needed", 0, 1
            )
        out = []
        for j, plain in zip(run, plains, strict=True):
            lo, hi = bounds(j)
            out.append(plain if lo == 0 and hi == len(plain) else plain[lo:hi])
        return out

    async def _ec_segment(self, codec: ErasureCodec, j: int, lo: int, hi: int) -> bytes:
        seg_len = self.geometry.seg_len(j)
        good: dict[int, bytes] = {}
        tried: set[int] = set()

        async def fetch(i: int) -> None:
            tried.add(i)
            frag = await self._try(self.by_index[i], i, j)
            if frag is not None:
                good[i] = frag

        covering = codec.data_fragments(seg_len, lo, hi)
        if all(i in self.by_index and i not in self.bad for i in covering):
            await _run_all(fetch(i) for i in covering)
            if all(i in good for i in covering):
                return await _cpu(codec.extract, good, seg_len, lo, hi)
        while len(good) < codec.k:
            candidates = [i for i in self.ec_order if i not in tried and i not in self.bad]
            if not candidates:
                raise NotEnoughBlocks(
                    f"cannot read segment {j}: found {len(good)} of {codec.k} blocks needed",
                    len(good),
                    codec.k,
                )
            await _run_all(fetch(i) for i in candidates[: codec.k - len(good)])
        if all(i in good for i in covering):
            return await _cpu(codec.extract, good, seg_len, lo, hi)
        return await _cpu(_decode_slice, codec, good, lo, hi)


def _decode_slice(codec: ErasureCodec, fragments: dict[int, bytes], lo: int, hi: int) -> bytes:
    plain = codec.decode(fragments)
    return plain if lo == 0 and hi == len(plain) else plain[lo:hi]
