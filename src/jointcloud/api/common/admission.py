"""How many connections one process holds at once, and how many files it
may open.

Why: every connection holds a file descriptor, and anyone may open
connections and send nothing (each is held up to the head limit, 60 s).
When the process runs out of descriptors, its own files fail: block files
cannot be opened, the metadata log cannot be synced. Measured with a
process limited to 80 descriptors and 100 clients: 267 of 300 uploads
failed with "the metadata commit could not be synced to disk (Too many
open files)", commits that went through unacknowledged. So:

- at start, the soft limit of open files is raised to the hard limit (as
  Go's runtime and the JVM do): the soft limit is often 1,024 where the
  hard one is hundreds of thousands;
- a process keeps at most ``max_connections`` connections open over all
  its listeners (``JCS_MAX_CONNECTIONS``; by default a quarter of its
  open-files limit, leaving each connection being served a few descriptors
  for its block files and the rest to the process). One more is answered
  503 in its listener's format at once and closed, so the connections
  being served keep their descriptors. A flood of idle connections then
  costs new clients a 503 until the head limit drops the idle ones, and
  never the uploads in progress.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

# Descriptors budgeted per connection: its socket, block files being
# written or read (several for erasure-coded layouts), a duplicate for a
# large answer written by a worker thread.
DESCRIPTORS_PER_CONNECTION = 4
MIN_CONNECTIONS = 16
# Linux's default ceiling (fs.nr_open) when the hard limit is unlimited.
_NR_OPEN = Path("/proc/sys/fs/nr_open")


def raise_open_files_limit() -> None:
    """Raise this process's soft limit of open files to its hard limit (or
    the kernel's ceiling)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(_NR_OPEN.read_text())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # a container may forbid it
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def open_files_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def default_max_connections() -> int:
    return max(MIN_CONNECTIONS, open_files_limit() // DESCRIPTORS_PER_CONNECTION)


class Admission:
    """The count of a process's open connections, against its limit; and of
    those turned away that linger (their answer written, the client's
    request still arriving: closed at once, the kernel would answer that
    with a reset, and the client would never read the 503)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.lingering = 0

    def admit(self) -> bool:
        """Count one more connection, if the limit allows it."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1

    def may_linger(self) -> bool:
        """Count one more lingering connection, up to a quarter of the
        limit (a flood of new connections is then closed at once)."""
        if self.lingering >= max(1, self.limit // 4):
            return False
        self.lingering += 1
        return True

    def lingered(self) -> None:
        self.lingering -= 1
