"""User-space state across all users: what the health and drain jobs read
and write. State changes are compare-and-swap on the state they expect, so
a health probe never overwrites a drain that an owner asked for meanwhile."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import UserSpace
from jointcloud.errors import SpaceMoved
from jointcloud.meta import tables as t
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import to_space


async def list_all(conn: AsyncConnection, states: Sequence[str] | None = None) -> list[UserSpace]:
    """Every user's spaces (optionally only those in ``states``), by id."""
    q = select(t.user_spaces).order_by(t.user_spaces.c.id)
    if states is not None:
        q = q.where(t.user_spaces.c.state.in_(list(states)))
    return [to_space(r) for r in await conn.execute(q)]


# The key of the transaction-level advisory lock that serialises admissions
# of Local directories on PostgreSQL ("JCSL").
_LOCAL_ADMISSIONS = 0x4A43534C


async def lock_local_admissions(conn: AsyncConnection) -> None:
    """Serialise "check a Local directory against every space, then record
    it": under PostgreSQL's READ COMMITTED two overlapping creates could
    each pass the check before the other committed. The lock is held to the
    end of the transaction. SQLite already runs one writer at a time."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCAL_ADMISSIONS})


# Every upload of blocks runs one in its intent, so each is built once, per
# number of spaces (a policy's block count): building one was a 1 MiB
# upload's largest cost of it (py-spy, 2026-12-07).
_LOCATIONS: dict[int, DriverQuery] = {}


def _locations_of(n: int) -> DriverQuery:
    found = _LOCATIONS.get(n)
    if found is None:
        c = t.user_spaces.c
        found = _LOCATIONS[n] = DriverQuery(
            select(c.id, c.storage, c.root_path)
            .where(c.id.in_([bindparam(f"id{i}") for i in range(n)]))
            .order_by(c.id)
            .with_for_update(read=True, key_share=True)
        )
    return found


async def hold_locations(conn: AsyncConnection, spaces: Sequence[UserSpace]) -> None:
    """In the transaction that records blocks on ``spaces`` (an intent):
    that each is still where the caller's record says (storage and root
    path), held so until the intent commits. A space is moved only while it
    holds no block (``lock_space`` then counting), so once the intent is in,
    the location the writer uses stays right. Raises ``SpaceMoved``
    otherwise: the record was read before a move and the writer must place
    its blocks again, or they land where the space no longer looks.

    On PostgreSQL the rows are locked FOR KEY SHARE, in id order: that
    waits for a move's FOR UPDATE (and a move waits for it), but not for
    the updates of a space's state or latency. SQLite runs one writer at a
    time."""
    if not spaces:
        # Nothing to hold. The prebuilt statement of no ids is an expanding
        # IN that only SQLAlchemy can run: the driver's SQLite got its
        # placeholder text (``near "[POSTCOMPILE_id_1]": syntax error``).
        return
    wanted = {s.user_space_id: s for s in spaces}
    ids = sorted(wanted)
    rows = await _locations_of(len(ids)).rows(conn, {f"id{i}": sid for i, sid in enumerate(ids)})
    now_at = {sid: (json.loads(storage), root) for sid, storage, root in rows}
    moved = sorted(sid for sid, s in wanted.items() if now_at.get(sid) != (s.storage, s.root_path))
    if moved:
        raise SpaceMoved(
            f"user space{'s' if len(moved) > 1 else ''} {', '.join(map(str, moved))} "
            "moved or went away while blocks were being placed on it; try again"
        )


async def lock_space(conn: AsyncConnection, space_id: int, *, moving: bool = True) -> None:
    """Before an update or a delete of a space (and before it counts the
    space's blocks). ``moving`` (a move, a delete): FOR UPDATE, which waits
    for every intent that holds the space's location (``hold_locations``)
    to commit, so the count sees their blocks. Otherwise FOR NO KEY UPDATE,
    which keeps concurrent updates of the row in turn without waiting for
    uploads. PostgreSQL; SQLite runs one writer at a time."""
    await conn.execute(
        select(t.user_spaces.c.id)
        .where(t.user_spaces.c.id == space_id)
        .with_for_update(key_share=not moving)
    )


async def share_space(conn: AsyncConnection, space_id: int) -> None:
    """Before a transfer run opens a space's tree: waits for a delete or a
    move of the space that holds its row (PostgreSQL), which in turn sees
    the run as open once this transaction ends (``lock_space`` then
    ``transfers.open_run_specs``)."""
    await conn.execute(
        select(t.user_spaces.c.id)
        .where(t.user_spaces.c.id == space_id)
        .with_for_update(read=True, key_share=True)
    )


async def record_latency(conn: AsyncConnection, space_id: int, latency_ms: float) -> None:
    await conn.execute(
        update(t.user_spaces).where(t.user_spaces.c.id == space_id).values(latency_ms=latency_ms)
    )


async def swap_state(
    conn: AsyncConnection, space_id: int, expected: Sequence[str], new: str
) -> bool:
    """Set ``new`` only if the state is one of ``expected``; whether it did."""
    res = await conn.execute(
        update(t.user_spaces)
        .where(t.user_spaces.c.id == space_id, t.user_spaces.c.state.in_(list(expected)))
        .values(state=new)
    )
    return res.rowcount == 1


async def count_live_blocks(
    conn: AsyncConnection, space_ids: Sequence[int], up_to: int | None = None
) -> int:
    """Blocks of live layouts held by the spaces (what a drain still has to
    move); with ``up_to``, counted no further than that many."""
    if not space_ids:
        return 0
    held = (
        select(t.blocks.c.id)
        .select_from(t.blocks.join(t.layouts, t.layouts.c.id == t.blocks.c.layout_id))
        .where(t.blocks.c.user_space_id.in_(list(space_ids)), t.layouts.c.state == "live")
    )
    if up_to is not None:
        held = held.limit(up_to)
    q = select(func.count()).select_from(held.subquery())
    return int((await conn.execute(q)).scalar_one())
