"""What ``jcs admin`` prints (names users chose are shown as they are) and
the exit status of a job run once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jointcloud.cli import common
from jointcloud.cli.main import app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.jobs import registry
from jointcloud.jobs.base import JobResult, Progress
from jointcloud.jobs.sync import SyncJob
from jointcloud.meta.jobs import JobState


def _data_dir(tmp_path: Path, *users: str) -> Path:
    data = tmp_path / "data"

    async def prepare() -> None:
        ctx = await Context.open(Settings.load(str(data), None, None))
        try:
            for name in users:
                await ctx.add_user(name)
        finally:
            await ctx.close()

    asyncio.run(prepare())
    return data


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's console took its width when it was made (from the COLUMNS
    of that moment, or 80): wide enough here for whole table cells."""
    monkeypatch.setattr(common.out, "_width", 300)


def _state(message: str) -> JobState:
    when = datetime(2026, 12, 7, tzinfo=UTC)
    return JobState("health", "idle", None, None, 1, 1, message, 1, when, when, None, when, None)


@pytest.mark.parametrize("name", ["q[x]", "q[/x]"])
def test_jobs_shows_a_message_quoting_a_name_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Found by review (2026-12-07): the health job's message names a space
    that changed state, and `jcs admin jobs` read it as rich markup: a space
    named q[x] was shown as q, and a closing tag ([/x]) ended the command in
    a traceback (MarkupError)."""
    data = _data_dir(tmp_path)
    message = f"probed 2 user spaces: 1 ok, 1 failing; {name} (id 2) Normal -> Unavailable"

    class Board:
        async def states(self) -> list[JobState]:
            return [_state(message)]

    class Runner:
        def __init__(self, ctx: Context) -> None:
            self.board = Board()

        async def register(self) -> None:
            pass

    monkeypatch.setattr(registry, "build_runner", Runner)
    result = CliRunner().invoke(app, ["admin", "jobs", "--data-dir", str(data)])
    assert result.exit_code == 0, result.exception
    assert f"; {name} (id 2)" in result.output, result.output


def test_user_names_are_not_markup(tmp_path: Path) -> None:
    data = _data_dir(tmp_path, "bob[ops]")
    result: Any = CliRunner().invoke(
        app, ["admin", "user", "ls", "--data-dir", str(data)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.exception
    assert "bob[ops]" in result.output, result.output


@pytest.mark.parametrize(("failed", "status"), [(0, 0), (2, 1)])
def test_a_pass_that_could_not_do_some_of_its_work_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failed: int, status: int
) -> None:
    """Found by review (2026-12-07): `jcs admin sync` said "1 task run(s), 1
    failed" and `jcs admin repair` "1 cannot repair (retried later)", both
    with exit status 0, so a script running them could not tell."""
    data = _data_dir(tmp_path)

    class Runner:
        def __init__(self, ctx: Context) -> None:
            pass

        async def run_now(self, name: str, report: Any) -> JobResult:
            return JobResult(f"2 task run(s), {failed} failed", done=2, total=2, failed=failed)

    monkeypatch.setattr(registry, "build_runner", Runner)
    result = CliRunner().invoke(app, ["admin", "sync", "--once", "--data-dir", str(data)])
    assert result.exit_code == status, result.output
    assert f"sync: 2 task run(s), {failed} failed" in result.output


async def test_the_sync_job_counts_its_failed_runs() -> None:
    class Due:
        wake = asyncio.Event()

        async def has_due(self) -> bool:
            return True

        async def run_due(self, progress: Progress | None = None) -> tuple[int, int]:
            return 3, 1

    result = await SyncJob(Due(), 60.0).run_once(lambda done, total, message: None)
    assert result.failed == 1 and result.message == "3 task run(s), 1 failed"
