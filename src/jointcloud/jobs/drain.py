"""Drain as a job (the work itself is ``core.drain``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from jointcloud.core.drain import DRAIN_BATCH, DrainReport
from jointcloud.jobs.base import JobResult, Progress

if TYPE_CHECKING:
    from jointcloud.context import Context

# One pass moving up to so many blocks off Draining spaces: (batch, progress).
DrainBlocks = Callable[[int, Progress], Awaitable[DrainReport]]


class DrainJob:
    name = "drain"

    def __init__(
        self, drain: DrainBlocks | Context, interval: float, batch: int = DRAIN_BATCH
    ) -> None:
        if not callable(drain):  # transitional: a Context, from tests that build jobs by hand
            from jointcloud.jobs.registry import drain_blocks

            drain = drain_blocks(drain)
        self.drain = drain
        self.interval = interval
        self.batch = batch

    async def run_once(self, progress: Progress) -> JobResult:
        report = await self.drain(self.batch, progress)
        return JobResult(
            report.summary(),
            done=report.moved,
            total=report.total,
            # Come back soon only while passes make progress: a block that
            # cannot move now waits for the interval (or an owner's action).
            more=report.moved > 0 and report.remaining > 0,
        )
