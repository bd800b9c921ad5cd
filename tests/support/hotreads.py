"""For tests of reads served on the event loop (spaces/hotreads.py).

Whether a directory qualifies is decided here without the code under
test: from coreutils' ``stat -f`` (the file system's type) and the
machine, so a broken check in the server fails its tests instead of
turning them into skips."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

# ext2/3/4, XFS, Btrfs, F2FS (statfs(2) magic numbers)
DISK_TYPES = {0xEF53, 0x58465342, 0x9123683E, 0xF2F52010}
TMPFS = 0x01021994


def file_system_type(path: Path) -> int:
    out = subprocess.run(
        ["stat", "-f", "-c", "%t", str(path)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip(), 16)


def expects_loop_reads(path: Path) -> bool:
    """Whether a local space rooted at ``path`` should read on the loop."""
    return (
        hasattr(os, "RWF_NOWAIT")
        and platform.machine() in ("x86_64", "aarch64")
        and file_system_type(path) in DISK_TYPES
    )


def require_loop_reads(path: Path) -> None:
    """Skip, saying why, where ``path`` is not on a file system whose files
    a local space reads on the loop (tmpfs, overlay, another machine)."""
    if not expects_loop_reads(path):
        pytest.skip(f"{path} is not on a local disk file system (stat -f)")


def resident_pages(path: Path) -> int:
    """How many of ``path``'s pages the page cache holds now, by mincore(2)
    on a private mapping (reading the file to find out would bring pages
    back: a RWF_NOWAIT read that misses starts readahead)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        anchor = ctypes.c_char.from_buffer(mm)
        try:
            rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)), ctypes.c_size_t(size), vec)
        finally:
            del anchor  # the mapping cannot close while a ctypes object views it
    if rc != 0:
        raise OSError(ctypes.get_errno(), "mincore")
    return sum(b & 1 for b in vec)


def evict(path: Path, attempts: int = 5) -> None:
    """Drop ``path``'s clean pages from the page cache, or skip the test
    saying the kernel kept them. POSIX_FADV_DONTNEED drains only the
    calling CPU's batch of pages on their way to the LRU lists, and pages
    still in another CPU's batch stay cached (the flake CI met): so the
    advice is given once from each CPU this process may run on, and
    mincore(2) says whether it took."""
    cpus = os.sched_getaffinity(0)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are never dropped
        for _ in range(attempts):
            try:
                for cpu in sorted(cpus):
                    os.sched_setaffinity(0, {cpu})
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.sched_setaffinity(0, cpus)
            if resident_pages(path) == 0:
                return
    finally:
        os.close(fd)
    pytest.skip(f"the kernel kept {path.name}'s pages cached after {attempts} evictions")
