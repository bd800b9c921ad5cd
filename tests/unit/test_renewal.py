"""The process's one renewer of staged layouts: it renews while any lease
is held, ends as soon as none is (not a period later), and goes on when a
lease is taken again just as the last one ended. The database is a stub
that records what was renewed; ``layouts.renew_pending`` is replaced."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from jointcloud.core import renewal
from jointcloud.core.renewal import Renewals
from jointcloud.meta import layouts


class Db:
    def __init__(self) -> None:
        self.renewed: list[list[int]] = []
        self.ticked = asyncio.Event()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[Db]:
        yield self


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> Db:
    stub = Db()

    async def renew_pending(conn: Db, ids: Sequence[int]) -> int:
        conn.renewed.append(list(ids))
        conn.ticked.set()
        return len(ids)

    monkeypatch.setattr(layouts, "renew_pending", renew_pending)
    return stub


async def test_renews_what_each_request_staged_while_it_runs(db: Db) -> None:
    r = Renewals(db, 0.01)  # type: ignore[arg-type]
    async with r.held():
        renewal.join([3, 1])
        async with r.held():  # nested: the outer lease takes it
            renewal.join([2])
        await db.ticked.wait()
        assert db.renewed[-1] == [1, 2, 3]
    renewer = r._renewer
    assert renewer is not None
    await asyncio.wait_for(renewer, 5)  # ended on release, not a period later


async def steps(n: int = 10) -> None:
    """Let the loop run every task that is ready, ``n`` times over."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_lease_taken_as_the_last_ends_keeps_the_renewer_going(db: Db) -> None:
    r = Renewals(db, 3600)  # type: ignore[arg-type]
    async with r.held():
        await steps()  # the renewer waits for its period, or for no lease held
    # Released: the renewer is woken to end; a lease taken before it ran
    # must keep it going.
    async with r.held():
        renewer = r._renewer
        await steps()
        assert renewer is not None and not renewer.done()
    await asyncio.wait_for(renewer, 5)


async def test_outside_a_lease_nothing_is_kept(db: Db) -> None:
    renewal.join([5])  # no lease held: nothing to join
    r = Renewals(db, None)  # type: ignore[arg-type]
    async with r.held():  # renewal off (GC without a delay)
        renewal.join([6])
    assert r._renewer is None and db.renewed == []


class FailingSpace:
    async def keep_alive(self, key: str) -> None:
        raise OSError(5, "Input/output error")


async def test_a_space_failing_its_keep_alive_costs_no_other_upload_its_renewal(db: Db) -> None:
    """Found by review: one failing ``keep_alive`` skipped the renewal of
    every lease held."""
    r = Renewals(db, 0.01)  # type: ignore[arg-type]
    go = asyncio.Event()

    async def upload(layout: int, writes: list[Any]) -> None:
        async with r.held():  # each task its own lease
            renewal.join([layout], writes)
            await go.wait()

    tasks = [
        asyncio.ensure_future(upload(7, [])),
        asyncio.ensure_future(upload(8, [(FailingSpace(), "blk")])),
    ]
    await asyncio.wait_for(db.ticked.wait(), 10)
    assert db.renewed[-1] == [7, 8]
    go.set()
    await asyncio.gather(*tasks)


def test_one_renewals_serves_one_event_loop_after_another(db: Db) -> None:
    """Found by review: its event belonged to the first loop, and in the
    second nothing was renewed again."""
    r = Renewals(db, 0.01)  # type: ignore[arg-type]

    async def one(layout: int) -> None:
        db.ticked = asyncio.Event()
        async with r.held():
            renewal.join([layout])
            await asyncio.wait_for(db.ticked.wait(), 10)

    asyncio.run(one(1))
    asyncio.run(one(2))
    assert db.renewed[-1] == [2]
