"""Glue between the metadata of layouts and the data plane.

``stage`` records the intent (pending layout + planned block keys) before any
byte is written, streams the bytes into the chosen spaces and returns a staged
layout that the caller commits in its own transaction. Anything that fails is
cleaned up here; a crash leaves a pending layout that GC removes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar

import structlog

from jointcloud.core import renewal
from jointcloud.core.background import finish, leave
from jointcloud.core.blockdeletes import BlockDeletes
from jointcloud.core.models import (
    BlockRecord,
    ChecksumAlgorithm,
    LayoutRecord,
    ObjectContent,
    SpaceState,
    StagedLayout,
    UserSpace,
)
from jointcloud.core.placement import block_key, choose_spaces, new_name
from jointcloud.core.renewal import Renewals
from jointcloud.core.userspaces import SpacePool
from jointcloud.errors import (
    BlockNotFound,
    MetadataOutOfReach,
    SpaceError,
    SpaceMoved,
    SpaceUnavailable,
)
from jointcloud.keys.master import MasterKey
from jointcloud.meta import accounts, layouts, spacestate, strays
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.redundancy.cipher import new_data_key
from jointcloud.redundancy.policy import NonePolicy, Redundancy
from jointcloud.redundancy.stream import (
    COPY_READ_AHEAD,
    BlockRef,
    Layout,
    WriteResult,
    decode_whole,
    encode_many,
    encode_whole,
    patience,
    put_blocks,
    read_range,
    write_blocks,
)
from jointcloud.spaces.base import Space
from jointcloud.spaces.unreachable import UnreachableSpace

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Stand-in ids of inline layouts until their commit inserts them (negative:
# never a row's id).
_standins = itertools.count(-1, -1)
# Placements made again when a chosen space moved under them, before the
# upload gives up (an owner moving spaces in a loop).
MOVES_SEEN = 3
# How long a space that failed a write has to answer a stat before it counts
# as unreachable and the upload is placed again without it.
REACH_SECONDS = 5.0
# Inline bytes of one batch sealed on the event loop rather than in the CPU
# pool: for a few KiB the hop costs more than the work.
ON_LOOP_BYTES = 64 * 1024


def _staged(
    layout_id: int, result: WriteResult, plan: Sequence[tuple[int, int, str]] = ()
) -> StagedLayout:
    return StagedLayout(
        layout_id=layout_id,
        size=result.size,
        sha256=result.sha256,
        md5=result.md5,
        segment_size=result.segment_size,
        chunk_len=result.chunk_len,
        checksums={ChecksumAlgorithm(a): v for a, v in result.checksums.items()},
        blocks=tuple(BlockRecord(i, space_id, key) for i, space_id, key in plan),
    )


class _Tracked:
    """The upload source, noting whether any of it was consumed yet."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self.source = source
        self.started = False

    def __aiter__(self) -> _Tracked:
        return self

    async def __anext__(self) -> bytes:
        self.started = True
        return await anext(self.source)


def _log_failed_write(chosen: Sequence[UserSpace], exc: SpaceError) -> None:
    log.warning(
        "block write failed",
        spaces=[s.user_space_id for s in chosen],
        error_type=type(exc).__name__,
        error=exc.message,
    )


