"""For tests of reads served on the event loop (spaces/hotreads.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jointcloud.spaces.hotreads import HotRoot


def require_loop_reads(path: Path) -> None:
    """Skip, saying why, where ``path`` is not on a file system whose files
    a local space reads on the loop (tmpfs, overlay, no openat2)."""
    hot = HotRoot.open(path)
    if hot is None:
        pytest.skip(f"{path} is not on a local disk file system with openat2")
    hot.close()
