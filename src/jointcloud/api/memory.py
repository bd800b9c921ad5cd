"""Freed memory handed back to the operating system after bulk transfers.

Why: a large transfer passes through 1-4 MiB buffers that several threads
allocate and free (socket reads on the loop's thread, file reads and AES in
worker threads). glibc keeps what a thread frees in that thread's arena for
later reuse, so after a burst of large GETs a process kept some 60-90 MB of
freed buffers for good: 190 MB of RSS before eight concurrent 8 MiB ranged
GETs of a 1 GiB object, 270-285 MB after, and an upload that followed
started from there (``bench/s3.py``'s peak RSS; ``docs/benchmarks.md``).
``malloc_trim(0)`` returns every free page of every arena (glibc walks the
whole heap, not only its top, since 2.8).

When: at the end of a burst, not during one. The pages a trim returns are
faulted in (and zeroed) again by the next buffers: trimming every 0.1 s
while large GETs ran made them a third dearer in CPU per byte. So the heap
is trimmed, in a worker thread, when no request has been served for
``SETTLE`` (the last one to end wakes the trimmer) after requests moved
``PAUSE_BYTES`` since the last trim; or, on a server that is never idle,
in an ``INTERVAL`` in which less than ``PAUSE_BYTES`` of bodies moved
(counted as they flow: one long transfer is no pause), once ``TRIM_AFTER``
was moved since the last trim. At most once per ``MIN_GAP``. A
small-object workload seldom pays for it. Where the C library has no
``malloc_trim`` (musl, macOS) nothing is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import time
from collections.abc import Callable

INTERVAL = 0.05  # seconds between looks
SETTLE = 0.02  # seconds without a request being served that make the end of a burst
PAUSE_BYTES = 1024 * 1024  # body bytes per INTERVAL that still make a pause
TRIM_AFTER = 64 * 1024 * 1024  # body bytes since the last trim, for a pause
MIN_GAP = 0.2  # seconds between trims


def malloc_trim() -> Callable[[], object] | None:
    """The C library's ``malloc_trim(0)``, or None where there is none.
    ``find_library`` needs ldconfig or a compiler, which slim images lack:
    glibc's own name is tried after it (as ``redundancy/erasure.py`` does)."""
    fn = None
    for name in (ctypes.util.find_library("c"), "libc.so.6"):
        if name is None:
            continue
        try:
            fn = ctypes.CDLL(name).malloc_trim
            break
        except (OSError, AttributeError):
            continue
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: fn(0)


class TrimPolicy:
    """When to trim, from what the host sees at each look (see the module
    docstring); kept apart from the loop so that it is tested on its own."""

    def __init__(self, moved: int) -> None:
        self._trimmed = self._seen = moved
        self._last: float | None = None

    def due(self, moved: int, active: int, now: float) -> bool:
        """Whether to trim now: ``moved`` is the body bytes moved so far,
        ``active`` the requests being served, ``now`` a monotonic time. True
        also records the trim."""
        since = moved - self._trimmed
        ended = active == 0 and since >= PAUSE_BYTES
        paused = moved - self._seen < PAUSE_BYTES and since >= TRIM_AFTER
        self._seen = moved
        if not (ended or paused):
            return False
        if self._last is not None and now - self._last < MIN_GAP:
            return False
        self._trimmed, self._last = moved, now
        return True


class HeapTrimmer:
    """Trims the heap at the end of each burst of transfers. ``moved()`` is
    the body bytes moved so far, ``active()`` the requests being served;
    ``idle()`` is called when the last request being served ends, so a
    burst's end is seen at once (the next upload may start a few
    milliseconds later)."""

    def __init__(
        self,
        moved: Callable[[], int],
        active: Callable[[], int],
        trim: Callable[[], object] | None = None,
    ) -> None:
        self._moved = moved
        self._active = active
        self._idle = asyncio.Event()
        self._trim = trim if trim is not None else malloc_trim()

    def idle(self) -> None:
        self._idle.set()

    async def run(self) -> None:
        """Until cancelled."""
        trim = self._trim
        if trim is None:
            return
        policy = TrimPolicy(self._moved())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), INTERVAL)
            if self._idle.is_set():
                self._idle.clear()
                await asyncio.sleep(SETTLE)
            if policy.due(self._moved(), self._active(), time.monotonic()):
                await asyncio.to_thread(trim)
