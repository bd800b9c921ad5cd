"""``jcs admin JOB --until-done`` keeps each pass's line, not its result.

A repair pass's result holds its outcomes; the command kept every pass's
result until the end, so a backlog of 40,000 layouts held 40,000
outcomes for the whole run (found by the review of jobs with a large
backlog, 2026-12-07). Each pass here checks that the one before it is
gone.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jointcloud.cli.main import app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.jobs import registry
from jointcloud.jobs.base import JobResult

PASSES = 4


def test_until_done_keeps_no_pass_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"

    async def prepare() -> None:
        ctx = await Context.open(Settings.load(str(data), None, None))
        await ctx.close()

    asyncio.run(prepare())
    previous: list[weakref.ref[JobResult]] = []
    kept: list[bool] = []

    class Runner:
        def __init__(self, ctx: Context) -> None:
            pass

        async def run_now(self, name: str, report: Any) -> JobResult:
            gc.collect()
            # (the pass just before may still be the loop's variable)
            kept.extend(ref() is not None for ref in previous[:-1])
            n = len(previous) + 1
            result = JobResult(f"pass {n}", failed=int(n == 2), more=n < PASSES)
            previous.append(weakref.ref(result))
            return result

    monkeypatch.setattr(registry, "build_runner", Runner)
    result = CliRunner().invoke(app, ["admin", "repair", "--until-done", "--data-dir", str(data)])
    assert result.exit_code == 1, result.output  # pass 2 failed some of its work
    assert [line for line in result.output.splitlines() if line.startswith("repair:")] == [
        f"repair: pass {n}" for n in range(1, PASSES + 1)
    ]
    assert kept == [False] * 3, kept  # pass 1 seen by passes 3 and 4, pass 2 by pass 4
