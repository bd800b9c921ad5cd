"""GC in ``jcs serve`` waits the longest GC delay that a live server process
on the same database announced (``core/gcholds``): processes configured with
different delays must not collect what another's readers and writers count
on. An operator's pass takes the delay it is given."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from functools import partial

from jcs_helpers import Api

from jointcloud.core.gc import collect_garbage
from jointcloud.core.gcholds import STALE_AFTER, DelayAnnouncement, longest_delay
from jointcloud.core.leases import new_owner
from jointcloud.meta import holds
from jointcloud.meta.rows import now

NOW = timedelta(seconds=-1)  # this process's own delay: none
ELSEWHERE = "other-host/4026531836:4242:0badcafe"  # a process of another host


async def serving_gc(api: Api) -> int:
    report = await collect_garbage(
        api.ctx.db, api.ctx.store, NOW, longest=partial(longest_delay, api.ctx.db)
    )
    return report.layouts


async def an_old_version(api: Api) -> None:
    """An object overwritten once: its first version's layout is released
    and waits for GC (above the inline size, so it has a block file)."""
    pkg = await api.package("p")
    await api.upload_one(pkg, "a", os.urandom(10_000))
    await api.upload_one(pkg, "a", os.urandom(10_000))
    assert len(api.all_block_files()) == 2


async def test_gc_waits_the_longest_delay_a_live_process_announced(api: Api) -> None:
    await an_old_version(api)
    other = DelayAnnouncement(api.ctx.db, timedelta(hours=1), owner=ELSEWHERE)
    await other.start()
    try:
        assert await longest_delay(api.ctx.db, NOW) == timedelta(hours=1)
        assert await serving_gc(api) == 0
        assert len(api.all_block_files()) == 2  # its readers may still stream it
        # an operator's pass takes the delay it is given
        report = await collect_garbage(api.ctx.db, api.ctx.store, NOW)
        assert report.layouts == 1 and len(api.all_block_files()) == 1
    finally:
        await other.stop()
    async with api.ctx.db.read() as conn:
        assert await holds.announced(conn, now() - STALE_AFTER) == []


async def test_a_withdrawn_announcement_no_longer_holds_gc(api: Api) -> None:
    await an_old_version(api)
    other = DelayAnnouncement(api.ctx.db, timedelta(hours=1), owner=ELSEWHERE)
    await other.start()
    await other.stop()  # that process stopped
    assert await serving_gc(api) == 1
    assert len(api.all_block_files()) == 1


async def test_stale_and_dead_announcements_do_not_hold_gc(api: Api) -> None:
    await an_old_version(api)
    ended = await asyncio.create_subprocess_exec("true")  # a PID of this host that has ended
    await ended.wait()
    here = new_owner().split(":")[0]  # this host and PID namespace
    dead_here = f"{here}:{ended.pid}:00000000"
    async with api.ctx.db.write() as conn:
        # a process of another host not heard of for longer than STALE_AFTER
        await holds.announce(conn, ELSEWHERE, 3600.0, now() - STALE_AFTER - timedelta(seconds=5))
        # and a process of this host whose PID has ended (killed)
        await holds.announce(conn, dead_here, 7200.0, now())
    assert await longest_delay(api.ctx.db, NOW) == NOW
    assert await serving_gc(api) == 1
    async with api.ctx.db.read() as conn:
        left = await holds.announced(conn, now() - timedelta(days=1))
    assert left == [(dead_here, 7200.0)]  # the stale one was forgotten by the pass


async def test_a_delay_of_never_holds_gc_without_stopping_it(api: Api) -> None:
    """Found by review: a process configured never to collect (1e11 s)
    made every other process's GC pass fail on a date out of range."""
    await an_old_version(api)
    async with api.ctx.db.write() as conn:
        await holds.announce(conn, ELSEWHERE, 1e11, now())
    assert await serving_gc(api) == 0
    assert len(api.all_block_files()) == 2
