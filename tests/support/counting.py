"""Work counted, not timed: the rows a request or job turns into models.

Scale tests (many buckets, tasks, packages) check that a request builds
the rows it answers with, not every row of the store; the count does not
depend on the machine's speed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import pytest

from jointcloud.meta.db import Database


def rows_built(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    builder: str,
    key: Callable[[Any], Any] = lambda row: row.id,
) -> list[Any]:
    """The ``key`` of every row ``module.builder`` turns into a model from
    now on (a list that grows as they are built)."""
    built: list[Any] = []
    build = getattr(module, builder)

    def counted(row: Any) -> Any:
        built.append(key(row))
        return build(row)

    monkeypatch.setattr(module, builder, counted)
    return built


def write_transactions(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per write transaction opened on ``db`` from now on (on
    SQLite, per time the one writer lock is asked for)."""
    opened: list[int] = []
    write = db.write

    @asynccontextmanager
    async def counting() -> AsyncIterator[Any]:
        opened.append(1)
        async with write() as conn:
            yield conn

    monkeypatch.setattr(db, "write", counting)
    return opened
