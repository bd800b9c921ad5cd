"""A Local space whose directory is changed under the server by a user with
a shell there: a directory swapped for a symbolic link between the server's
check and its use must not take a write, a delete, a stat, a listing or a
sweep outside the space (found by review, 2026-12-06, seventh session;
docs/security.md)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from jointcloud.errors import SpaceError, SpaceRefused
from jointcloud.spaces.local import LocalSpace

T = TypeVar("T")


def _tree(tmp_path: Path) -> tuple[LocalSpace, Path, Path]:
    """A space holding ``sub/victim``; outside it, ``outside/victim`` (the
    server's file a link would reach)."""
    root, outside = tmp_path / "space", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "victim").write_bytes(b"mine")
    (outside / "victim").write_bytes(b"the server's")
    return LocalSpace(root, durable=False), root, outside


def _swap_in_the_thread(space: LocalSpace, root: Path, outside: Path) -> None:
    """Swap ``sub`` for a link to ``outside`` as the space's worker thread
    starts its call: after anything the event loop checked, before the
    system call the thread makes (the window a shell user races for)."""
    run = space.in_thread

    async def swapped(fn: Callable[[], T]) -> T:
        os.rename(root / "sub", root / "sub.real")
        os.symlink(outside, root / "sub")
        return await run(fn)

    space.in_thread = swapped  # type: ignore[method-assign]


async def _refused_through_a_swap(
    tmp_path: Path, call: Callable[[LocalSpace], Awaitable[object]]
) -> Path:
    """``call`` on a space whose ``sub`` is swapped for a link as the worker
    thread starts: refused, naming ``sub``. The directory outside."""
    space, root, outside = _tree(tmp_path)
    _swap_in_the_thread(space, root, outside)
    with pytest.raises(SpaceRefused, match=r"'sub'.*\(a symbolic link\)"):
        await call(space)
    await space.close()
    return outside


async def test_a_delete_never_unlinks_through_a_swapped_in_link(tmp_path: Path) -> None:
    outside = await _refused_through_a_swap(tmp_path, lambda s: s.delete("sub/victim"))
    assert (outside / "victim").read_bytes() == b"the server's"


async def test_a_stat_never_reports_a_file_through_a_swapped_in_link(tmp_path: Path) -> None:
    await _refused_through_a_swap(tmp_path, lambda s: s.stat("sub/victim"))


async def test_a_path_that_fails_to_resolve_is_a_space_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """realpath racing a swap (lstat saw a link, readlink then EINVAL) raised
    a bare OSError, which ended a deleteSource run's task group."""
    space, _, _ = _tree(tmp_path)

    def racing(path: object) -> str:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os.path, "realpath", racing)
    with pytest.raises(SpaceError):
        space._path("sub/victim")
    await space.close()


async def test_a_listing_never_enters_a_directory_swapped_for_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sub`` is listed as a directory, then swapped for a link before the
    walk reads it: the listing (an import's, a sync's) skips it."""
    space, root, outside = _tree(tmp_path)
    (root / "top.txt").write_bytes(b"top")
    (outside / "secret").write_bytes(b"the server's")
    real = os.scandir
    scanned: list[object] = []

    @contextlib.contextmanager
    def scandir_then_swap(path: Any) -> Iterator[Iterator[os.DirEntry[str]]]:
        with real(path) as it:
            entries = list(it)
        if not scanned:  # the root has been read: now the swap
            os.rename(root / "sub", root / "sub.real")
            os.symlink(outside, root / "sub")
        scanned.append(path)
        yield iter(entries)

    monkeypatch.setattr(os, "scandir", scandir_then_swap)
    keys = [e.key async for e in space.list()]
    assert "sub/secret" not in keys and "sub/victim" not in keys
    assert "top.txt" in keys
    assert not any(e.key.startswith("sub/") for e in space.list_blocking())
    await space.close()


def _nothing_new_outside(outside: Path) -> None:
    """``outside`` holds only what ``_tree`` put there: no file written, no
    temporary file left, no directory made through a link."""
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_bytes() == b"the server's"


@pytest.mark.parametrize("key", ["sub/victim", "sub/new", "sub/made/new"])
async def test_a_put_never_writes_through_a_swapped_in_link(tmp_path: Path, key: str) -> None:
    """An existing file, a new one, and one in a directory still to be made:
    each was written at the path the link pointed to (a checked path, then
    an open, a mkdir and a rename by path)."""
    outside = await _refused_through_a_swap(tmp_path, lambda s: s.put(key, b"the user's"))
    _nothing_new_outside(outside)


@pytest.mark.parametrize("count", [2, 9])  # fsyncs each file, or one syncfs (SYNCFS_AT)
async def test_a_batch_put_never_writes_through_a_swapped_in_link(
    tmp_path: Path, count: int
) -> None:
    items = [(f"sub/k{i}", b"the user's") for i in range(count)]
    outside = await _refused_through_a_swap(tmp_path, lambda s: s.put_many(items))
    _nothing_new_outside(outside)


async def test_a_streamed_write_never_opens_through_a_swapped_in_link(tmp_path: Path) -> None:
    outside = await _refused_through_a_swap(tmp_path, lambda s: s.open_writer("sub/new"))
    _nothing_new_outside(outside)


async def test_a_streamed_write_lands_in_the_directory_it_opened(tmp_path: Path) -> None:
    """The swap comes after the writer opened its directory, before the
    commit's rename: the file lands in that directory (inside the space,
    under its new name), never at the link's target."""
    space, root, outside = _tree(tmp_path)
    writer = await space.open_writer("sub/new")
    await writer.write(b"the user's")
    os.rename(root / "sub", root / "sub.real")
    os.symlink(outside, root / "sub")
    await space.keep_alive("sub/new")
    await writer.commit()
    _nothing_new_outside(outside)
    assert (root / "sub.real" / "new").read_bytes() == b"the user's"
    assert [p.name for p in (root / "sub.real").iterdir() if p.name.startswith(".jcs")] == []
    await space.close()


async def test_a_sweep_never_unlinks_through_a_swapped_in_link(tmp_path: Path) -> None:
    """Old temporary files are swept by name: one at the link's target (a
    server's file of that form) stays."""
    space, root, outside = _tree(tmp_path)
    stale = outside / ".jcs-tmp-0123456789abcdef"
    stale.write_bytes(b"the server's")
    os.utime(stale, (1, 1))
    _swap_in_the_thread(space, root, outside)
    with pytest.raises(SpaceRefused, match=r"'sub'.*\(a symbolic link\)"):
        await space.sweep_incomplete(time.time(), "sub")
    assert stale.exists()
    await space.close()
