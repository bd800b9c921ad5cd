"""Layouts (immutable stored byte runs), their blocks and the reference
bookkeeping that tells GC what may go (object contents and multipart parts)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import BlockRecord, LayoutRecord, StagedLayout
from jointcloud.meta import tables as t
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import dump_policy, load_policy_required, now
from jointcloud.redundancy.policy import NonePolicy, Redundancy
from jointcloud.turns import in_turns


async def create_pending(
    conn: AsyncConnection,
    policy: Redundancy,
    wrapped_key: bytes,
    blocks: Sequence[tuple[int, int, str]],
) -> int:
    """Record an upload's intent before any block is written, so a crash
    mid-write leaves rows GC can find rather than untracked blocks."""
    res = await conn.execute(
        insert(t.layouts).values(
            state="pending",
            policy=dump_policy(policy),
            size=0,
            segment_size=0,
            chunk_len=0,
            wrapped_key=wrapped_key,
            created_at=now(),
        )
    )
    layout_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    await conn.execute(
        insert(t.blocks),
        [{"layout_id": layout_id, "idx": i, "user_space_id": s, "key": k} for i, s, k in blocks],
    )
    return layout_id


IN_CHUNK = 500  # ids per IN (...) list: well under every driver's parameter limit


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# Run on the driver's connection where it can be (driver.DriverQuery.write).
_INSERT_BLOCKS = DriverQuery(insert(t.blocks))
_INSERT_LAYOUTS = DriverQuery(insert(t.layouts).returning(t.layouts.c.id, t.layouts.c.wrapped_key))
_ACTIVATE = DriverQuery(
    update(t.layouts)
    .where(t.layouts.c.id == bindparam("b_id"))
    .values(
        state="live",
        size=bindparam("b_size"),
        segment_size=bindparam("b_segment_size"),
        chunk_len=bindparam("b_chunk_len"),
        released_at=None,
    )
)


async def create_pending_many(
    conn: AsyncConnection,
    policy: Redundancy,
    intents: Sequence[tuple[bytes, Sequence[tuple[int, int, str]]]],
) -> list[int]:
    """``create_pending`` for many layouts of one policy, in bulk statements;
    ``intents`` are (wrapped key, planned blocks). Layout ids in that order."""
    if not intents:
        return []
    ts, dumped = now(), dump_policy(policy)
    # Matched back by wrapped key (unique: a fresh random key, sealed with a
    # random nonce), not by RETURNING order: asking SQLAlchemy for the order
    # makes it insert one row per statement on SQLite.
    rows = await _INSERT_LAYOUTS.write(
        conn,  # the same statement: the state is a parameter
        [
            {
                "state": "pending",
                "policy": dumped,
                "size": 0,
                "segment_size": 0,
                "chunk_len": 0,
                "wrapped_key": wrapped,
                "created_at": ts,
            }
            for wrapped, _ in intents
        ],
    )
    by_key = {bytes(wrapped): int(layout_id) for layout_id, wrapped in rows}
    if len(by_key) != len(intents):
        raise ValueError("create_pending_many needs a distinct wrapped key per layout")
    ids = [by_key[wrapped] for wrapped, _ in intents]
    await _INSERT_BLOCKS.write(
        conn,
        [
            {"layout_id": layout_id, "idx": i, "user_space_id": s, "key": k}
            for layout_id, (_, plan) in zip(ids, intents, strict=True)
            for i, s, k in plan
        ],
    )
    return ids


async def activate_many(conn: AsyncConnection, staged: Sequence[StagedLayout]) -> dict[int, int]:
    """``activate`` for many layouts in one executemany statement; inline
    ones are inserted here, live, with their sealed block (no intent row was
    needed: nothing of them lies outside this database). Returns the real
    id of each inline layout by its stand-in id."""
    inline = [s for s in staged if s.inline is not None]
    stored = [s for s in staged if s.inline is None]
    ids: dict[int, int] = {}
    if inline:
        ts, dumped = now(), dump_policy(NonePolicy())
        # Matched back by wrapped key (unique), as in create_pending_many.
        by_key = {s.wrapped_key: s.layout_id for s in inline}
        rows = await _INSERT_LAYOUTS.write(
            conn,
            [
                {
                    "state": "live",
                    "policy": dumped,
                    "size": s.size,
                    "segment_size": s.segment_size,
                    "chunk_len": s.chunk_len,
                    "wrapped_key": s.wrapped_key,
                    "created_at": ts,
                    "inline_data": s.inline,
                }
                for s in inline
            ],
        )
        ids = {by_key[bytes(wrapped)]: int(layout_id) for layout_id, wrapped in rows}
    if not stored:
        return ids
    await _ACTIVATE.write(
        conn,
        [
            {
                "b_id": s.layout_id,
                "b_size": s.size,
                "b_segment_size": s.segment_size,
                "b_chunk_len": s.chunk_len,
            }
            for s in stored
        ],
    )
    return ids


async def activate(conn: AsyncConnection, staged: StagedLayout) -> None:
    await conn.execute(
        update(t.layouts)
        .where(t.layouts.c.id == staged.layout_id)
        .values(
            state="live",
            size=staged.size,
            segment_size=staged.segment_size,
            chunk_len=staged.chunk_len,
            # Live but unreferenced until an object or upload part points at it.
            released_at=None,
        )
    )


async def delete_layouts(conn: AsyncConnection, layout_ids: Iterable[int]) -> None:
    # The layout's row first: every writer takes a layout's row before its
    # blocks' (GC's ``still_garbage``, ``hold_for_swap``), so two of them
    # never wait for each other on PostgreSQL. (Its blocks go with it by the
    # foreign key's ON DELETE CASCADE; the second statement is for a
    # database without it enforced.)
    ids = list(layout_ids)
    async for part in in_turns(chunks(ids)):
        await conn.execute(delete(t.layouts).where(t.layouts.c.id.in_(part)))
        await conn.execute(delete(t.blocks).where(t.blocks.c.layout_id.in_(part)))


def _referenced(layout_col: Any) -> Any:
    # An object's content, or a part of a multipart upload in flight.
    return or_(
        exists().where(t.object_parts.c.layout_id == layout_col),
        exists().where(t.multipart_parts.c.layout_id == layout_col),
    )


async def release_unreferenced(conn: AsyncConnection, layout_ids: Iterable[int]) -> None:
    """Stamp layouts that nothing references any more; GC removes them later."""
    ids = sorted(set(layout_ids))
    ts = now()
    if ids and conn.dialect.name != "sqlite":
        # Under READ COMMITTED two transactions dropping the last two
        # references to one layout (an object and its copy, deleted at once)
        # each saw the other's reference, deleted but not committed, and
        # neither released it: it stayed live, unreferenced, never collected
        # (found by review). The rows are locked first, in id order; the
        # checks below are statements of their own, whose snapshots see what
        # a transaction that held the lock before committed. (SQLite has
        # one writer at a time.)
        async for part in in_turns(chunks(ids)):
            await conn.execute(_LOCK_FOR_RELEASE, {"ids": part})
    if len(ids) <= FEW_RELEASES:  # on the driver's connection, one statement each
        await _RELEASE_ONE.write(conn, [{"b_id": i, "b_ts": ts} for i in ids])
        return
    async for part in in_turns(chunks(ids)):
        await conn.execute(_RELEASE_UNREFERENCED, {"ids": part, "ts": ts})


FEW_RELEASES = 16
_LOCK_FOR_RELEASE = (
    select(t.layouts.c.id)
    .where(t.layouts.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(t.layouts.c.id)
    .with_for_update()
)
_RELEASE_ONE = DriverQuery(
    update(t.layouts)
    .where(
        t.layouts.c.id == bindparam("b_id"),
        t.layouts.c.state == "live",
        ~_referenced(t.layouts.c.id),
    )
    .values(released_at=bindparam("b_ts"))
)


_RELEASE_UNREFERENCED = (
    update(t.layouts)
    .where(
        t.layouts.c.id.in_(bindparam("ids", expanding=True)),
        t.layouts.c.state == "live",
        ~_referenced(t.layouts.c.id),
    )
    .values(released_at=bindparam("ts"))
)


async def load(
    conn: AsyncConnection, layout_ids: Iterable[int], *, pending_only: bool = False
) -> dict[int, LayoutRecord]:
    """The layouts of ``layout_ids`` with their blocks. ``pending_only``:
    those no commit has activated, locked (on PostgreSQL this waits for a
    transaction that is activating one to end)."""
    ids = sorted(set(layout_ids))
    rows: list[Any] = []
    brows: list[Any] = []
    async for part in in_turns(chunks(ids)):
        q = select(t.layouts).where(t.layouts.c.id.in_(part))
        if pending_only:
            q = q.where(t.layouts.c.state == "pending").with_for_update()
        rows += (await conn.execute(q)).all()
        brows += (
            await conn.execute(
                select(t.blocks).where(t.blocks.c.layout_id.in_(part)).order_by(t.blocks.c.idx)
            )
        ).all()
    by_layout: dict[int, list[BlockRecord]] = {}
    for b in brows:
        by_layout.setdefault(b.layout_id, []).append(
            BlockRecord(index=b.idx, user_space_id=b.user_space_id, key=b.key)
        )
    return {r.id: record(r, tuple(by_layout.get(r.id, []))) for r in rows}


def record(r: Any, blocks: tuple[BlockRecord, ...]) -> LayoutRecord:
    return LayoutRecord(
        layout_id=r.id,
        policy=load_policy_required(r.policy),
        size=r.size,
        segment_size=r.segment_size,
        chunk_len=r.chunk_len,
        wrapped_key=r.wrapped_key,
        blocks=blocks,
        inline=r.inline_data,
    )


def _garbage_at(before: datetime) -> Any:
    return or_(
        and_(t.layouts.c.state == "live", t.layouts.c.released_at < before),
        and_(t.layouts.c.state == "pending", t.layouts.c.created_at < before),
    )


async def garbage(conn: AsyncConnection, before: datetime, limit: int = 500) -> list[int]:
    """Layouts safe to delete: released, or pending (a crashed upload), before
    ``before``, and referenced by nothing (a layout released while a copy
    took a reference to it is not garbage; listing it would keep GC's loop
    finding it, and skipping it, for ever)."""
    q = select(t.layouts.c.id).where(_garbage_at(before), ~_referenced(t.layouts.c.id)).limit(limit)
    return [r.id for r in await conn.execute(q)]


async def renew_pending(conn: AsyncConnection, layout_ids: Sequence[int]) -> int:
    """Move the time of pending layouts whose writer still runs to now, so
    that ``garbage`` never takes an upload that lasts longer than GC's delay
    (a pending layout's ``created_at`` is when its writer last said so)."""
    renewed = 0
    async for part in in_turns(chunks(sorted(layout_ids))):
        res = await conn.execute(
            update(t.layouts)
            .where(t.layouts.c.id.in_(list(part)), t.layouts.c.state == "pending")
            .values(created_at=now())
        )
        renewed += int(res.rowcount)
    return renewed


async def existing(conn: AsyncConnection, layout_ids: Sequence[int]) -> set[int]:
    """Which of ``layout_ids`` still have a row."""
    q = select(t.layouts.c.id).where(t.layouts.c.id.in_(list(layout_ids)))
    return {r.id for r in await conn.execute(q)}


async def heal_released(conn: AsyncConnection) -> int:
    """Layouts stamped released although something references them again
    (a release that raced a copy taking them) are live: repair, scrub and
    fsck look only at layouts not released.

    Two statements: the candidates are locked first, then re-checked by a
    statement of its own. On PostgreSQL a writer dropping a candidate's
    last reference holds its row; one statement would wait for it and then
    judge "referenced" by its own earlier snapshot, and clear a release
    that stands (the layout then leaks: GC takes only released ones)."""
    candidates = (
        select(t.layouts.c.id)
        .where(
            t.layouts.c.state == "live",
            t.layouts.c.released_at.is_not(None),
            _referenced(t.layouts.c.id),
        )
        .order_by(t.layouts.c.id)
        .with_for_update()
    )
    ids = [r.id for r in await conn.execute(candidates)]
    healed = 0
    async for part in in_turns(chunks(ids)):
        res = await conn.execute(
            update(t.layouts)
            .where(
                t.layouts.c.id.in_(list(part)),
                t.layouts.c.released_at.is_not(None),
                _referenced(t.layouts.c.id),
            )
            .values(released_at=None)
        )
        healed += int(res.rowcount)
    return healed


async def still_garbage(
    conn: AsyncConnection, layout_ids: Sequence[int], before: datetime
) -> list[int]:
    """Which of ``layout_ids`` are still garbage, in id order: re-checked
    under the delete transaction (nothing took a reference, and no writer
    renewed its pending layout, since ``garbage`` listed them)."""
    # Locked (PostgreSQL), in id order as every writer locks layouts: a
    # drain or repair swapping one of their blocks (``hold_for_swap``)
    # waits until GC's delete ends, or GC waits for it and judges again.
    # Without the lock GC deleted the block row that a swap had just
    # pointed at a new file, and the file leaked.
    found: list[int] = []
    async for part in in_turns(chunks(sorted(set(layout_ids)))):
        q = (
            select(t.layouts.c.id)
            .where(
                t.layouts.c.id.in_(list(part)), _garbage_at(before), ~_referenced(t.layouts.c.id)
            )
            .order_by(t.layouts.c.id)
            .with_for_update()
        )
        found += [int(r.id) for r in await conn.execute(q)]
    return found


# --- multipart ---------------------------------------------------------------


async def hold_for_swap(conn: AsyncConnection, layout_id: int, intent: int) -> bool:
    """Before ``replace_block`` moves a block of ``layout_id`` to a copy
    recorded by the pending layout ``intent`` (drain, repair): lock both
    rows, in id order, against GC's delete (``still_garbage`` locks them
    too). Returns whether the intent is still there: when GC took it (a
    copy that outlasted GC's delay), it deleted the copy with it, and the
    block must not be pointed at it."""
    q = (
        select(t.layouts.c.id)
        .where(t.layouts.c.id.in_([layout_id, intent]))
        .order_by(t.layouts.c.id)
        .with_for_update()
    )
    return intent in {r.id for r in await conn.execute(q)}


async def replace_block(
    conn: AsyncConnection,
    layout_id: int,
    index: int,
    old: tuple[int, str],
    new: tuple[int, str],
) -> bool:
    """Point block ``index`` of a layout at a new (space, key) — only if it
    still points at ``old`` (compare-and-swap: repair, drain and a concurrent
    process never overwrite each other's work). Returns whether it swapped."""
    res = await conn.execute(
        update(t.blocks)
        .where(
            t.blocks.c.layout_id == layout_id,
            t.blocks.c.idx == index,
            t.blocks.c.user_space_id == old[0],
            t.blocks.c.key == old[1],
        )
        .values(user_space_id=new[0], key=new[1])
    )
    return res.rowcount == 1


async def blocks_in_spaces(
    conn: AsyncConnection, space_ids: Sequence[int], limit: int, after_layout: int = 0
) -> list[tuple[int, BlockRecord]]:
    """(layout id, block) for live layouts with a block in one of the spaces,
    the first ``limit`` past ``after_layout`` in layout order. One query per
    space, each read in order from ``ix_blocks_space_layout`` and stopped at
    ``limit``: with an ``IN`` of spaces (or the index on the space alone,
    before 0023) each page read and sorted every block the spaces held past
    the cursor, and a drain of N blocks read about N²/2/page rows (found by
    review)."""
    rows: list[tuple[int, int, int, str]] = []
    for space_id in sorted(set(space_ids)):
        q = (
            select(t.blocks.c.layout_id, t.blocks.c.idx, t.blocks.c.user_space_id, t.blocks.c.key)
            .join(t.layouts, t.layouts.c.id == t.blocks.c.layout_id)
            .where(
                t.blocks.c.user_space_id == space_id,
                t.layouts.c.state == "live",
                t.blocks.c.layout_id > after_layout,
            )
            .order_by(t.blocks.c.layout_id, t.blocks.c.idx)
            .limit(limit)
        )
        rows += [(r.layout_id, r.idx, r.user_space_id, r.key) for r in await conn.execute(q)]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return [
        (layout_id, BlockRecord(index=idx, user_space_id=space, key=key))
        for layout_id, idx, space, key in rows[:limit]
    ]


async def a_wrapped_key(conn: AsyncConnection) -> bytes | None:
    """One layout's wrapped data key (the lowest id), if any layout exists:
    what tells whether a master key is the one the database was sealed with."""
    row = (
        await conn.execute(select(t.layouts.c.wrapped_key).order_by(t.layouts.c.id).limit(1))
    ).first()
    return None if row is None else bytes(row.wrapped_key)
