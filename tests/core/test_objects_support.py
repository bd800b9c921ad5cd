"""Helpers of the object service tests (no tests here): bodies, packages,
addresses and what is stored (rows and block files), to show that a refused
or failed write leaves nothing behind."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from core_support import World
from sqlalchemy import func, select

from jointcloud.context import Context
from jointcloud.core.commands import ObjectAddress, PackageRef
from jointcloud.core.models import Package
from jointcloud.meta import tables as t


async def body(data: bytes, piece: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


async def package(world: World, name: str = "pkg") -> Package:
    return await world.ctx.packages.create(world.alice, world.project.bucket_id, name)


def at(pkg: Package, path: str, *, by_name: bool = False) -> ObjectAddress:
    ref = (
        PackageRef.by_name(pkg.name, pkg.bucket_id) if by_name else PackageRef.by_id(pkg.package_id)
    )
    return ObjectAddress(ref, path)


async def stored(ctx: Context) -> tuple[int, int, int, int]:
    """(objects, layouts, blocks) rows and block files on disk."""

    async def count(table: object) -> int:
        async with ctx.db.read() as conn:
            q = select(func.count()).select_from(table)  # type: ignore[arg-type]
            return int((await conn.execute(q)).scalar_one())

    files = sum(1 for p in (ctx.settings.data_dir / "spaces").rglob("*") if p.is_file())
    return (await count(t.objects), await count(t.layouts), await count(t.blocks), files)