class BlockStore:
    def __init__(
        self,
        db: Database,
        master: MasterKey,
        pool: SpacePool,
        *,
        inline_max: int = 0,
        renew_every: float | None = None,
    ) -> None:
        self.db = db
        self.master = master
        self.pool = pool
        # Staged layouts are renewed this often (a quarter of GC's delay)
        # while their request runs, so that GC takes only the layouts of
        # writers that are gone, however long an upload lasts. None: never.
        self.renewals = Renewals(db, renew_every)
        # Objects up to this size are kept inline in the metadata database
        # (docs/durability.md); 0: never.
        self.inline_max = inline_max
        # Called with (layout_id, block index, error) when a read skips a block;
        # the repair queue hooks in here.
        self.on_bad_block: Callable[[int, int, Exception], None] | None = None
        # A read outran a block whose space did not answer in time (a hedged
        # read): called with the space's id, on the read path; never raises.
        self.on_slow_space: Callable[[int], None] | None = None
        self.deletes = BlockDeletes(db, pool, self._slow_space)

    async def stage(
        self,
        user_id: int,
        source: AsyncIterator[bytes],
        policy: Redundancy,
        affinity: int | None = None,
        candidates: Sequence[UserSpace] | None = None,
        checksums: Collection[ChecksumAlgorithm] = (),
    ) -> StagedLayout:
        """Write ``source`` under ``policy``; ``candidates`` are the user's
        spaces when the caller already loaded them (batch uploads);
        ``checksums``: additional checksums computed as the bytes flow.

        A space that fails before any byte of the source was consumed (it
        cannot even open a block) is marked Unavailable and the placement is
        made again without it, so an upload does not wait for the health job
        to notice a cloud that went away."""
        tracked = _Tracked(source)
        return await self._placed(
            user_id,
            policy,
            affinity,
            candidates,
            lambda chosen: self._stage_on(chosen, tracked, policy, checksums),
            retry=lambda: not tracked.started,
        )

    async def _placed(
        self,
        user_id: int,
        policy: Redundancy,
        affinity: int | None,
        candidates: Sequence[UserSpace] | None,
        attempt: Callable[[Sequence[UserSpace]], Awaitable[T]],
        retry: Callable[[], bool] = lambda: True,
    ) -> T:
        """Run ``attempt`` on the spaces placement chooses; a space that
        turns out unreachable (and ``retry()`` still allows it: no byte of a
        stream consumed yet) is marked Unavailable and placement is made
        again without it."""
        if candidates is None:
            candidates = await self.user_spaces(user_id)
        spaces = list(candidates)
        for rec in spaces:
            self.pool.note(rec)
        moves = 0
        while True:
            chosen = choose_spaces(spaces, policy, affinity)
            try:
                return await attempt(chosen)
            except SpaceMoved:
                # Read before an owner moved a space (its intent is refused,
                # nothing written): placed again on the spaces as they are.
                moves += 1
                if moves > MOVES_SEEN:
                    raise
                spaces = await self.user_spaces(user_id)
            except SpaceError as exc:
                # A space that answers but fails writes (a full or failing
                # disk, a cloud refusing) is the operator's to see: the
                # client only gets the 503.
                if not retry():
                    _log_failed_write(chosen, exc)
                    raise
                dead = await self._unreachable(chosen)
                if not dead:
                    _log_failed_write(chosen, exc)
                    raise
                await self._mark_unavailable(dead)
                spaces = [
                    dataclasses.replace(s, state=SpaceState.UNAVAILABLE)
                    if s.user_space_id in dead
                    else s
                    for s in spaces
                ]

    async def _stage_on(
        self,
        chosen: Sequence[UserSpace],
        source: AsyncIterator[bytes],
        policy: Redundancy,
        checksums: Collection[ChecksumAlgorithm],
    ) -> StagedLayout:
        data_key = new_data_key()
        name = new_name()
        plan = [(i, s.user_space_id, block_key(name, i)) for i, s in enumerate(chosen)]
        async with self.db.write() as conn:
            await spacestate.hold_locations(conn, chosen)
            layout_id = await layouts.create_pending(
                conn, policy, self.master.wrap_data_key(data_key), plan
            )
        left: list[BlockRef] = []
        try:
            refs = [
                BlockRef(index=i, space=await self.pool.get(s), key=k, space_id=s.user_space_id)
                for (i, _, k), s in zip(plan, chosen, strict=True)
            ]
            async with self.renewals.held():
                renewal.join([layout_id], [(ref.space, ref.key) for ref in refs])
                result = await write_blocks(
                    source,
                    policy,
                    refs,
                    data_key,
                    checksums=[str(a) for a in checksums],
                    undeleted=left,
                    stalled=lambda: self._give_up_if_unreachable(chosen),
                )
        except BaseException:
            # write_blocks already removed what it wrote (``left``: what it
            # could not); drop the intent rows.
            owed = [(ref.space_id, ref.key) for ref in left]
            await asyncio.shield(self._drop_rows([layout_id], owed=owed))
            raise
        return _staged(layout_id, result, plan)

    async def stage_many(
        self,
        user_id: int,
        datas: Sequence[bytes],
        policy: Redundancy,
        affinity: int | None = None,
        candidates: Sequence[UserSpace] | None = None,
        checksums: Collection[ChecksumAlgorithm] = (),
    ) -> list[StagedLayout]:
        """``stage`` for small objects already in memory, all at once: one
        intent transaction, one encoding hop, one durable batch write per
        space (``put_blocks``). All or nothing: on failure nothing of the
        batch stays but rows GC can find. A space that fails is probed and,
        if it is unreachable, the batch is placed again without it (the
        bytes are still in memory).

        Objects up to ``inline_max`` bytes are not written to any space:
        they are sealed here and their layout is inserted, with the sealed
        block, by the commit (``layouts.activate_many``)."""
        inline = self.inline_max > 0
        small = [i for i, d in enumerate(datas) if inline and len(d) <= self.inline_max]
        staged: list[StagedLayout | None] = [None] * len(datas)
        if small:
            sealed = await self._inline([datas[i] for i in small], checksums)
            for i, st in zip(small, sealed, strict=True):
                staged[i] = st
        rest = [i for i, d in enumerate(datas) if not inline or len(d) > self.inline_max]
        if rest:
            stored = await self._placed(
                user_id,
                policy,
                affinity,
                candidates,
                lambda chosen: self._stage_many_on(
                    chosen, [datas[i] for i in rest], policy, checksums
                ),
            )
            for i, st in zip(rest, stored, strict=True):
                staged[i] = st
        return [st for st in staged if st is not None]

    async def _inline(
        self, datas: Sequence[bytes], checksums: Collection[ChecksumAlgorithm]
    ) -> list[StagedLayout]:
        keys = [new_data_key() for _ in datas]
        names = [str(a) for a in checksums]
        items = list(zip(datas, keys, strict=True))
        if sum(len(d) for d in datas) <= ON_LOOP_BYTES:
            encoded = [encode_whole(d, NonePolicy(), k, checksums=names) for d, k in items]
        else:
            encoded = await encode_many(items, NonePolicy(), names)
        return [
            dataclasses.replace(
                _staged(next(_standins), result),
                inline=blocks[0],
                wrapped_key=self.master.wrap_data_key(key),
            )
            for (result, blocks), key in zip(encoded, keys, strict=True)
        ]

    async def _stage_many_on(
        self,
        chosen: Sequence[UserSpace],
        datas: Sequence[bytes],
        policy: Redundancy,
        checksums: Collection[ChecksumAlgorithm],
    ) -> list[StagedLayout]:
        keys = [new_data_key() for _ in datas]
        # One block directory for the whole batch (the first two characters
        # of the name pick it): a space checks, creates and syncs it once.
        shared = secrets.token_hex(1)
        names = [shared + new_name()[2:] for _ in datas]
        plans = [
            [(i, s.user_space_id, block_key(name, i)) for i, s in enumerate(chosen)]
            for name in names
        ]
        intents = [
            (self.master.wrap_data_key(k), plan) for k, plan in zip(keys, plans, strict=True)
        ]
        async with self.db.write() as conn:
            await spacestate.hold_locations(conn, chosen)
            layout_ids = await layouts.create_pending_many(conn, policy, intents)
        renewal.join(layout_ids)
        writing: asyncio.Future[None] | None = None
        targets: list[tuple[int, str]] = []
        try:
            encoded = await encode_many(
                list(zip(datas, keys, strict=True)), policy, [str(a) for a in checksums]
            )
            opened = [await self.pool.get(s) for s in chosen]
            items: list[tuple[Space, str, bytes]] = []
            for (_, blocks), plan in zip(encoded, plans, strict=True):
                for (i, _, key), block in zip(plan, blocks, strict=True):
                    items.append((opened[i], key, block))
            targets = [(sid, key) for plan in plans for _, sid, key in plan]
            writing = asyncio.ensure_future(put_blocks(items))
            await self._written(writing, chosen, sum(len(data) for _, _, data in items))
        except _Abandoned:
            # Puts on a space that does not answer are left to end in the
            # background (its client library's limits bound them); every
            # block of the batch is owed, none deleted now: a delete could
            # come before a put that lands later. GC deletes them after its
            # delay, when no put of them can still be running.
            assert writing is not None
            leave(writing)
            await finish(self._drop_rows(layout_ids, owed=targets))
            raise
        except BaseException:
            await finish(self._undo_many(writing, targets, layout_ids))
            raise
        return [
            _staged(layout_id, result, plan)
            for layout_id, (result, _), plan in zip(layout_ids, encoded, plans, strict=True)
        ]

    async def _undo_many(
        self,
        writing: asyncio.Future[None] | None,
        targets: Sequence[tuple[int, str]],
        layout_ids: Sequence[int],
    ) -> None:
        """After a failed batch: wait until no put runs, delete every block it
        may have written, then its rows (like ``stage``'s error path); the
        blocks not deleted are owed with them."""
        left: list[tuple[int, str]] = []
        if writing is not None:
            await asyncio.wait([writing])
            if not writing.cancelled():
                writing.exception()  # retrieved: the caller re-raises its own error
            left = await self.delete_keys(targets)
        await self._drop_rows(layout_ids, owed=left)

    async def _written(
        self, writing: asyncio.Future[None], chosen: Sequence[UserSpace], nbytes: int
    ) -> None:
        """Wait for a batch's puts. When they have not ended within their
        patience (``patience``: as a read's), the spaces are checked
        (``_unreachable``, itself bounded) while the puts go on: one that
        does not answer fails the batch at once, marked Unavailable so that
        the batch is placed again without it, instead of waiting for its
        client library's minute. A slow space that answers is waited for."""
        done, _ = await asyncio.wait([writing], timeout=patience(nbytes))
        if not done:
            await self._give_up_if_unreachable(chosen, _Abandoned, unless=writing.done)
        await asyncio.shield(writing)

    async def _give_up_if_unreachable(
        self,
        chosen: Sequence[UserSpace],
        error: type[SpaceUnavailable] = SpaceUnavailable,
        unless: Callable[[], bool] = lambda: False,
    ) -> None:
        """Raise ``error`` when one of ``chosen`` does not answer now (and
        the writes have not ended meanwhile: ``unless``), marking it
        Unavailable. As ``Stalled`` of a streamed upload: its bytes are
        consumed, so it cannot be placed again, but a client told at once
        (503) retries, and the retry is placed without that space, instead
        of everything waiting for the cloud's client library (60 s without a
        byte, and minutes in all)."""
        dead = await self._unreachable(chosen)
        if dead and not unless():
            await self._mark_unavailable(dead)
            names = ", ".join(str(sid) for sid in sorted(dead))
            raise error(f"user space {names} did not answer a write in time")

    async def _unreachable(self, chosen: Sequence[UserSpace]) -> set[int]:
        """Which of ``chosen`` cannot be reached now: marked Unavailable
        meanwhile (the health job), or not answering a stat within
        ``REACH_SECONDS``. A cloud that hangs is unreachable however long
        its client library would wait (found by review: an upload waited a
        further 40 s here, then failed because the cloud came back)."""

        async def alive(rec: UserSpace) -> bool:
            now = self.pool.records.get(rec.user_space_id)
            if now is not None and now.state == SpaceState.UNAVAILABLE:
                return False
            try:
                async with asyncio.timeout(REACH_SECONDS):
                    await (await self.pool.get(rec)).stat(".jcs-probe/alive")
            except BlockNotFound:
                return True
            except (SpaceError, TimeoutError):
                return False
            return True

        answers = await asyncio.gather(*(alive(s) for s in chosen))
        return {s.user_space_id for s, ok in zip(chosen, answers, strict=True) if not ok}

    async def _mark_unavailable(self, space_ids: set[int]) -> None:
        async with self.db.write() as conn:
            for sid in sorted(space_ids):
                if await spacestate.swap_state(
                    conn, sid, (SpaceState.NORMAL,), SpaceState.UNAVAILABLE
                ):
                    log.warning("user space unreachable during an upload", space=sid)
        for sid in space_ids:
            rec = self.pool.records.get(sid)
            if rec is not None and rec.state == SpaceState.NORMAL:
                self.pool.records[sid] = dataclasses.replace(rec, state=SpaceState.UNAVAILABLE)

    async def user_spaces(self, user_id: int) -> list[UserSpace]:
        async with self.db.read() as conn:
            return await accounts.list_spaces(conn, user_id)

    async def _drop_rows(
        self, layout_ids: Sequence[int], owed: Sequence[tuple[int, str]] = ()
    ) -> None:
        """Drop layouts' rows; ``owed``: their blocks not deleted, remembered
        in the same transaction (none is then forgotten nor owed twice)."""
        async with self.db.write() as conn:
            await layouts.delete_layouts(conn, layout_ids)
            await strays.owe(conn, owed, now())

    async def settle(self, committing: asyncio.Future[Any], staged: Sequence[StagedLayout]) -> None:
        """Once the commit of ``staged`` has ended: discard them unless it
        went through. Failed or cancelled, it may still have gone through (a
        cancelled combined commit whose group commit ended; a commit that
        was not synced), and then its objects read these blocks, which
        ``discard`` keeps. With the database out of reach, nothing is tried
        now (it would wait as long again): GC takes them. A database that
        answers but cannot write (its disk full) is tried: the blocks go at
        least, which is what a full disk needs most."""
        await asyncio.wait([committing])
        if not committing.cancelled():
            failure = committing.exception()
            if failure is None:
                return  # committed after all (the caller was cancelled meanwhile)
            if isinstance(failure, MetadataOutOfReach):
                return
        await self.discard(staged)

    async def discard(self, staged: Sequence[StagedLayout]) -> None:
        """Remove blocks and rows of staged layouts that will never be committed
        (inline ones have neither). A layout that a commit did activate
        stays: a caller can be told of a failure — a cancellation while the
        commit went on, a commit that was not synced — although the commit
        went through and made it visible (GC takes it if a crash undoes it)."""
        ids = [s.layout_id for s in staged if s.inline is None]
        if not ids:
            return
        try:
            # A write transaction, so that a commit in flight has ended first.
            async with self.db.write() as conn:
                records = await layouts.load(conn, ids, pending_only=True)
                rows = await layouts.existing(conn, ids)
            # A layout without rows was taken by GC while it was written
            # (GC deleted its blocks before the writer put them in place):
            # what the writer put there is deleted from the staged plan.
            gone = [s for s in staged if s.inline is None and s.layout_id not in rows]
            if gone:
                log.warning("discarding blocks of a layout GC took while it was written")
            left = await self.delete_blocks(records.values())
            left_gone = await self.delete_blocks(gone)
            if records:
                await self._drop_rows(list(records), owed=left)
            await self.owe(left_gone)
        except Exception as exc:
            # Left pending: GC removes them after its delay. The error that
            # made the caller discard is the one it reports, not this one.
            log.warning("discarding staged layouts failed; GC will", error=repr(exc))

    async def delete_blocks(
        self, records: Iterable[LayoutRecord | StagedLayout]
    ) -> list[tuple[int, str]]:
        """``BlockDeletes.delete_blocks``: the blocks not deleted, to owe."""
        return await self.deletes.delete_blocks(records)

    async def delete_keys(self, blocks: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
        """``BlockDeletes.delete_keys``: the blocks not deleted, to owe."""
        return await self.deletes.delete_keys(blocks)

    async def owe(self, blocks: Sequence[tuple[int, str]]) -> None:
        """``BlockDeletes.owe``."""
        await self.deletes.owe(blocks)

    async def delete_owed(self, blocks: Sequence[tuple[int, str]]) -> None:
        """``BlockDeletes.delete_owed``."""
        await self.deletes.delete_owed(blocks)

    async def _refs(self, rec: LayoutRecord) -> list[BlockRef]:
        refs = []
        for b in rec.blocks:
            space: Space
            try:
                space = await self.pool.get_by_id(b.user_space_id)
            except SpaceError as exc:  # the read routes around it like any failing block
                space = UnreachableSpace(exc.message)
            refs.append(BlockRef(index=b.index, space=space, key=b.key, space_id=b.user_space_id))
        refs.sort(key=lambda r: self.pool.preference(r.space_id))
        return refs

    def _slow_space(self, space_id: int) -> None:
        if self.on_slow_space is not None:
            self.on_slow_space(space_id)

    def _slow_reporter(self, refs: Sequence[BlockRef]) -> Callable[[int], None] | None:
        """``on_slow_block`` for a read of ``refs``: the block's space to
        ``on_slow_space``."""
        hook = self.on_slow_space
        if hook is None:
            return None
        spaces = {ref.index: ref.space_id for ref in refs}

        def slow(index: int) -> None:
            hook(spaces[index])

        return slow

    def layout(self, rec: LayoutRecord) -> Layout:
        return Layout(
            policy=rec.policy,
            size=rec.size,
            segment_size=rec.segment_size,
            chunk_len=rec.chunk_len,
            data_key=self.master.unwrap_data_key(rec.wrapped_key),
        )

    async def read(
        self, content: ObjectContent, offset: int, length: int, *, read_ahead: int | None = None
    ) -> AsyncIterator[bytes]:
        """Plaintext of ``[offset, offset+length)`` across the object's parts;
        ``read_ahead``: see ``read_range``."""
        end = offset + length
        for part_offset, rec in content.parts:
            part_end = part_offset + rec.size
            if part_end <= offset or part_offset >= end or rec.size == 0:
                continue
            lo = max(offset, part_offset) - part_offset
            hi = min(end, part_end) - part_offset
            if rec.inline is not None:
                yield decode_whole(rec.inline, self.layout(rec))[lo:hi]
                continue
            refs = await self._refs(rec)

            def report(index: int, err: Exception, layout_id: int = rec.layout_id) -> None:
                log.warning("skipped bad block", layout=layout_id, block=index, error=str(err))
                if self.on_bad_block is not None:
                    self.on_bad_block(layout_id, index, err)

            chunks = read_range(
                self.layout(rec),
                refs,
                lo,
                hi - lo,
                on_bad_block=report,
                on_slow_block=self._slow_reporter(refs),
                read_ahead=read_ahead,
            )
            async for chunk in chunks:
                yield chunk

    async def read_layout(self, rec: LayoutRecord) -> AsyncIterator[bytes]:
        """The whole plaintext of one layout (redundancy change streams a
        layout out through this); bad blocks are reported like on ``read``."""
        if rec.size == 0:
            return
        if rec.inline is not None:
            yield decode_whole(rec.inline, self.layout(rec))
            return
        refs = await self._refs(rec)

        def report(index: int, err: Exception) -> None:
            log.warning("skipped bad block", layout=rec.layout_id, block=index, error=str(err))
            if self.on_bad_block is not None:
                self.on_bad_block(rec.layout_id, index, err)

        # Its reader is a writer (recode stores it again): one read ahead.
        chunks = read_range(
            self.layout(rec),
            refs,
            0,
            rec.size,
            on_bad_block=report,
            on_slow_block=self._slow_reporter(refs),
            read_ahead=COPY_READ_AHEAD,
        )
        async for chunk in chunks:
            yield chunk


class _Abandoned(SpaceUnavailable):
    """A batch's puts left running on a space that does not answer."""
