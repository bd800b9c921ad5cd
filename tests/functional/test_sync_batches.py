"""Small files between local disks are copied in batches inside one worker
thread: a file that fails there is tried again alone and, if it still fails,
recorded; the rest of the batch is copied all the same."""

from __future__ import annotations

import os
from typing import Any

from jcs_helpers import Api

from jointcloud.context import Context
from jointcloud.spaces.local import LocalSpace
from support.trees import write_tree


async def run_task(api: Api, ctx: Context, src: int, dst: int) -> dict[str, Any]:
    body = {
        "srcUserSpaceID": src,
        "srcPath": "in",
        "dests": [{"userSpaceID": dst, "path": "out"}],
        "mode": "full",
    }
    task = (await api.post("/v1/spaceSync/createTask", body))["task"]
    await ctx.tasks.run_due()
    done: dict[str, Any] = (await api.get("/v1/spaceSync/getTask", taskID=task["taskID"]))["task"]
    return done


async def test_a_blocked_file_fails_alone_and_the_batch_is_copied(api: Api, ctx: Context) -> None:
    src, dst = await api.add_spaces(2)
    files = {f"d{i % 4}/f{i:03}.txt": os.urandom(100 + i) for i in range(150)}
    write_tree(api.spaces[src] / "in", files)
    # "out/d1" is a regular file at the destination: nothing can go under it.
    (api.spaces[dst] / "out").mkdir(parents=True)
    (api.spaces[dst] / "out" / "d1").write_bytes(b"in the way")

    done = await run_task(api, ctx, src, dst)

    blocked = sorted(rel for rel in files if rel.startswith("d1/"))
    assert done["state"] == "failed", done
    assert done["progress"]["filesFailed"] == len(blocked)
    assert done["progress"]["filesDone"] == len(files) - len(blocked)
    assert sorted(f["path"] for f in done["failures"]) == blocked
    assert "not a directory" in done["failures"][0]["error"].lower()
    for rel, data in files.items():
        if rel not in blocked:
            assert (api.spaces[dst] / "out" / rel).read_bytes() == data, rel
    assert not list((api.spaces[dst] / "out").rglob(".jcs-tmp-*"))


async def test_a_file_gone_since_listing_is_recorded_not_retried_forever(
    api: Api, ctx: Context, monkeypatch: Any
) -> None:
    src, dst = await api.add_spaces(2)
    files = {f"f{i:02}.txt": os.urandom(50 + i) for i in range(20)}
    write_tree(api.spaces[src] / "in", files)
    real_list = LocalSpace.list_blocking
    gone = api.spaces[src] / "in" / "f07.txt"

    def list_then_delete(self: LocalSpace, prefix: str = "") -> list[Any]:
        entries = real_list(self, prefix)
        if gone.exists() and self.root == api.spaces[src]:
            gone.unlink()  # deleted by someone else right after the listing
        return entries

    monkeypatch.setattr(LocalSpace, "list_blocking", list_then_delete)
    done = await run_task(api, ctx, src, dst)

    assert done["state"] == "failed", done
    assert [f["path"] for f in done["failures"]] == ["f07.txt"]
    assert "not found" in done["failures"][0]["error"]
    assert done["progress"]["filesDone"] == len(files) - 1
    assert not (api.spaces[dst] / "out" / "f07.txt").exists()
