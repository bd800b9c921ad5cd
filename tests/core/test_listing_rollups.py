"""A listing page of common prefixes reads about as many rows as it shows.

Each common prefix ended the batch of rows it was found in, and the next
query asked again for a page's worth of rows: one S3 ListObjects with
``delimiter=/`` over 2,000 keys ``d0000/x``... (1,000 prefixes on the page)
read 501,500 rows in 1,000 queries, about a second of the server's CPU for
one request of anyone who may list (found by review). The rows of the
batch after a common prefix are now used, and the query that passes the
rows under a prefix reads a few.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from core_support import World, listed_rows
from test_objects_support import package

from jointcloud.core.authz import Caveat, PathGrant
from jointcloud.core.commands import ListObjects, PackageRef
from jointcloud.core.listing import MAX_KEYS, ROLLUP_BATCH
from jointcloud.core.models import Package


async def _fill(world: World, pkg: Package, paths: list[str]) -> None:
    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        async def one() -> AsyncIterator[bytes]:
            yield b"x"

        for path in paths:
            yield path, one()

    await world.ctx.objects.upload(world.alice, pkg.package_id, files())


async def test_a_page_of_common_prefixes_reads_a_page_of_rows(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = await package(world, "dirs")
    await _fill(world, pkg, [f"d{i:04d}/x" for i in range(2 * MAX_KEYS)])
    rows = listed_rows(monkeypatch)
    ref = PackageRef.by_id(pkg.package_id)
    page = await world.ctx.objects.list_brief(world.alice, ListObjects(ref, delimiter="/"))
    assert page.common_prefixes == [f"d{i:04d}/" for i in range(MAX_KEYS)]
    assert page.objects == [] and page.next_token is not None
    assert sum(rows) <= 2 * (MAX_KEYS + 1), (len(rows), sum(rows))  # was 501,500
    rows.clear()
    rest = await world.ctx.objects.list_brief(
        world.alice, ListObjects(ref, delimiter="/", continuation=page.next_token)
    )
    assert rest.common_prefixes == [f"d{i:04d}/" for i in range(MAX_KEYS, 2 * MAX_KEYS)]
    assert rest.next_token is None
    assert sum(rows) <= 2 * (MAX_KEYS + 1), (len(rows), sum(rows))


async def test_rows_under_a_common_prefix_are_passed_a_few_at_a_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 prefixes of 100 keys: each prefix cost a query of a page's worth
    of rows (some 40,000); now the first query reads a page and each other
    prefix a small batch. A key limited to some of them reads likewise."""
    pkg = await package(world, "deep")
    await _fill(world, pkg, [f"d{i:02d}/{j:03d}" for i in range(40) for j in range(100)])
    rows = listed_rows(monkeypatch)
    ref = PackageRef.by_id(pkg.package_id)
    page = await world.ctx.objects.list_brief(world.alice, ListObjects(ref, delimiter="/"))
    assert page.common_prefixes == [f"d{i:02d}/" for i in range(40)]
    assert page.next_token is None
    assert sum(rows) <= MAX_KEYS + 1 + 40 * ROLLUP_BATCH, (len(rows), sum(rows))

    rows.clear()
    grants = tuple(PathGrant("deep", f"d{i:02d}/") for i in range(0, 40, 2))
    link = world.alice.restricted(Caveat(paths=grants))
    limited = await world.ctx.objects.list_brief(link, ListObjects(ref, delimiter="/"))
    assert limited.common_prefixes == [f"d{i:02d}/" for i in range(0, 40, 2)]
    assert sum(rows) <= MAX_KEYS + 1 + 20 * ROLLUP_BATCH, (len(rows), sum(rows))
