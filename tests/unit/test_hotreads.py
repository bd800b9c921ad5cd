"""spaces/hotreads.py: which file system a space is on, and the recent keys."""

from __future__ import annotations

import os
from pathlib import Path

from jointcloud.spaces.hotreads import RecentKeys, file_system_of, read_nowait

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /proc rw,nosuid shared:12 - proc proc rw
41 22 0:35 / /tmp/shm rw shared:20 - tmpfs tmpfs rw,size=1024k
52 22 0:44 / /mnt/nas rw,relatime shared:30 - nfs4 nas:/export rw,vers=4.2
53 52 254:16 / /mnt/nas/local\\040disk rw,relatime shared:31 - xfs /dev/vdb rw
60 22 0:50 / /data rw - overlay overlay rw,lowerdir=/a
61 22 254:32 / /data rw - btrfs /dev/vdc rw
"""


def test_the_longest_mount_point_decides() -> None:
    assert file_system_of(Path("/srv/jcs/spaces"), MOUNTINFO) == "ext4"
    assert file_system_of(Path("/"), MOUNTINFO) == "ext4"
    assert file_system_of(Path("/tmp/shm/x"), MOUNTINFO) == "tmpfs"
    assert file_system_of(Path("/tmp/shmem"), MOUNTINFO) == "ext4"  # not under /tmp/shm
    assert file_system_of(Path("/mnt/nas/blocks"), MOUNTINFO) == "nfs4"
    # octal escapes in mount points (a space here)
    assert file_system_of(Path("/mnt/nas/local disk/blocks"), MOUNTINFO) == "xfs"
    # a later mount over the same point hides the earlier one
    assert file_system_of(Path("/data/spaces"), MOUNTINFO) == "btrfs"
    assert file_system_of(Path("/x"), "garbage\n\n") is None


def test_recent_keys_keep_the_last_ones_used() -> None:
    recent = RecentKeys(limit=3)
    for key in ("a", "b", "c"):
        recent.add(key)
    recent.add("a")  # used again: now the newest
    recent.add("d")  # over the limit: the oldest ("b") goes
    assert [k in recent for k in ("a", "b", "c", "d")] == [True, False, True, True]
    recent.discard("c")
    recent.discard("never there")
    assert len(recent) == 2 and "c" not in recent


def test_read_nowait_returns_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_nowait(fd, 2, 3) in (None, b"234")  # None where the flag is refused
        assert read_nowait(fd, 8, 5) is None  # past the end: short
        assert read_nowait(fd, -1, 3) is None
        assert read_nowait(fd, 0, -1) is None
    finally:
        os.close(fd)
