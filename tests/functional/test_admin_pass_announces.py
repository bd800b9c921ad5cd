"""An operator's pass (``jcs admin repair|recode|drain|… --once``) stages
blocks and renews them for its own GC delay, so it announces that delay
while it runs, as a server does (``core/gcholds``); found by review."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jointcloud.cli.main import app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.jobs import registry
from jointcloud.jobs.base import JobResult
from jointcloud.meta import holds
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now


async def announced(db: Database) -> list[float]:
    async with db.read() as conn:
        return [seconds for _, seconds in await holds.announced(conn, now() - timedelta(hours=1))]


def test_an_operator_pass_announces_its_gc_delay_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"

    async def prepare() -> None:
        ctx = await Context.open(Settings.load(str(data), None, None))
        await ctx.close()

    asyncio.run(prepare())
    during: list[list[float]] = []

    class Runner:
        def __init__(self, ctx: Context) -> None:
            self.db = ctx.db

        async def run_now(self, name: str, report: Any) -> JobResult:
            during.append(await announced(self.db))
            return JobResult(f"{name} ran")

    monkeypatch.setattr(registry, "build_runner", Runner)
    result = CliRunner().invoke(
        app,
        ["admin", "repair", "--once", "--data-dir", str(data)],
        env={"JCS_GC_DELAY_SECONDS": "777"},
    )
    assert result.exit_code == 0, result.output
    assert "repair: repair ran" in result.output
    assert during == [[777.0]]

    async def after() -> list[float]:
        db = Database(f"sqlite+aiosqlite:///{data / 'meta.db'}")
        try:
            return await announced(db)
        finally:
            await db.close()

    assert asyncio.run(after()) == []  # withdrawn when the pass ended
