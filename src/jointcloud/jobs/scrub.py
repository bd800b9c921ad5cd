"""Scrub as a job: a bounded, rate-limited slice of the sweep per pass, with
the resume point kept in the job's cursor (the work itself is ``core.scrub``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jointcloud.core.jobstate import JobCursor
from jointcloud.core.scrub import MB, BadBlock, Scrubber, ScrubReport
from jointcloud.jobs.base import JobResult, Progress

MAX_LAYOUTS = 1000  # per pass
MAX_SECONDS = 60.0  # per pass
SHOWN = 20  # bad blocks named in the pass message


@dataclass(frozen=True)
class ScrubResult(JobResult):
    bad: tuple[BadBlock, ...] = ()  # found in this pass
    complete: bool = False  # this pass ended a full sweep


@dataclass
class _Sweep:
    """Resume point and totals of the sweep in progress (the job's cursor)."""

    after: int = 0
    layouts: int = 0
    blocks: int = 0
    bad: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> _Sweep:
        if not raw:
            return cls()
        try:
            data: dict[str, Any] = json.loads(raw)
            return cls(
                int(data["after"]), int(data["layouts"]), int(data["blocks"]), int(data["bad"])
            )
        except (ValueError, KeyError, TypeError):
            return cls()  # unreadable: start a new sweep

    def dump(self) -> str:
        return json.dumps(
            {"after": self.after, "layouts": self.layouts, "blocks": self.blocks, "bad": self.bad}
        )


@dataclass(frozen=True)
class ScrubServices:
    scrubber: Callable[[float], Scrubber]  # a scrubber reading at most so many MB/s
    cursor: JobCursor  # this job's resume point (the sweep in progress)


class ScrubJob:
    name = "scrub"

    def __init__(
        self,
        services: ScrubServices,
        interval: float,
        mbps: float,
        *,
        max_layouts: int = MAX_LAYOUTS,
        max_seconds: float = MAX_SECONDS,
    ) -> None:
        self.interval = interval
        self.scrubber = services.scrubber(mbps)
        self.cursor = services.cursor
        self.max_layouts = max_layouts
        self.max_seconds = max_seconds

    async def run_once(self, progress: Progress) -> ScrubResult:
        sweep = _Sweep.parse(await self.cursor.get())
        report = await self.scrubber.scrub(
            sweep.after,
            max_layouts=self.max_layouts,
            max_seconds=self.max_seconds,
            progress=progress,
        )
        sweep.after = report.last_layout
        sweep.layouts += report.layouts
        sweep.blocks += report.blocks
        sweep.bad += len(report.bad)
        await self.cursor.set(None if report.complete else sweep.dump())
        return ScrubResult(
            _message(report, sweep),
            done=report.layouts,
            total=0,
            more=not report.complete,
            bad=tuple(report.bad),
            complete=report.complete,
        )


def _message(report: ScrubReport, sweep: _Sweep) -> str:
    text = (
        f"checked {_n(report.blocks, 'block')} of {_n(report.layouts, 'layout')} "
        f"({report.bytes / MB:.1f} MB): {len(report.bad)} bad "
        f"({report.missing} missing, {report.corrupt} corrupt)"
    )
    if report.unreachable:
        text += f", {report.unreachable} not reachable (skipped)"
    if report.bad:
        # No square brackets: the CLI prints this through rich markup.
        named = "; ".join(str(b) for b in report.bad[:SHOWN])
        if len(report.bad) > SHOWN:
            named += f"; … {len(report.bad) - SHOWN} more"
        text += f": {named}; queued {_n(report.queued, 'layout')} for repair"
    if report.complete:
        text += (
            f"; sweep complete: {_n(sweep.blocks, 'block')} of {_n(sweep.layouts, 'layout')}, "
            f"{sweep.bad} bad"
        )
    else:
        text += f"; sweep continues after layout {sweep.after}"
    return text


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"
