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
