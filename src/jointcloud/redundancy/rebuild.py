"""Rebuilding lost or corrupt blocks of a layout from the surviving ones (repair).

The new blocks are byte-identical to the ones they replace, so a rebuilt block
needs no metadata besides its new location:

- none/rep: replicas are identical ciphertext, so chunk ``j`` of any source that
  authenticates is copied as stored to every target; chunks are read in runs of
  up to ``READ_RUN`` bytes from the preferred source, and only a chunk it cannot
  give is looked for elsewhere;
- ec: per segment, ``k`` fragments that authenticate are decrypted and only the
  missing fragment indexes are computed (``ErasureCodec.reconstruct``, not a
  decode + re-encode of the whole segment), then sealed with their own fragment
  index as the nonce's block index, exactly as ``write_blocks`` sealed them.

It streams segment by segment (replicas: run by run) with the read-ahead of
``stream.py`` (memory is a few segments whatever the object size) and does the
CPU work in its worker threads. Every target writer commits only after the
last segment; on any failure every writer is aborted and every committed
target deleted before the error is re-raised, so a failed rebuild leaves
nothing behind.

A source may share its index with a target (a corrupt block being replaced):
its chunks that still authenticate are used, the others are skipped. A source
that is missing or unreachable is not asked again; a chunk that fails its check
only rules that source out for that segment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from jointcloud.errors import BlockCorrupt, NotEnoughBlocks, SpaceError
from jointcloud.redundancy.cipher import ChunkCipher
from jointcloud.redundancy.erasure import ErasureCodec
from jointcloud.redundancy.reader import _flattened, _payload, _prefetched, _read_run, _runs
from jointcloud.redundancy.segments import BlockRef, Layout, _Geometry
from jointcloud.redundancy.stream import _commit, _discard, _open
from jointcloud.redundancy.tasks import _cpu, _run_all
from jointcloud.spaces.base import BlockWriter

# Segments read and rebuilt ahead of the one being written (EC); replicas
# are copied in runs of up to ``READ_RUN`` bytes, one run ahead.
REBUILD_AHEAD = 2
RUNS_AHEAD = 1


class _Sources:
    """The surviving blocks of one rebuild, in order of preference."""

    def __init__(self, layout: Layout, geometry: _Geometry, sources: Sequence[BlockRef]) -> None:
        self.geometry = geometry
        self.cipher = ChunkCipher(layout.data_key)
        self.sources = list(sources)
        self.dead: set[int] = set()  # positions in ``sources`` not to ask again

    async def chunk(self, pos: int, nonce_index: int, j: int) -> tuple[bytes, bytes] | None:
        """(stored bytes, plaintext) of chunk ``j`` of source ``pos``, or None if it
        is unusable for this segment."""
        ref = self.sources[pos]
        want = self.geometry.stored_len(j)
        try:
            data = await ref.space.read(ref.key, j * self.geometry.chunk_len, want)
            if len(data) != want:
                raise BlockCorrupt(f"block {ref.key} is truncated at chunk {j}")
            plain = await _cpu(self.cipher.open, nonce_index, j, data)
        except BlockCorrupt:
            return None  # other chunks of this block may still be good
        except SpaceError:
            self.dead.add(pos)
            return None
        return data, plain

    async def run(self, run: range, skip: set[int]) -> tuple[list[bytes], int | None]:
        """Stored chunks of ``run`` from the first source that can be read,
        up to its first chunk that is missing or fails its check (so possibly
        none), and that source's position (None: no source could be read).
        A replica's chunks are read together, as reads do."""
        for pos in self.candidates(skip):
            try:
                stored, _ = await _read_run(
                    self.sources[pos], self.geometry, self.cipher, run, keep="stored"
                )
            except BlockCorrupt:  # as ``chunk`` takes it: this read only
                return [], pos
            except SpaceError:
                self.dead.add(pos)
                continue
            return stored, pos
        return [], None

    def candidates(self, skip: set[int]) -> list[int]:
        return [p for p in range(len(self.sources)) if p not in self.dead and p not in skip]


