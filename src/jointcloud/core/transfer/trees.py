"""The two ends of a transfer: a directory tree in a user space, or a package.

A ``Source`` lists files and streams them; a ``Sink`` receives streams and can
say what it already holds. Sync copies ``SpaceTree → SpaceTree``, import
``SpaceTree → PackageSink``, export ``PackageSource → SpaceTree``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from jointcloud.core.authz import Principal
from jointcloud.core.models import ObjectInfo, UserSpace
from jointcloud.core.objects import ObjectService
from jointcloud.core.paths import object_path
from jointcloud.core.transfer.spec import inside, join
from jointcloud.errors import BadArgument, BlockNotFound
from jointcloud.spaces.base import BlockingSpace, Space

CHUNK = 4 << 20
T = TypeVar("T")

SMALL = 4 << 20  # files up to this size move in one read and one write


@dataclass(frozen=True)
class Item:
    """One file: its path relative to the transfer's root, size and mtime (epoch s)."""

    rel: str
    size: int
    mtime: float


class Source(Protocol):
    def items(self) -> AsyncIterator[Item]: ...

    def open(self, item: Item) -> AsyncIterator[bytes]: ...

    async def read_small(self, item: Item) -> bytes:
        """The whole file in one call (files up to ``SMALL``: fewer round trips)."""

    async def stat(self, rel: str) -> Item | None: ...

    async def delete(self, rel: str) -> None: ...

    async def digest(self, rel: str) -> str: ...


class Sink(Protocol):
    async def holdings(self) -> dict[str, Item]:
        """What the destination holds now, by relative path."""

    async def write(self, item: Item, stream: AsyncIterator[bytes]) -> int:
        """Store the stream under ``item.rel`` atomically; the bytes written."""

    async def put_small(self, item: Item, data: bytes) -> None:
        """Store a small file in one call, atomically."""

    async def flush(self) -> None:
        """Make everything written so far durable."""

    async def sweep(self, older_than: float) -> int:
        """Remove temporary files of writes a dead process left here."""

    async def digest(self, rel: str) -> str:
        """SHA-256 (hex) of what the destination holds at ``rel``."""


def reserved(space: UserSpace) -> tuple[str, ...]:
    """Where the space keeps JointCloud's own blocks, relative to its storage root."""
    return (space.root_path,) if space.root_path else ("blocks", ".jcs-probe")


async def sha256_of(stream: AsyncIterator[bytes]) -> str:
    h = hashlib.sha256()
    async for chunk in stream:
        h.update(chunk)
    return h.hexdigest()


def file_items(objs: Sequence[ObjectInfo]) -> list[Item]:
    """A package's objects as the files of a tree. A folder marker (an S3
    key ending in '/', what consoles and rclone make) is a directory where
    files land, not a file: it is left out."""
    return [
        Item(o.path, o.size, o.update_time.timestamp()) for o in objs if not o.path.endswith("/")
    ]


async def object_digest(objects: ObjectService, user_id: int, package_id: int, rel: str) -> str:
    content = await objects.open(Principal.user(user_id), package_id=package_id, path=rel)
    return await sha256_of(objects.read(content).body)


