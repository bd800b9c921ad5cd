"""What a local space needs to serve a read on the event loop, safely.

A read on the loop spares two thread hand-offs (docs/decisions.md, "Hot
reads on the loop"), but the loop must never wait for a disk or a network.
So a local space tries it only when three things hold:

- its root is on a local disk file system (``on_local_disk``): one that
  honours ``RWF_NOWAIT``, where an open is a lookup in the kernel's caches
  or a local metadata read. NFS, FUSE mounts, overlay and tmpfs are left
  out: there an open can be a network round trip, or a dead daemon's hang;
- the key was written or read by this process lately (``RecentKeys``): a
  key not touched lately is likely cold, and then even its open would wait
  for the disk (a few milliseconds each on a spinning one);
- the bytes are in the page cache (``read_nowait``): all of them, or none
  are returned.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

# File systems on local block devices that return EAGAIN for RWF_NOWAIT
# reads of uncached pages rather than waiting or refusing the flag.
DISK_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """A mountinfo path field: space, tab, newline and backslash are octal."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def file_system_of(path: Path, mountinfo: str) -> str | None:
    """The type of the file system ``path`` (absolute, resolved) lies on,
    from the text of ``/proc/self/mountinfo``: the mount whose mount point
    is the longest prefix of it (a later mount over the same point wins)."""
    target = str(path)
    best: str | None = None
    kind: str | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split(" ")
        if not sep or len(fields) < 5:
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best)):
            best, kind = point, right.split(" ", 1)[0]
    return kind


def on_local_disk(path: Path) -> bool:
    """Whether reads under ``path`` may be tried on the event loop. False
    where the platform has no ``RWF_NOWAIT`` or no ``/proc``."""
    if not hasattr(os, "RWF_NOWAIT"):
        return False
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text(errors="replace")
    except OSError:
        return False
    return file_system_of(path, mountinfo) in DISK_FILE_SYSTEMS


def read_nowait(fd: int, offset: int, length: int) -> bytearray | None:
    """``length`` bytes of ``fd`` at ``offset`` if the page cache holds all
    of them now; None otherwise and on any error (a FIFO's ``ESPIPE``, a
    directory's ``EOPNOTSUPP``): the caller reads as usual and meets the
    error there."""
    if offset < 0 or length < 0:
        return None
    buf = bytearray(length)
    try:
        got = os.preadv(fd, [buf], offset, os.RWF_NOWAIT)
    except OSError:
        return None
    return buf if got == length else None


RECENT_KEYS = 4096  # per space: 4 GiB of 1 MiB blocks


class RecentKeys:
    """The last ``limit`` keys a space wrote or read, in order of last use;
    safe to use from worker threads and the loop at once."""

    def __init__(self, limit: int = RECENT_KEYS) -> None:
        self._keys: dict[str, None] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)
            self._keys[key] = None
            if len(self._keys) > self._limit:
                del self._keys[next(iter(self._keys))]

    def discard(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)
