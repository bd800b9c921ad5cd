"""The commit of a thousand-file upload takes turns with the other requests
of its process (``turns``): SQLite's statements run on the event loop's
thread, and the commit of 1,000 objects (their layouts, rows and parts;
over existing paths also the lookups and releases, 500 ids a statement)
ran as one callback. Measured with 4 clients uploading 1,000 × 4 KiB a
request, another user's 4 KiB GETs waited 17 ms at the median and 111 ms
at the 90th percentile (docs/decisions.md, "Listings in pieces"). On
PostgreSQL the statements wait on its socket and take turns anyway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from core_support import World, turns_during
from test_objects_support import package

from jointcloud.core import combiner
from jointcloud.turns import PIECE

FILES = 1000


async def _files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    for i in range(FILES):

        async def one(i: int = i) -> AsyncIterator[bytes]:
            yield f"file {i}".encode()

        yield f"f/{i:04d}", one()


def _counting(real: Callable[..., Awaitable[Any]], turns: list[int]) -> Callable[..., Any]:
    """``real``, recording how many times another task ran during each call."""

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        result, turned = await turns_during(real(*args, **kwargs))
        turns.append(turned)
        return result

    return wrapped


async def test_a_thousand_file_commit_lets_other_tasks_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx
    pkg = await package(world)
    activations: list[int] = []
    commits: list[int] = []
    monkeypatch.setattr(
        combiner.layouts, "activate_many", _counting(combiner.layouts.activate_many, activations)
    )
    monkeypatch.setattr(
        combiner.catalog, "commit_objects", _counting(combiner.catalog.commit_objects, commits)
    )
    for _ in range(2):  # new paths, then the same paths over their objects
        done = await ctx.objects.upload(world.alice, pkg.package_id, _files(), from_client=False)
        assert len(done) == FILES
    pieces = FILES // PIECE
    assert len(activations) == len(commits) == 2
    assert min(activations) >= pieces, activations
    assert commits[0] >= 2 * pieces, commits  # the rows, then their parts
    # Over existing paths also their lookups and the release of the old
    # layouts, 500 ids a statement.
    assert commits[1] >= 3 * pieces, commits
    listing = await ctx.objects.list_by_path(
        world.alice, pkg.package_id, "f/", is_prefix=True, no_recursive=False
    )
    assert [o.path for o in listing.objects] == [f"f/{i:04d}" for i in range(FILES)]
