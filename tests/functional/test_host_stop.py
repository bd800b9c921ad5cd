"""``jcs serve`` stops even when a job pass will not: found by review, a
health pass stuck where cancelling did not reach kept SIGTERM from stopping
the server for minutes (``asyncio.wait_for`` waits for the cancelled task)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jointcloud.api import host as host_module
from jointcloud.api.host import Host
from jointcloud.config import Settings
from jointcloud.context import Context
from support.ports import free_port


class Stubborn:
    """A job runner whose pass ignores being stopped and being cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.released = asyncio.Event()  # the test's, to end it after all
        self.cancelled = 0

    async def run_forever(self) -> None:
        self.started.set()
        while not self.released.is_set():
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                self.cancelled += 1  # and goes on waiting

    def stop(self) -> None:
        pass


async def test_a_server_stops_when_its_job_runner_will_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_module, "RUNNER_STOP_SECONDS", 0.2)
    settings = Settings(data_dir=tmp_path / "data", listen=f"127.0.0.1:{free_port()}")
    runner = Stubborn()
    ready = asyncio.Event()

    def background(ctx: Context) -> Stubborn:
        return runner

    host = Host(settings, background=background, on_ready=ready.set)  # type: ignore[arg-type]
    serving = asyncio.create_task(host.serve())
    async with asyncio.timeout(60):
        await ready.wait()
        await runner.started.wait()
    host.stop()
    try:
        async with asyncio.timeout(60):
            await serving  # before: waited for the runner for ever
        assert runner.cancelled == 1
    finally:
        runner.released.set()