class SpaceTree:
    """The files under ``base`` of a space opened at its storage root; the
    space's block area (the directories in ``exclude``) is never listed."""

    def __init__(self, space: Space, base: str, exclude: tuple[str, ...] = ()) -> None:
        self.space = space
        self.base = base
        self.exclude = exclude

    async def items(self) -> AsyncIterator[Item]:
        cut = len(self.base) + 1 if self.base else 0
        areas = tuple(x + "/" for x in self.exclude if x)
        async for entry in self.space.list(self.base):
            if areas and entry.key.startswith(areas):
                continue
            yield Item(entry.key[cut:], entry.size, entry.mtime)

    async def holdings(self) -> dict[str, Item]:
        return {item.rel: item for item in await self.all_items()}

    async def all_items(self) -> list[Item]:
        """The whole listing; from a local disk in one worker-thread call (the
        per-entry async iteration cost as much as the system calls)."""
        if not isinstance(self.space, BlockingSpace):
            return [item async for item in self.items()]
        space = self.space
        cut = len(self.base) + 1 if self.base else 0
        areas = tuple(x + "/" for x in self.exclude if x)

        def walk() -> list[Item]:
            return [
                Item(e.key[cut:], e.size, e.mtime)
                for e in space.list_blocking(self.base)
                if not (areas and e.key.startswith(areas))
            ]

        return await space.in_thread(walk)

    def open(self, item: Item) -> AsyncIterator[bytes]:
        return self.space.read_stream(join(self.base, item.rel), chunk=CHUNK)

    async def read_small(self, item: Item) -> bytes:
        return await self.space.read(join(self.base, item.rel))

    @property
    def blocking(self) -> bool:
        """Whether ``read_blocking``/``put_blocking`` may be used (local disks)."""
        return isinstance(self.space, BlockingSpace)

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` (calls of ``read_blocking``/``put_blocking``) in one of
        the space's own threads: a user tree on a mount that hangs holds
        those, not the threads every other task shares."""
        assert isinstance(self.space, BlockingSpace)
        return await self.space.in_thread(fn)

    def read_blocking(self, item: Item) -> bytes:
        assert isinstance(self.space, BlockingSpace)
        return self.space.read_blocking(join(self.base, item.rel))

    def put_blocking(self, item: Item, data: bytes) -> None:
        assert isinstance(self.space, BlockingSpace)
        self.space.put_blocking(self._target(item.rel), data)

    async def put_small(self, item: Item, data: bytes) -> None:
        await self.space.put(self._target(item.rel), data)

    async def flush(self) -> None:
        await self.space.flush()

    async def sweep(self, older_than: float) -> int:
        return await self.space.sweep_incomplete(older_than, self.base, self.exclude)

    async def stat(self, rel: str) -> Item | None:
        try:
            entry = await self.space.stat(join(self.base, rel))
        except BlockNotFound:
            return None
        return Item(rel, entry.size, entry.mtime)

    async def delete(self, rel: str) -> None:
        await self.space.delete(join(self.base, rel))

    async def digest(self, rel: str) -> str:
        return await sha256_of(self.space.read_stream(join(self.base, rel), chunk=CHUNK))

    def _target(self, rel: str) -> str:
        """Where a file lands; never inside the block area (a source tree may
        well hold a ``jcs/...`` directory of its own)."""
        key = join(self.base, rel)
        for area in self.exclude:
            if inside(key, area):
                raise BadArgument(
                    f"{key!r} would land in JointCloud's block area {area!r}; "
                    "copy to a sub-directory instead"
                )
        return key

    async def write(self, item: Item, stream: AsyncIterator[bytes]) -> int:
        writer = await self.space.open_writer(self._target(item.rel))
        written = 0
        try:
            async for chunk in stream:
                await writer.write(chunk)
                written += len(chunk)
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        return written


class PackageSink:
    """Objects of one package: each file becomes the object at its relative path."""

    def __init__(
        self,
        objects: ObjectService,
        user_id: int,
        package_id: int,
        *,
        redundancy: object = None,
        affinity: int | None = None,
    ) -> None:
        self.objects = objects
        self.user_id = user_id
        self.package_id = package_id
        self.redundancy = redundancy
        self.affinity = affinity

    async def holdings(self) -> dict[str, Item]:
        objs = await self.objects.package_objects(Principal.user(self.user_id), self.package_id)
        return {o.path: Item(o.path, o.size, o.update_time.timestamp()) for o in objs}

    async def write(self, item: Item, stream: AsyncIterator[bytes]) -> int:
        async def one() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
            yield item.rel, stream

        done = await self.objects.upload(
            Principal.user(self.user_id),
            self.package_id,
            one(),
            affinity=self.affinity,
            redundancy=self.redundancy,
            from_client=False,  # a task's own copies, bounded by its parallelism
        )
        return done[0].size

    async def put_small(self, item: Item, data: bytes) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield data

        await self.write(item, chunks())

    async def flush(self) -> None:
        return None  # objects are durable once committed

    async def sweep(self, older_than: float) -> int:
        return 0  # uncommitted blocks are the garbage collector's

    async def digest(self, rel: str) -> str:
        # A file's name becomes its object's path by the file-name rules
        # ('\\' is '/'), as ``write`` stored it.
        return await object_digest(self.objects, self.user_id, self.package_id, object_path(rel))


class PackageSource:
    """The objects of one package, streamed decrypted and reassembled."""

    def __init__(self, objects: ObjectService, user_id: int, package_id: int) -> None:
        self.objects = objects
        self.user_id = user_id
        self.package_id = package_id

    async def items(self) -> AsyncIterator[Item]:
        objs = await self.objects.package_objects(Principal.user(self.user_id), self.package_id)
        for item in file_items(objs):
            yield item

    async def open(self, item: Item) -> AsyncIterator[bytes]:
        content = await self.objects.open(
            Principal.user(self.user_id), package_id=self.package_id, path=item.rel
        )
        async for chunk in self.objects.read(content).body:
            yield chunk

    async def read_small(self, item: Item) -> bytes:
        return b"".join([chunk async for chunk in self.open(item)])

    async def stat(self, rel: str) -> Item | None:
        objs = await self.objects.package_objects(Principal.user(self.user_id), self.package_id)
        found = next((o for o in objs if o.path == rel), None)
        return None if found is None else Item(rel, found.size, found.update_time.timestamp())

    async def delete(self, rel: str) -> None:
        await self.objects.delete_by_path(Principal.user(self.user_id), self.package_id, rel)

    async def digest(self, rel: str) -> str:
        return await object_digest(self.objects, self.user_id, self.package_id, rel)
