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
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import logging
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from awscrt import checksums as crt  # type: ignore[import-untyped]
from isal import isal_zlib

from jointcloud.errors import BlockCorrupt, NotEnoughBlocks, SpaceError
from jointcloud.redundancy.cipher import OVERHEAD, ChunkCipher
from jointcloud.redundancy.erasure import ErasureCodec
from jointcloud.redundancy.policy import EcPolicy, Redundancy
from jointcloud.spaces.base import BlockWriter, Space

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")

# 1 MiB, not 4: an upload holds about four segments at once (received, being
# sealed, being written, MD5 lagging one behind), so eight concurrent part uploads
# peaked at 230-270 MB of RSS with 4 MiB and 175 MB with 1 MiB, at the same
# throughput (bench/s3.py's big PUT; decisions.md, "Block format"). Layouts keep
# their own segment size, so objects written with 4 MiB segments still read.
REPLICA_SEGMENT = 1024 * 1024

# CPU work (hashing, AES, EC) runs here, off the event loop and apart from the
# default executor that spaces use for file I/O.
_CPU = ThreadPoolExecutor(
    max_workers=min(32, 2 * (os.cpu_count() or 2)), thread_name_prefix="jcs-cpu"
)
_background: set[asyncio.Future[Any]] = set()


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


# The additional checksums, by their S3 names; each value is the base64 of
# the big-endian digest, as S3 returns it (``x-amz-checksum-crc32`` ...).
CHECKSUMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
_CRCS: dict[str, tuple[Callable[[Any, int], int], int]] = {
    # ISA-L's CRC32 (carry-less multiply, ~50 GB/s here) rather than awscrt's
    # table-driven one (~1.7 GB/s): CRC32 is what current AWS SDKs send with
    # every upload, so awscrt's cost half a second of CPU per GB uploaded.
    "CRC32": (isal_zlib.crc32, 4),
    "CRC32C": (crt.crc32c, 4),
    "CRC64NVME": (crt.crc64nvme, 8),
}


_COMBINE: dict[str, Callable[[int, int, int], int]] = {
    "CRC32": crt.combine_crc32,
    "CRC32C": crt.combine_crc32c,
    "CRC64NVME": crt.combine_crc64nvme,
}
FULL_OBJECT_CHECKSUMS = frozenset(_COMBINE)  # a CRC of the whole from its parts'


def combine_checksums(name: str, parts: Sequence[tuple[str, int]]) -> str:
    """The CRC ``name`` of a whole stream from those of its pieces, in order:
    (base64 value, byte length) each, as S3's FULL_OBJECT multipart checksum
    (awscrt's combine: no byte is read again)."""
    combine = _COMBINE[name]
    width = _CRCS[name][1]
    value = 0
    for i, (text, length) in enumerate(parts):
        crc = int.from_bytes(base64.b64decode(text), "big")
        value = crc if i == 0 else combine(value, crc, length)
    return base64.b64encode(value.to_bytes(width, "big")).decode()


class Checksums:
    """The additional checksums of one stream, updated segment by segment in
    the worker thread that already hashes it (awscrt's CRCs and hashlib both
    release the GIL). SHA-256 is not computed twice: it is the digest the
    write path computes anyway for ``fileHash``, handed to ``result``."""

    def __init__(self, names: Collection[str] = ()) -> None:
        unknown = set(names) - set(CHECKSUMS)
        if unknown:
            raise ValueError(f"unknown checksum algorithms: {sorted(unknown)}")
        self.names = frozenset(names)
        self._crcs = [(n, *_CRCS[n]) for n in CHECKSUMS if n in self.names and n in _CRCS]
        self._values = [0] * len(self._crcs)
        self._sha1 = hashlib.sha1() if "SHA1" in self.names else None

    def update(self, data: bytes | memoryview) -> None:
        for i, (_, fn, _) in enumerate(self._crcs):
            self._values[i] = fn(data, self._values[i])
        if self._sha1 is not None:
            self._sha1.update(data)

    def result(self, sha256: bytes) -> dict[str, str]:
        """Name → base64 digest; ``sha256`` is the stream's SHA-256 digest."""
        out: dict[str, str] = {}
        for (name, _, width), value in zip(self._crcs, self._values, strict=True):
            out[name] = base64.b64encode(value.to_bytes(width, "big")).decode()
        if self._sha1 is not None:
            out["SHA1"] = base64.b64encode(self._sha1.digest()).decode()
        if "SHA256" in self.names:
            out["SHA256"] = base64.b64encode(sha256).decode()
        return out


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


async def _cpu(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_CPU, fn, *args)


async def _run_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure (or cancellation) cancel the rest and
    wait for them, then raise it. Unlike ``gather`` nothing keeps running behind."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
        errors = [t.exception() for t in tasks if not t.cancelled()]
    for exc in errors:
        if exc is not None:
            raise exc
    return [t.result() for t in tasks]


def _forget(task: asyncio.Future[Any] | None) -> None:
    """Cancel a task we no longer await, without an unretrieved-exception warning."""
    if task is None:
        return
    if task.done():
        if not task.cancelled():
            task.exception()  # mark it retrieved
        return
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


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


