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

Beside it: layouts and segment geometry (``segments``), the additional
checksums (``checksums``), small objects handled whole in memory (``whole``),
reads (``reader``) and the thread pool and task helpers (``tasks``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, TypeVar

from jointcloud.errors import SpaceError
from jointcloud.redundancy.checksums import (
    CHECKSUMS,
    FULL_OBJECT_CHECKSUMS,
    Checksums,
    combine_checksums,
)
from jointcloud.redundancy.cipher import ChunkCipher
from jointcloud.redundancy.policy import Redundancy
from jointcloud.redundancy.reader import (
    COPY_READ_AHEAD,
    READ_AHEAD,
    READ_RUN,
    BlockVerifier,
    patience,
    read_range,
    verify_block,
)
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
from jointcloud.spaces.base import BlockWriter

# The data path's public names, with those defined in ``checksums``,
# ``reader``, ``segments`` and ``whole``: callers (``core``; ``api`` only through it)
# import them all from here.
__all__ = [
    "CHECKSUMS",
    "COPY_READ_AHEAD",
    "DELETE_SECONDS",
    "FULL_OBJECT_CHECKSUMS",
    "PUT_PARALLEL",
    "READ_AHEAD",
    "READ_RUN",
    "REPLICA_SEGMENT",
    "BatchPut",
    "BlockRef",
    "BlockVerifier",
    "Checksums",
    "Layout",
    "Stalled",
    "WriteResult",
    "chunk_len_for",
    "combine_checksums",
    "decode_whole",
    "encode_many",
    "encode_whole",
    "patience",
    "put_blocks",
    "read_range",
    "segment_size_for",
    "stored_block_size",
    "verify_block",
    "write_blocks",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_background: set[asyncio.Future[Any]] = set()
# A block delete (or a writer's abort) of a failed upload not answered within
# this counts as failed: the block is owed (GC deletes it once its space
# answers) instead of the client's answer waiting for a cloud that hangs.
DELETE_SECONDS = 5.0


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
    undeleted: list[BlockRef] | None = None,
    stalled: Stalled | None = None,
) -> WriteResult:
    """Stream ``source`` into ``blocks`` under ``policy``; see the module
    docstring. ``checksums``: additional checksums to compute (``CHECKSUMS``).
    ``undeleted``: on failure, the blocks committed that could not be
    deleted again are added to it (the caller owes them). ``stalled``: see
    ``Stalled``."""
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
    confirmed = [False] * len(ordered)
    try:
        chunk = geometry.chunk_len
        await _patiently(
            _run_all(_open(ordered, writers, i) for i in range(len(ordered))), chunk, stalled
        )
        opened = [w for w in writers if w is not None]
        size, stored = await _pump(_Segmenter(source, seg_size), md5, encode, opened, stalled)
        # A commit first sends what its writer holds (``_held``).
        await _patiently(
            _run_all(_commit(opened, commit_started, i, confirmed) for i in range(len(opened))),
            min(max(stored, default=0), chunk + _held(opened)),
            stalled,
        )
    except BaseException:
        await _discard(ordered, writers, commit_started, undeleted, confirmed)
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


async def _commit(
    writers: list[BlockWriter], started: list[bool], i: int, confirmed: list[bool] | None = None
) -> None:
    started[i] = True
    await writers[i].commit()
    if confirmed is not None:
        confirmed[i] = True


def _held(writers: list[BlockWriter]) -> int:
    """The most bytes one of ``writers`` may still hold unsent once a write
    has returned (its optional ``held``: buffered, or sent and not yet
    answered; none for Local and memory writers). A write or a commit may
    wait until they are sent, so they count in its patience (found by
    review: an OpenDAL writer holds up to three 8 MiB parts, and a write or
    commit given the patience of its own 1 MiB chunk had its spaces checked
    while a slow cloud was still sending parts; a check queued behind them
    gave up a cloud that was moving bytes at 2 MB/s)."""
    return max((int(getattr(w, "held", 0)) for w in writers), default=0)


async def _chain_md5(prev: asyncio.Future[None] | None, md5: Any, seg: bytes) -> None:
    if prev is not None:
        await prev
    await _cpu(md5.update, seg)


# Asked by an upload whose writes have waited their patience (``patience``,
# as a read's): it probes the upload's spaces and raises when one of them
# does not answer (the upload is then given up, its client told to try again,
# instead of waiting for the cloud's client library's minute); it returns
# when they all answer, and the writes are waited for again. Writes that end
# while it runs show that the spaces answer: it is then cancelled.
Stalled = Callable[[], Awaitable[None]]


async def _patiently(work: Awaitable[T], nbytes: int, stalled: Stalled | None) -> T:
    """``await work``, asking ``stalled()`` each time it has waited the
    patience of ``nbytes`` (it raises to give up; ``work`` is then
    cancelled). The work is waited for while ``stalled()`` runs, and when it
    ends first its result is taken and the check dropped: a cloud that
    finishes the writes has answered, however long the check waits (a cloud,
    or a proxy before it, that serves one request at a time answers the
    check only after the writes before it). Before, a check that was not
    answered in time failed the upload and marked its space Unavailable even
    when the writes had ended meanwhile."""
    fut = asyncio.ensure_future(work)
    if stalled is None:
        return await fut
    check: asyncio.Future[None] | None = None
    try:
        while True:
            done, _ = await asyncio.wait([fut], timeout=patience(nbytes))
            if done:
                return fut.result()
            check = asyncio.ensure_future(stalled())
            await asyncio.wait([fut, check], return_when=asyncio.FIRST_COMPLETED)
            if fut.done():
                _forget(check)
                return fut.result()
            check.result()  # raises when a space did not answer
            check = None
    except BaseException:
        _forget(check)
        _forget(fut)
        raise


async def _pump(
    segments: _Segmenter,
    md5: Any,
    encode: Callable[[int, bytes], list[bytes]],
    writers: list[BlockWriter],
    stalled: Stalled | None = None,
) -> tuple[int, list[int]]:
    """The pipeline; returns (plaintext size, bytes stored per block).

    MD5 is the slowest step and strictly sequential, so it runs as its own
    chain that may lag one segment behind: receiving, encoding and writing do
    not wait for it segment by segment (that lock-step left a core idle)."""
    size = 0
    stored = [0] * len(writers)
    held = _held(writers)
    last = 0  # bytes of the write in flight, per block
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
            work = None  # its result is ``chunks``, let go below
            if write is not None:
                await _patiently(write, min(stored[0], last + held), stalled)
            if len(chunks) == 1:
                chunks = chunks * len(writers)
            stored = [n + len(c) for n, c in zip(stored, chunks, strict=True)]
            last = len(chunks[0])
            write = asyncio.ensure_future(
                _run_all(w.write(c) for w, c in zip(writers, chunks, strict=True))
            )
            if behind is not None:
                await behind  # bounds memory: MD5 lags at most one segment
            # A client that stalls keeps this upload waiting for the next
            # segment: the segment and its sealed chunks are let go of first
            # (the write and the digest hold them only until they are done).
            del seg, chunks
            seg = await receive
            j += 1
        if write is not None:
            await _patiently(write, min(stored[0], last + held), stalled)
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
    blocks: list[BlockRef],
    writers: list[BlockWriter | None],
    commit_started: list[bool],
    undeleted: list[BlockRef] | None = None,
    confirmed: list[bool] | None = None,
) -> None:
    """Abort every writer and delete every block whose commit started (the
    ones that could not be deleted, each within ``DELETE_SECONDS``, go to
    ``undeleted``, and so do the ones whose commit was not ``confirmed``: a
    commit cut short here may still land in the cloud after the delete,
    found by review). Shielded: it finishes even if the caller is cancelled
    again while it runs; the caller then owes every block whose commit
    started, since what the deletes did comes too late for it."""

    async def one(i: int) -> None:
        writer, ref = writers[i], blocks[i]
        try:
            if writer is not None:
                async with asyncio.timeout(DELETE_SECONDS):
                    await writer.abort()
        except TimeoutError:
            log.warning("abort of block %s of a failed upload not answered in time", ref.key)
        except SpaceError as exc:  # the space's own failure: one line, no traceback
            log.warning("could not abort block %s of a failed upload: %s", ref.key, exc.message)
        except Exception:
            log.warning("could not abort block %s of a failed upload", ref.key, exc_info=True)
        try:
            if commit_started[i]:
                async with asyncio.timeout(DELETE_SECONDS):
                    await ref.space.delete(ref.key)
                if confirmed is None or confirmed[i] or undeleted is None:
                    return
                undeleted.append(ref)  # deleted, but its commit may land later
            return
        except TimeoutError:
            log.warning("delete of block %s of a failed upload not answered in time", ref.key)
        except SpaceError as exc:
            log.warning("could not delete block %s of a failed upload: %s", ref.key, exc.message)
        except Exception:
            log.warning("could not delete block %s of a failed upload", ref.key, exc_info=True)
        if undeleted is not None:  # owed: GC deletes it once its space answers
            undeleted.append(ref)

    task = asyncio.ensure_future(asyncio.gather(*(one(i) for i in range(len(blocks)))))
    _background.add(task)
    task.add_done_callback(_background.discard)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if undeleted is not None and not task.done():
            # A debt for a block the deletes then remove is paid by a
            # delete that finds nothing; a block forgotten stays for ever.
            undeleted[:] = [ref for ref, s in zip(blocks, commit_started, strict=True) if s]
        raise


def stored_block_size(layout: Layout) -> int:
    """Bytes each block of ``layout`` holds (every block has the same size)."""
    if layout.size == 0:
        return 0
    geometry = _Geometry.of(layout)
    return sum(geometry.stored_len(j) for j in range(geometry.count))
