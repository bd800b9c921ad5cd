"""Reading object bytes back from stored blocks (DESIGN §5).

Only the segments that cover the range are read, and from each block only
the chunks of those segments. For EC the code is systematic, so a range is
served from the data fragments that hold it; only when one of them is
missing, corrupt or slow are other fragments fetched to make up ``k`` and
decode. Reads run ahead of the consumer (``READ_AHEAD``).

A block that is missing or fails is reported once and not used again by
the read. One that fails an integrity check is reported once too, but only
the chunk that failed is ruled out: the block is asked last for the other
segments, since its other chunks are still good (every chunk is
authenticated on its own), and a segment no other block can serve is read
from it. A block whose cloud does not answer is not waited on for as long
as the cloud's client library would (60 s for OpenDAL's): when a read has
waited its patience (``HEDGE_SECONDS``, plus the time its bytes take at
``HEDGE_RATE``, so that a slow but working cloud is not asked twice for a
large read), the next block that can serve it is asked as well, and the
first answer is taken; the read asks the slow block last from then on
(after the slow ones that did answer). Once every block left is slow, the
next ask waits longer (``SLOW_HEDGE_FACTOR``).
That is the hedged read of HDFS (``dfs.client.hedged.read.threshold.millis``)
and of "The Tail at Scale"; a hung block is not reported as bad, since its
bytes are not known to be wrong (the health job decides about its cloud).

Writes are in ``stream``, which re-exports the public names here.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from typing import Literal, TypeGuard, TypeVar

from jointcloud.errors import BlockCorrupt, NotEnoughBlocks, SpaceError
from jointcloud.redundancy.cipher import OVERHEAD, ChunkCipher
from jointcloud.redundancy.erasure import ErasureCodec
from jointcloud.redundancy.segments import (
    REPLICA_SEGMENT,
    BlockRef,
    Layout,
    _Geometry,
)
from jointcloud.redundancy.tasks import Attempts, _cpu, _forget
from jointcloud.spaces.base import BlockingSpace, CachedReads

T = TypeVar("T")
K = TypeVar("K")

# A read not answered within this (plus its bytes at HEDGE_RATE) is asked of
# the next block too. Cloud first bytes come within a few hundred ms; 2 s
# keeps a working cloud from being asked twice, and bounds what a hung one
# costs a read to seconds rather than the client library's minute.
HEDGE_SECONDS = 2.0
HEDGE_RATE = 2_000_000  # bytes/s: a 4 MiB run waits about 4 s before a second ask


# When every block left to ask is one the read already found slow, it waits
# this many patiences before asking one of them too: every cloud slow is a
# throttled link or a busy server, where asking more of them adds load and
# wins little (a review measured EC reads asking all n fragments, 1.2-1.5
# times the bytes, once all were slow); a hung cloud is still outrun.
SLOW_HEDGE_FACTOR = 4


def patience(nbytes: int) -> float:
    """Seconds a read of ``nbytes`` waits before the next block is asked too."""
    return HEDGE_SECONDS + nbytes / HEDGE_RATE


def _hedge_after(wait: float, left: Iterable[int], slow: set[int]) -> float | None:
    """How long to wait before asking one of the blocks ``left`` as well:
    ``wait`` if one of them is not known slow, ``SLOW_HEDGE_FACTOR`` times
    it if all are, and for ever (None) if none is left."""
    indexes = list(left)
    if not indexes:
        return None
    if any(i not in slow for i in indexes):
        return wait
    return wait * SLOW_HEDGE_FACTOR


def read_range(
    layout: Layout,
    blocks: list[BlockRef],
    offset: int,
    length: int | None,
    *,
    on_bad_block: Callable[[int, Exception], None] | None = None,
    on_slow_block: Callable[[int], None] | None = None,
    read_ahead: int | None = None,
) -> AsyncIterator[bytes]:
    """Plaintext of ``[offset, offset+length)`` (clamped to the object),
    with ``read_ahead`` reads (runs or segments; ``READ_AHEAD`` if None)
    fetched and decrypted ahead of the consumer.

    ``blocks`` are in order of preference. A block that is missing, corrupt or fails
    is reported once through ``on_bad_block(index, error)``; one that fails is not
    used again by this read, one whose chunk failed its check is asked last (for
    its other chunks); ``NotEnoughBlocks`` if a segment cannot be served at all. A
    block outrun by a hedged ask is reported once through
    ``on_slow_block(index)`` (its cloud may hang: worth a health probe).
    """
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must not be negative")
    end = layout.size if length is None else min(layout.size, offset + length)
    if read_ahead is not None and read_ahead < 1:
        raise ValueError("read_ahead must be at least 1: with none, nothing would be read")
    depth = READ_AHEAD if read_ahead is None else read_ahead
    return _Reader(layout, blocks, on_bad_block, on_slow_block).iterate(offset, end, depth)


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


class BlockVerifier:
    """Authenticates one block's stored bytes as they stream by, chunk by
    chunk (a raw copy's: drain); ``BlockCorrupt`` from ``feed`` at the
    first chunk that fails its check or bytes past the last one, and from
    ``close`` when the block ended short."""

    def __init__(self, layout: Layout, index: int) -> None:
        self._geometry = _Geometry.of(layout)
        self._cipher = ChunkCipher(layout.data_key)
        self._nonce_index = index if self._geometry.codec else 0
        self._pending = bytearray()
        self._next = 0  # index of the next chunk to check

    async def feed(self, data: bytes | memoryview) -> None:
        self._pending += data
        geometry, ready = self._geometry, []
        pos, j = 0, self._next
        while j < geometry.count and len(self._pending) - pos >= geometry.stored_len(j):
            n = geometry.stored_len(j)
            ready.append((j, bytes(self._pending[pos : pos + n])))
            pos, j = pos + n, j + 1
        del self._pending[:pos]
        self._next = j
        if ready:
            await _cpu(self._open_all, ready)
        if j >= geometry.count and self._pending:
            raise BlockCorrupt(f"block has bytes past its last chunk ({geometry.count})")

    def _open_all(self, chunks: list[tuple[int, bytes]]) -> None:
        for j, chunk in chunks:
            self._cipher.open(self._nonce_index, j, chunk)

    def close(self) -> None:
        if self._next < self._geometry.count:
            raise BlockCorrupt(f"block is truncated at chunk {self._next}")


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


_Opened = tuple[list[bytes], BlockCorrupt | None]


def _opener(
    ref: BlockRef,
    geometry: _Geometry,
    cipher: ChunkCipher,
    run: range,
    nonce_index: int,
    keep: Keep,
) -> tuple[int, int, Callable[[bytes | bytearray], _Opened]]:
    """Where chunks ``run`` of a block lie (offset, length), and how to open
    what is read there: see ``_read_run``."""
    lens = [geometry.stored_len(j) for j in run]

    def open_all(data: bytes | bytearray) -> _Opened:
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

    return run.start * geometry.chunk_len, sum(lens), open_all


def _cached_run(
    ref: BlockRef, geometry: _Geometry, cipher: ChunkCipher, run: range
) -> _Opened | None:
    """A replica's chunks ``run``, read and opened on the loop when its
    space holds them in memory (None: it does not, or not all of them)."""
    space = ref.space
    if not _reads_cached(space):
        return None
    offset, length, open_all = _opener(ref, geometry, cipher, run, 0, "plain")
    if length > CACHED_RUN:
        return None
    cached = space.read_cached(ref.key, offset, length)
    return None if cached is None else open_all(cached)


async def _read_run(
    ref: BlockRef,
    geometry: _Geometry,
    cipher: ChunkCipher,
    run: range,
    nonce_index: int = 0,
    *,
    keep: Keep = "plain",
) -> _Opened:
    """Chunks ``run`` of a block (a replica's: nonce index 0), read together
    and authenticated, up to the first that is missing or fails its check;
    with that failure (None: all of them). Each chunk is authenticated on
    its own, so the ones before a bad one are good. ``keep``: what to
    return of each good chunk: its plaintext (reads), its stored bytes
    (rebuilds copy them) or nothing (scrub only checks). Reads from memory
    are ``_cached_run``'s."""
    offset, length, open_all = _opener(ref, geometry, cipher, run, nonce_index, keep)
    space = ref.space
    if _reads_blocking(space):
        # Read and open in one worker thread: one hop instead of two, each
        # waiting for a turn of the loop and for the GIL (bench/small_objects.py:
        # 1 MiB downloads, docs/benchmarks.md). The space's own thread: a
        # mount that hangs holds only its threads, not the CPU pool.
        def read_and_open() -> _Opened:
            return open_all(space.read_blocking(ref.key, offset, length))

        return await space.in_thread(read_and_open)
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
    """One ranged read: remembers bad blocks so each is tried and reported
    once, and slow ones (outrun by a hedged ask) so each is asked last."""

    def __init__(
        self,
        layout: Layout,
        blocks: list[BlockRef],
        on_bad_block: Callable[[int, Exception], None] | None,
        on_slow_block: Callable[[int], None] | None = None,
    ) -> None:
        self.geometry = _Geometry.of(layout)
        self.cipher = ChunkCipher(layout.data_key)
        self.blocks = blocks
        self.on_bad_block = on_bad_block
        self.on_slow_block = on_slow_block
        self.bad: set[int] = set()  # missing or failing: not asked again
        # Failed an integrity check in some chunk: still asked, last.
        self.damaged: set[int] = set()
        self.slow: set[int] = set()
        self.answered: set[int] = set()
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

    def _rank(self, index: int) -> int:
        """Order in which blocks are asked: the ones not outrun yet first
        (those with a chunk that failed its check after the others), then
        slow ones that did answer (a throttled cloud), then slow ones that
        never did (a hung one)."""
        if index not in self.slow:
            return 1 if index in self.damaged else 0
        return 2 if index in self.answered else 3

    def _mark_slow(self, indexes: Iterable[int]) -> None:
        for index in indexes:
            if index not in self.slow:
                self.slow.add(index)
                if self.on_slow_block is not None:
                    self.on_slow_block(index)

    def _mark_bad(self, ref: BlockRef, exc: SpaceError) -> None:
        """A block that failed: reported once. One whose chunk failed its
        check is ``damaged`` (its other chunks may still serve, found by
        review: a rep(2) object bad in chunk 0 of one replica and chunk 1
        of the other failed its reads although every byte was intact);
        any other failure rules it out for the rest of the read."""
        index = ref.index
        if index in self.bad:
            return
        first = index not in self.damaged
        if isinstance(exc, BlockCorrupt):
            self.damaged.add(index)
        else:
            self.bad.add(index)
        if first and self.on_bad_block is not None:
            self.on_bad_block(index, exc)

    async def _replica_run(
        self, run: range, bounds: Callable[[int], tuple[int, int]]
    ) -> list[bytes]:
        """The plaintext of segments ``run``, each cut to ``bounds(j)``: from
        the first replica that serves them, the rest of the run from the
        next one from the first segment a replica failed on."""
        plains: list[bytes] = []
        todo = run
        failed_at: dict[int, int] = {}  # replica index -> the chunk it failed on
        while True:
            ref, opened, failure = await self._first_replica(todo, failed_at)
            plains += opened
            if failure is None:
                break
            self._mark_bad(ref, failure)
            todo = range(todo.start + len(opened), todo.stop)
            failed_at[ref.index] = todo.start
        out = []
        for j, plain in zip(run, plains, strict=True):
            lo, hi = bounds(j)
            out.append(plain if lo == 0 and hi == len(plain) else plain[lo:hi])
        return out

    async def _first_replica(
        self, todo: range, failed_at: dict[int, int]
    ) -> tuple[BlockRef, list[bytes], BlockCorrupt | None]:
        """The first replica to serve all of chunks ``todo``, or else the
        one that served most of them (its good chunks, and the failure that
        cut them short), hedged: the next replica is asked at once when one
        fails, and as well when the ones asked have not answered within the
        read's patience. ``failed_at``: the chunk each replica failed the
        check of (replicas that failed ``todo.start`` are not asked); the
        failures met here are added. An answer cut short waits for the
        replicas at work for their patience, not for ever, once no other
        is left to ask."""
        skip = {i for i, j in failed_at.items() if j == todo.start}

        def usable(pos: int) -> bool:
            index = self.blocks[pos].index
            return index not in self.bad and index not in skip

        queue = collections.deque(
            sorted(
                (pos for pos in range(len(self.blocks)) if usable(pos)),
                key=lambda pos: self._rank(self.blocks[pos].index),
            )
        )

        def next_ref() -> int | None:
            while queue:
                pos = queue.popleft()
                if usable(pos):
                    return pos
            return None

        first = next_ref()
        if first is None:
            raise _none_left(todo.start)
        ref = self.blocks[first]
        cached = _cached_run(ref, self.geometry, self.cipher, todo)
        if cached is not None:  # in memory: nothing to wait for
            return ref, *cached

        def attempt(pos: int) -> Awaitable[tuple[list[bytes], BlockCorrupt | None]]:
            return _read_run(self.blocks[pos], self.geometry, self.cipher, todo)

        attempts = Attempts(attempt)
        attempts.start(first)
        wait = patience(sum(self.geometry.stored_len(j) for j in todo))
        # An answer cut short by a bad chunk, kept while others are still
        # asked: a slower replica that is working may serve the whole run
        # (found by review: it was cancelled and asked again from the start).
        partial: tuple[BlockRef, list[bytes], BlockCorrupt] | None = None

        def rest_elsewhere() -> bool:
            """Whether a replica not at work could serve the rest after
            ``partial`` (one that failed before its end)."""
            if partial is None:
                return False
            end = todo.start + len(partial[1])
            busy = {self.blocks[pos].index for pos in attempts.in_flight}
            return any(
                b.index not in self.bad and b.index not in busy and failed_at.get(b.index) != end
                for b in self.blocks
            )

        try:
            while True:
                left = (self.blocks[pos].index for pos in queue)
                after = _hedge_after(wait, left, self.slow)
                if after is None and rest_elsewhere():
                    # Nobody left to ask for the whole run, but another
                    # replica may serve the rest: a hung one at work is
                    # not waited on for ever (found by review).
                    after = wait
                ended = await attempts.ended(after)
                if not ended:  # slow: ask the next one too
                    self._mark_slow(self.blocks[pos].index for pos in attempts.in_flight)
                failed = False
                for pos, fut in ended:
                    ref = self.blocks[pos]
                    try:
                        opened, failure = fut.result()
                    except SpaceError as exc:
                        self._mark_bad(ref, exc)
                        failed = True
                        continue
                    self.answered.add(ref.index)
                    if failure is None:
                        return ref, opened, None
                    self._mark_bad(ref, failure)
                    failed_at[ref.index] = todo.start + len(opened)
                    if partial is None or len(opened) > len(partial[1]):
                        partial = ref, opened, failure
                if partial is not None and not attempts.in_flight:
                    return partial  # the next replica is asked for the rest only
                if ended and not failed:
                    continue  # cut short while others still work: wait for them
                # Slow, or one failed: the next one is asked now.
                more = next_ref()
                if more is not None:
                    attempts.start(more)
                elif partial is not None and not ended and rest_elsewhere():
                    return partial  # the ones at work are slow: the rest from the others
                elif not attempts.in_flight:
                    raise _none_left(todo.start)
        finally:
            attempts.cancel()

    async def _ec_segment(self, codec: ErasureCodec, j: int, lo: int, hi: int) -> bytes:
        """Plaintext ``[lo, hi)`` of segment ``j``: from the data fragments
        that hold it, or, when one of them fails or is slow, decoded from
        the first ``k`` fragments to answer (hedged as replica reads are)."""
        seg_len = self.geometry.seg_len(j)
        good: dict[int, bytes] = {}
        asked: set[int] = set()
        attempts: Attempts[int, bytes | None] = Attempts(
            lambda i: self._try(self.by_index[i], i, j)
        )

        # Asked while already known slow (nothing better was left): counted
        # toward k until outwaited here too, else each answer of a read
        # where every cloud is slow asked the other slow ones at once (a
        # flaky bound in test_hedged_reads found it).
        counted_slow: set[int] = set()

        def ask(i: int) -> None:
            asked.add(i)
            if i in self.slow:
                counted_slow.add(i)
            attempts.start(i)

        def spare() -> list[int]:
            left = [i for i in self.ec_order if i not in asked and i not in self.bad]
            return sorted(left, key=self._rank)

        covering = codec.data_fragments(seg_len, lo, hi)
        direct = all(
            i in self.by_index
            and i not in self.bad
            and i not in self.damaged
            and i not in self.slow
            for i in covering
        )
        if direct:
            for i in covering:
                ask(i)
        wait = patience(self.geometry.stored_len(j))
        try:
            while True:
                if all(i in good for i in covering):
                    return await _cpu(codec.extract, good, seg_len, lo, hi)
                if len(good) >= codec.k:
                    return await _cpu(_decode_slice, codec, good, lo, hi)
                if not direct:  # enough asked, not counting slow ones, to make up k
                    fresh = [
                        i for i in attempts.in_flight if i not in self.slow or i in counted_slow
                    ]
                    for i in spare()[: max(0, codec.k - len(good) - len(fresh))]:
                        ask(i)
                if not attempts.in_flight:
                    raise NotEnoughBlocks(
                        f"cannot read segment {j}: found {len(good)} of {codec.k} blocks needed",
                        len(good),
                        codec.k,
                    )
                ended = await attempts.ended(_hedge_after(wait, spare(), self.slow))
                if not ended:  # slow: make up k from the others
                    self._mark_slow(attempts.in_flight)
                    counted_slow.clear()  # outwaited: hedged past now
                    direct = False
                for i, fut in ended:
                    frag = fut.result()
                    if frag is None:  # reported as bad
                        direct = False
                    else:
                        good[i] = frag
                        self.answered.add(i)
        finally:
            attempts.cancel()


def _none_left(j: int) -> NotEnoughBlocks:
    return NotEnoughBlocks(f"cannot read segment {j}: found 0 of 1 blocks needed", 0, 1)


def _decode_slice(codec: ErasureCodec, fragments: dict[int, bytes], lo: int, hi: int) -> bytes:
    plain = codec.decode(fragments)
    return plain if lo == 0 and hi == len(plain) else plain[lo:hi]
