"""Walking a Local user tree (a sync's or import's source, what an export's
or a sync's destination holds) runs in the space's own threads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from jointcloud.core.transfer.trees import Item, SpaceTree
from jointcloud.spaces.base import Entry
from jointcloud.spaces.local import LocalSpace


async def test_trees_on_a_mount_that_hangs_hold_only_their_own_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walks ran in the threads every task shares (six on two cores):
    transfers on a mount that hangs (NFS, FUSE) held them all, and every
    other transfer's walk, and every ``to_thread`` of the process, waited
    for good."""
    nas, disk = tmp_path / "nas", tmp_path / "disk"
    for root in (nas, disk):
        (root / "d").mkdir(parents=True)
        (root / "d" / "f.txt").write_bytes(b"12345")
    released = threading.Event()
    stuck = threading.Semaphore(0)
    walk = LocalSpace.list_blocking

    def list_blocking(self: LocalSpace, prefix: str = "") -> list[Entry]:
        if self.root == nas.resolve():
            stuck.release()
            released.wait()  # the mount hangs
        return walk(self, prefix)

    monkeypatch.setattr(LocalSpace, "list_blocking", list_blocking)
    hung = [LocalSpace(nas) for _ in range(8)]  # eight transfers, each its tree
    fine = LocalSpace(disk)
    waiting = [asyncio.ensure_future(SpaceTree(s, "d").all_items()) for s in hung]
    try:
        async with asyncio.timeout(30):
            for _ in hung:  # every walk of the hung mount has begun
                await asyncio.to_thread(stuck.acquire)
            [item] = await SpaceTree(fine, "d").all_items()
        assert (item.rel, item.size) == ("f.txt", 5)
        assert not any(w.done() for w in waiting)
    finally:
        released.set()
        results: list[list[Item]] = await asyncio.gather(*waiting)
        for space in (*hung, fine):
            await space.close()
    assert [[i.rel for i in r] for r in results] == [["f.txt"]] * 8
