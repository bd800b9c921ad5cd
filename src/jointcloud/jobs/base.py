"""The worker protocol every background job implements.

``run_once`` does one bounded, idempotent pass (running it twice in a row is
safe and the second finds less or nothing to do) and reports progress through
the callback; the runner owns looping, leases, back-off and shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# progress(done, total, message); total 0 = unknown
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class JobResult:
    """What one pass did, in a line a person can read."""

    message: str
    done: int = 0
    total: int = 0
    more: bool = False  # work is left: run again soon rather than after the interval
    # Items this pass tried and could not do (named in the message, retried
    # later): `jcs admin <job>` exits 1 on them, so a script sees it.
    failed: int = 0


class Job(Protocol):
    name: str
    interval: float  # seconds between passes when nothing is left to do

    async def run_once(self, progress: Progress) -> JobResult: ...