async def rebuild_blocks(
    layout: Layout, sources: Sequence[BlockRef], targets: Sequence[BlockRef]
) -> None:
    """Write every block of ``targets`` (their indexes are the ones to rebuild,
    their space/key where to put them) from ``sources`` (the other blocks of the
    layout, in order of preference). Raises ``NotEnoughBlocks`` (with found/needed)
    when some segment has fewer intact chunks than the policy needs."""
    if not targets:
        return
    geometry = _Geometry.of(layout)
    codec = geometry.codec
    width = layout.policy.width
    indexes = [t.index for t in targets]
    if len(set(indexes)) != len(indexes) or any(not 0 <= i < width for i in indexes):
        raise ValueError(f"target indexes must be distinct and in 0..{width - 1}")
    if any(not 0 <= s.index < width for s in sources):
        raise ValueError(f"source indexes must be in 0..{width - 1}")
    # Sources that are not being replaced first: they are the likely good ones.
    wanted = set(indexes)
    ordered = sorted(sources, key=lambda s: s.index in wanted)
    src = _Sources(layout, geometry, ordered)

    writers: list[BlockWriter | None] = [None] * len(targets)
    commit_started = [False] * len(targets)
    blocks = list(targets)
    try:
        await _run_all(_open(blocks, writers, i) for i in range(len(blocks)))
        opened = [w for w in writers if w is not None]
        if codec is None:  # replicas: copied in runs of chunks, as reads go
            runs = _runs(0, geometry.count - 1, _payload(geometry))
            copies = len(targets)
            ahead = _flattened(
                _prefetched(lambda run: _replica_run(src, run, copies), runs, RUNS_AHEAD)
            )
        else:
            ec = codec
            ahead = _prefetched(
                lambda j: _ec_segment(src, ec, j, indexes), range(geometry.count), REBUILD_AHEAD
            )
        async with contextlib.aclosing(ahead):
            async for chunks in ahead:
                await _run_all(w.write(c) for w, c in zip(opened, chunks, strict=True))
        await _run_all(_commit(opened, commit_started, i) for i in range(len(opened)))
    except BaseException:
        await _discard(blocks, writers, commit_started)
        raise


async def _replica_run(src: _Sources, run: range, copies: int) -> list[list[bytes]]:
    """Every target's chunk for each segment of ``run``: read in one go
    from the preferred source; a chunk it cannot give is taken, segment by
    segment, from whichever source can, and the run goes on from there."""
    stored: list[bytes] = []
    failed: set[int] = set()  # sources that failed in this run: the rest comes from others
    j = run.start
    while j < run.stop:
        got, pos = await src.run(range(j, run.stop), failed)
        stored += got
        j += len(got)
        if j < run.stop:  # chunk j: not from the source that just failed on it
            tried = set() if pos is None else {pos}
            stored.append((await _replica_segment(src, j, 1, tried))[0])
            j += 1
            if pos is not None:
                failed.add(pos)
    return [[chunk] * copies for chunk in stored]


async def _replica_segment(
    src: _Sources, j: int, copies: int, tried: set[int] | None = None
) -> list[bytes]:
    tried = set() if tried is None else tried
    while True:
        candidates = src.candidates(tried)
        if not candidates:
            raise NotEnoughBlocks(f"cannot rebuild segment {j}: found 0 of 1 blocks needed", 0, 1)
        pos = candidates[0]
        tried.add(pos)
        got = await src.chunk(pos, 0, j)
        if got is not None:
            return [got[0]] * copies


async def _ec_segment(
    src: _Sources, codec: ErasureCodec, j: int, indexes: list[int]
) -> list[bytes]:
    good: dict[int, tuple[bytes, bytes]] = {}  # fragment index -> (stored, plaintext)
    tried: set[int] = set()

    async def fetch(pos: int) -> None:
        tried.add(pos)
        index = src.sources[pos].index
        got = await src.chunk(pos, index, j)
        if got is not None and index not in good:
            good[index] = got

    def usable(pos: int) -> bool:
        return src.sources[pos].index not in good

    while len(good) < codec.k:
        candidates = [p for p in src.candidates(tried) if usable(p)]
        # One source per fragment index per round (the first one, by preference).
        seen: set[int] = set()
        batch = []
        for p in candidates:
            if src.sources[p].index not in seen:
                seen.add(src.sources[p].index)
                batch.append(p)
        if not batch:
            raise NotEnoughBlocks(
                f"cannot rebuild segment {j}: found {len(good)} of {codec.k} blocks needed",
                len(good),
                codec.k,
            )
        await _run_all(fetch(p) for p in batch[: codec.k - len(good)])
    return await _cpu(_rebuild_fragments, src.cipher, codec, j, good, indexes)


def _rebuild_fragments(
    cipher: ChunkCipher,
    codec: ErasureCodec,
    j: int,
    good: dict[int, tuple[bytes, bytes]],
    indexes: list[int],
) -> list[bytes]:
    missing = [i for i in indexes if i not in good]
    rebuilt: dict[int, bytes] = {}
    if missing:
        plain = {i: p for i, (_, p) in good.items()}
        rebuilt = {
            i: cipher.seal(i, j, frag) for i, frag in codec.reconstruct(plain, missing).items()
        }
    return [good[i][0] if i in good else rebuilt[i] for i in indexes]
