"""fsck checks every committed object against its parts (SQLite and
PostgreSQL). A review found a package clone that paired one version's
object row with another version's parts: the downloads answered 200 and
broke off, and fsck, which checked only blocks, saw nothing."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from jcs_helpers import Api, text_data
from sqlalchemy import select, update

from jointcloud.core import fsck as fsck_module
from jointcloud.core.fsck import FsckReport, fsck
from jointcloud.meta import tables as t
from jointcloud.meta.rows import now


async def two_objects(api: Api, size: int = 50_000) -> tuple[int, int]:
    pkg = await api.package("objs")
    a = await api.upload_one(pkg, "a.bin", text_data(size, seed=1))
    b = await api.upload_one(pkg, "b.bin", text_data(size, seed=2))
    return int(a["objectID"]), int(b["objectID"])


async def part_layouts(api: Api, object_id: int) -> list[int]:
    async with api.ctx.db.read() as conn:
        q = (
            select(t.object_parts.c.layout_id)
            .where(t.object_parts.c.object_id == object_id)
            .order_by(t.object_parts.c.seq)
        )
        return [int(r.layout_id) for r in await conn.execute(q)]


async def change(api: Api, stmt: Any) -> None:
    async with api.ctx.db.write() as conn:
        await conn.execute(stmt)


def inconsistent(report: FsckReport) -> list[tuple[str, str]]:
    return [(f.key, f.detail) for f in report.findings if f.kind == "inconsistent"]


async def test_a_clean_store_checks_every_object(api: Api) -> None:
    await two_objects(api)
    for deep in (False, True):
        report = await fsck(api.ctx, deep=deep)
        assert report.clean, report.findings
        assert report.objects_checked == 2


@pytest.mark.parametrize("damage", ["size", "offset", "released"])
async def test_an_object_whose_parts_do_not_make_it_is_inconsistent(api: Api, damage: str) -> None:
    a, _ = await two_objects(api)
    [layout] = await part_layouts(api, a)
    parts = t.object_parts.c
    if damage == "size":
        stmt: Any = update(t.objects).where(t.objects.c.id == a).values(size=49_999)
        why = "its parts hold 50000 bytes, its size is 49999"
    elif damage == "offset":
        stmt = update(t.object_parts).where(parts.object_id == a).values(offset=10)
        why = f"its part of layout {layout} starts at byte 10, not 0"
    else:
        stmt = update(t.layouts).where(t.layouts.c.id == layout).values(released_at=now())
        why = f"its part at byte 0 is layout {layout}, which is not in use"
    await change(api, stmt)
    report = await fsck(api.ctx)
    assert inconsistent(report) == [
        ("a.bin", f"object {a} of package {await pkg_of(api, a)}: {why}")
    ]
    assert not report.clean
    assert "1 inconsistent objects" in report.summary()


async def pkg_of(api: Api, object_id: int) -> int:
    async with api.ctx.db.read() as conn:
        q = select(t.objects.c.package_id).where(t.objects.c.id == object_id)
        return int((await conn.execute(q)).scalar_one())


async def test_deep_reads_an_object_served_from_another_objects_bytes(api: Api) -> None:
    """The clone corruption: sizes agree, so only the bytes can tell."""
    a, b = await two_objects(api)
    [of_b] = await part_layouts(api, b)
    await change(
        api, update(t.object_parts).where(t.object_parts.c.object_id == a).values(layout_id=of_b)
    )
    assert (await fsck(api.ctx)).clean
    report = await fsck(api.ctx, deep=True)
    [(key, detail)] = inconsistent(report)
    assert key == "a.bin"
    assert detail.startswith(f"object {a} of package {await pkg_of(api, a)}: its SHA-256 is ")
    assert ", recorded " in detail


async def test_deep_checks_an_object_completed_from_parts(api: Api) -> None:
    pkg = await api.package("mp")
    r = await api.client.post(
        "/v1/object/newMultipartUpload", json={"packageID": pkg, "path": "mp.bin"}
    )
    assert r.status_code == 200, r.text
    mp = int(r.json()["data"]["object"]["objectID"])
    for index, seed in ((1, 3), (2, 4)):
        part = await api.upload_part(mp, index, text_data(20_000, seed=seed))
        assert part.status_code == 200, part.text
    done = await api.client.post(
        "/v1/object/completeMultipartUpload", json={"objectID": mp, "indexes": [1, 2]}
    )
    assert done.status_code == 200, done.text
    report = await fsck(api.ctx, deep=True)
    assert report.clean and report.objects_checked == 1, report.findings
    first, second = await part_layouts(api, mp)
    # Its two parts in the other order: same size, offsets still right.
    async with api.ctx.db.write() as conn:
        for seq, layout in ((0, second), (1, first)):
            await conn.execute(
                update(t.object_parts)
                .where(t.object_parts.c.object_id == mp, t.object_parts.c.seq == seq)
                .values(layout_id=layout)
            )
    [(key, detail)] = inconsistent(await fsck(api.ctx, deep=True))
    assert key == "mp.bin" and "the SHA-256 of its parts' digests is " in detail


async def test_an_object_overwritten_while_checked_is_not_reported(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page fsck read is older than the object as it is now (an
    overwrite committed in between): checked again, it is consistent."""
    a, _ = await two_objects(api)
    real = fsck_module.repo.object_page
    calls = 0

    async def older_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        page = await real(*args, **kwargs)
        if calls == 1:
            return [
                dataclasses.replace(o, size=o.size + 1) if o.object_id == a else o for o in page
            ]
        return page

    monkeypatch.setattr(fsck_module.repo, "object_page", older_first)
    report = await fsck(api.ctx)
    assert calls >= 2 and report.clean, report.findings