def encode_whole(
    data: bytes,
    policy: Redundancy,
    data_key: bytes,
    *,
    segment_size: int | None = None,
    checksums: Collection[str] = (),
) -> tuple[WriteResult, list[bytes]]:
    """What ``write_blocks`` would store for ``data`` (a small object already in
    memory), computed in one go: the result and every block's bytes, by block
    index (replicas share one bytes object). CPU only; run it off the loop."""
    seg_size = segment_size or segment_size_for(policy)
    chunk_len = chunk_len_for(policy, seg_size)
    codec = ErasureCodec(policy.k, policy.n) if isinstance(policy, EcPolicy) else None
    cipher = ChunkCipher(data_key)
    width = policy.width
    pieces: list[list[bytes]] = [[] for _ in range(width if codec else 1)]
    for j, start in enumerate(range(0, len(data), seg_size)):
        seg = data[start : start + seg_size]
        if codec is None:
            pieces[0].append(cipher.seal(0, j, seg))
        else:
            for i, frag in enumerate(codec.encode(seg)):
                pieces[i].append(cipher.seal(i, j, frag))
    joined = [p[0] if len(p) == 1 else b"".join(p) for p in pieces]
    blocks = joined if codec else joined * width
    sha = hashlib.sha256(data)
    extra: dict[str, str] = {}
    if checksums:
        summer = Checksums(checksums)
        summer.update(data)
        extra = summer.result(sha.digest())
    result = WriteResult(
        size=len(data),
        sha256=sha.hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        segment_size=seg_size,
        chunk_len=chunk_len,
        block_sizes=[len(b) for b in blocks],
        checksums=extra,
    )
    return result, blocks


def decode_whole(block: bytes, layout: Layout) -> bytes:
    """The plaintext of a one-block (policy none) layout held in memory: an
    inline small object. Every chunk is authenticated (``BlockCorrupt``)."""
    cipher = ChunkCipher(layout.data_key)
    out = []
    for j, start in enumerate(range(0, len(block), layout.chunk_len)):
        out.append(cipher.open(0, j, block[start : start + layout.chunk_len]))
    data = out[0] if len(out) == 1 else b"".join(out)
    if len(data) != layout.size:
        raise BlockCorrupt(f"inline block holds {len(data)} bytes, its layout {layout.size}")
    return data


async def encode_many(
    items: Sequence[tuple[bytes, bytes]], policy: Redundancy, checksums: Collection[str] = ()
) -> list[tuple[WriteResult, list[bytes]]]:
    """``encode_whole`` of each (data, data key), in one hop to the CPU pool."""

    def run() -> list[tuple[WriteResult, list[bytes]]]:
        return [encode_whole(data, policy, key, checksums=checksums) for data, key in items]

    return await _cpu(run)


@runtime_checkable
class BatchPut(Protocol):
    """A space that stores many small keys in one call, durable together (one
    durability point for the batch instead of one per key)."""

    async def put_many(self, items: Sequence[tuple[str, bytes]]) -> None: ...


PUT_PARALLEL = 16  # whole-block puts in flight at once to a space without ``put_many``


async def put_blocks(items: Sequence[tuple[Space, str, bytes]]) -> None:
    """Store whole blocks; every one is durable when this returns.

    Keys of one space go in one ``put_many`` call where the space has it,
    elsewhere up to ``PUT_PARALLEL`` plain puts at once. Nothing is left
    running when this returns or raises (it waits for every started put, and
    starts no new one after a failure); a failure leaves keys that the caller
    deletes."""
    by_space: dict[int, tuple[Space, list[tuple[str, bytes]]]] = {}
    for space, key, data in items:
        by_space.setdefault(id(space), (space, []))[1].append((key, data))
    gate = asyncio.Semaphore(PUT_PARALLEL)
    failed: list[BaseException] = []

    async def one(space: Space, key: str, data: bytes) -> None:
        async with gate:
            if not failed:
                await space.put(key, data)

    async def guarded(aw: Awaitable[None]) -> None:
        try:
            await aw
        except BaseException as exc:
            failed.append(exc)

    jobs: list[Awaitable[None]] = []
    for space, group in by_space.values():
        if isinstance(space, BatchPut):
            jobs.append(guarded(space.put_many(group)))
        else:
            jobs.extend(guarded(one(space, k, d)) for k, d in group)
    task = asyncio.ensure_future(asyncio.gather(*jobs))
    # Shielded: a cancelled caller still waits here until no put is running,
    # so its clean-up cannot race a put that lands afterwards.
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
    if failed:
        raise failed[0]


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
        except Exception:
            log.warning("could not abort block %s of a failed upload", ref.key, exc_info=True)
        try:
            if commit_started[i]:
                await ref.space.delete(ref.key)
        except Exception:
            # The GC job removes blocks that no committed layout references.
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
    data = await ref.space.read(ref.key, run.start * geometry.chunk_len, sum(lens))

    def open_all() -> tuple[list[bytes], BlockCorrupt | None]:
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

    return await _cpu(open_all)


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
