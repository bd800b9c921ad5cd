"""A sync task with a daily window: it runs only inside the window, pauses
when the window closes mid-run (progress kept), and resumes at the next
window without copying again what it already copied. The clock of the task
runner is moved by the test instead of waiting for real windows."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jcs_helpers import Api

from jointcloud.context import Context
from jointcloud.core.transfer import runner as taskrunner
from jointcloud.spaces.local import LocalSpace

WINDOW = {"type": "window", "start": "01:00", "end": "02:00", "timezone": "Asia/Shanghai"}
# 01:00-02:00 in Shanghai (UTC+8) is 17:00-18:00 UTC of the day before.
INSIDE = datetime(2026, 11, 21, 17, 30, tzinfo=UTC)
AFTER_END = datetime(2026, 11, 21, 18, 0, 5, tzinfo=UTC)
NEXT_START = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(INSIDE)
    monkeypatch.setattr(taskrunner, "now", c)
    monkeypatch.setattr("jointcloud.core.transfer.service.now", c)
    return c


async def task_json(api: Api, task_id: int) -> dict[str, Any]:
    task: dict[str, Any] = (await api.get("/v1/spaceSync/getTask", taskID=task_id))["task"]
    return task


async def test_window_closes_mid_run_then_resumes_without_recopying(
    api: Api, ctx: Context, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = await api.add_spaces(2)
    files = {f"f{i:02}.bin": os.urandom(1000 + i) for i in range(12)}
    (api.spaces[src] / "in").mkdir(parents=True)
    for name, data in files.items():
        (api.spaces[src] / "in" / name).write_bytes(data)

    # The first three files copy at once; the fourth read hangs until the
    # window has closed, so the run pauses with exactly three copied.
    reads: list[str] = []
    hanging = threading.Event()  # the fourth read has begun
    released = threading.Event()

    def hold(key: str) -> bool:
        reads.append(key)
        if len(reads) <= 3:
            return False
        hanging.set()
        return True

    real_read = LocalSpace.read

    async def held_read(self: LocalSpace, key: str, *args: Any, **kw: Any) -> bytes:
        if hold(key):
            await asyncio.to_thread(released.wait, 30)
        return await real_read(self, key, *args, **kw)

    real_read_blocking = LocalSpace.read_blocking

    def held_read_blocking(self: LocalSpace, key: str) -> bytes:
        if hold(key):  # in the worker thread of a batch of small files
            released.wait(30)
        return real_read_blocking(self, key)

    monkeypatch.setattr(LocalSpace, "read", held_read)
    monkeypatch.setattr(LocalSpace, "read_blocking", held_read_blocking)
    ctx.tasks.parallel = 1
    body = {
        "srcUserSpaceID": src,
        "srcPath": "in",
        "dests": [{"userSpaceID": dst, "path": "out"}],
        "mode": "full",
        "trigger": WINDOW,
    }
    task = (await api.post("/v1/spaceSync/createTask", body))["task"]
    task_id = task["taskID"]

    runner = asyncio.create_task(ctx.tasks.run_due())
    out = api.spaces[dst] / "out"
    try:
        assert await asyncio.to_thread(hanging.wait, 20), "the fourth file was never read"
        clock.at = AFTER_END  # the window closes while files are still to copy
        await asyncio.wait_for(runner, timeout=10)
    finally:
        released.set()  # the held read ends; its run has stopped (nothing more is copied)

    paused = await task_json(api, task_id)
    assert paused["state"] == "pending", paused
    assert datetime.fromisoformat(paused["nextRunTime"]) == NEXT_START
    copied_first = {p.name: p.stat().st_mtime_ns for p in out.glob("f*.bin")}
    assert len(copied_first) == 3
    assert paused["progress"]["filesDone"] == len(copied_first)

    # Outside the window nothing runs.
    assert await ctx.tasks.run_due() == (0, 0)

    # The next window: the same run resumes and copies only the rest.
    clock.at = NEXT_START + timedelta(minutes=1)
    monkeypatch.setattr(LocalSpace, "read", real_read)
    monkeypatch.setattr(LocalSpace, "read_blocking", real_read_blocking)
    reads.clear()
    assert await ctx.tasks.run_due() == (1, 0)
    done = await task_json(api, task_id)
    assert done["state"] == "succeeded", done
    assert done["runs"] == 1  # one run, paused and resumed
    assert done["progress"]["filesDone"] == len(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    for name, mtime in copied_first.items():
        assert (out / name).stat().st_mtime_ns == mtime, f"{name} was copied again"
    # One complete run per window: the next one is tomorrow's window start.
    assert datetime.fromisoformat(done["nextRunTime"]) == NEXT_START + timedelta(days=1)
