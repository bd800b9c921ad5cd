"""The extra processes of ``jcs serve --workers N``.

Why processes: one Python process serves its requests on one core (a 4 KiB
download is most of a millisecond of CPU, all of it on the event loop's
thread), and a storage server is expected to use the machine it is given.

How: the process that was started keeps its roles (it runs the jobs) and
starts N-1 more with the ``api`` role only: the same command line, marked
as workers by ``WORKER_OF`` in their environment. Every one of them binds
the listeners' ports with ``SO_REUSEPORT`` (its own socket), and the kernel
spreads new connections over them. They share the database and nothing
else, which is what several ``jcs serve`` processes behind a load balancer
already do (caches are per process, with bounded staleness:
``core/directory.py``, ``core/accounts.py``). On SQLite they write the one
file in turn, each process's group commit under a lock among them
(``meta/writerlock.py``); reads do not wait for it. An in-memory database
is one process's own: there, more than one is refused.

A worker that exits while the first process runs is started again (after
``RESTART_AFTER``, so that one that cannot start does not spin); when the
first process stops it stops its workers (SIGTERM, then SIGKILL after
``STOP_GRACE``), and a worker whose first process died however it died
gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Sequence

import structlog

log = structlog.get_logger(__name__)

WORKER_OF = "JOINTCLOUD_WORKER_OF"  # a worker's environment: the first process's pid
RESTART_AFTER = 1.0
STOP_GRACE = 15.0
PR_SET_PDEATHSIG = 1


def worker_of() -> int | None:
    """The first process's pid if this process is one of its workers."""
    raw = os.environ.get(WORKER_OF, "")
    return int(raw) if raw.isascii() and raw.isdigit() else None


def die_with(parent: int) -> None:
    """Have the kernel send SIGTERM to this process when ``parent`` ends
    (Linux); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:
        raise SystemExit(0)


def worker_command() -> list[str]:
    """This process's own command line, to start its workers with."""
    return [sys.executable, "-m", "jointcloud.cli.main", *sys.argv[1:]]


class Workers:
    """Keeps ``count`` worker processes running until ``stop``."""

    def __init__(self, count: int, command: Sequence[str]) -> None:
        self.count = count
        self.command = list(command)
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._task: asyncio.Future[list[None]] | None = None

    def start(self) -> None:
        """Start them (in the running loop); called once this process serves."""
        self._task = asyncio.gather(*(self._keep(slot) for slot in range(self.count)))

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    async def _keep(self, slot: int) -> None:
        env = {**os.environ, WORKER_OF: str(os.getpid())}
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                *self.command, env=env, stdin=asyncio.subprocess.DEVNULL
            )
            self._procs[slot] = proc
            if self._stopping:  # stop() came while it was being started
                proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            if self._stopping:
                return
            log.warning("worker process ended; starting another", pid=proc.pid, exit_code=code)
            await asyncio.sleep(RESTART_AFTER)

    async def stop(self) -> None:
        """SIGTERM every worker (they finish their requests), SIGKILL those
        still there after ``STOP_GRACE``."""
        self._stopping = True
        running = [p for p in self._procs.values() if p.returncode is None]
        for p in running:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        if running:
            _, late = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in running], timeout=STOP_GRACE
            )
            for p in running:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            if late:
                await asyncio.wait(late)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
