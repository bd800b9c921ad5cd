"""Helpers of the multipart part of the core service suite (no tests here)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from core_support import World

from jointcloud.context import Context
from jointcloud.core.commands import ObjectAddress, PackageRef
from jointcloud.core.gc import collect_garbage
from jointcloud.core.models import ObjectInfo, Package
from jointcloud.meta import catalog

NOW = timedelta(seconds=-1)  # no safety delay: released blocks go at once
SMALL_PARTS = 1000  # the minimum part size the tests set, to keep parts small


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def data(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


def multipart_etag(*parts: bytes) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


async def package(world: World, name: str, redundancy: object = None) -> Package:
    world.ctx.multipart.min_part_size = SMALL_PARTS
    return await world.ctx.packages.create(world.alice, world.project.bucket_id, name, redundancy)


def at(pkg: Package, path: str) -> ObjectAddress:
    """An address by name, as S3 and the gateway name objects."""
    return ObjectAddress(PackageRef.by_name(pkg.name, pkg.bucket_id), path)


async def add_spaces(world: World, count: int) -> None:
    ctx = world.ctx
    for i in range(count):
        path = ctx.settings.data_dir / "spaces" / f"extra{i}"
        await ctx.spaces.create(world.alice, f"extra{i}", {"type": "Local", "path": str(path)})


async def read_back(ctx: Context, info: ObjectInfo) -> bytes:
    """The object's bytes, read from its blocks."""
    async with ctx.db.read() as conn:
        content = await catalog.open_by_path(conn, info.package_id, info.path)
    assert content is not None and content.info.etag == info.etag
    return b"".join([chunk async for chunk in ctx.store.read(content, 0, info.size)])


async def object_at(ctx: Context, pkg: Package, path: str) -> ObjectInfo | None:
    async with ctx.db.read() as conn:
        return await catalog.get_object_by_path(conn, pkg.package_id, path)


def block_files(ctx: Context) -> list[Path]:
    """Every block file in the Local spaces under the data dir."""
    root = ctx.settings.data_dir / "spaces"
    return sorted(p for p in root.rglob("*") if p.is_file() and "blocks" in p.parts)


async def gc(ctx: Context, expiry: timedelta | None = None) -> None:
    await collect_garbage(ctx.db, ctx.store, NOW, multipart_expiry=expiry)
