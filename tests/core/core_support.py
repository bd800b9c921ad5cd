"""Helpers of the core service suite (shared with the protocol adapters' tests)."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.core.models import Bucket
from jointcloud.meta import catalog
from jointcloud.meta import db as db_module


@dataclass
class World:
    """An admin with one project (JCS bucket) and another user with one."""

    ctx: Context
    alice: Principal
    project: Bucket
    bob: Principal
    bob_project: Bucket


class FailingSync:
    """The next sync of the metadata log after ``arm()`` fails, once (EIO):
    a commit's, not the staging's before it nor the clean-up's after."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = False
        real = db_module.fdatasync_path

        def sync(path: str) -> None:
            if self.armed:
                self.armed = False
                raise OSError(errno.EIO, "Input/output error")
            real(path)

        monkeypatch.setattr(db_module, "fdatasync_path", sync)

    def arm(self) -> None:
        self.armed = True


def listed_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows each query of a listing (``catalog.list_listed``) returns,
    in order, from now on."""
    rows: list[int] = []
    fetch = catalog.list_listed

    async def counted(conn: Any, package_id: int, *args: Any) -> Sequence[Any]:
        found = await fetch(conn, package_id, *args)
        rows.append(len(found))
        return found

    monkeypatch.setattr(catalog, "list_listed", counted)
    return rows


T = TypeVar("T")


async def turns_during(work: Awaitable[T]) -> tuple[T, int]:
    """``work``'s result, and how many times another task got to run while
    it ran (``jointcloud.turns``: long work suspends between pieces)."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)  # the ticker is running
    start = ticks
    try:
        result = await work
    finally:
        done = True
        await task
    return result, ticks - start
