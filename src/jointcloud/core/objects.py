"""Objects: batch upload, ranged download, listing, move, delete, clone."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from jointcloud.core.blockstore import BlockStore
from jointcloud.core.buckets import PackageService, optional_policy
from jointcloud.core.models import ObjectContent, ObjectInfo, StagedLayout, UserSpace
from jointcloud.core.paths import object_path, path_prefix
from jointcloud.errors import AlreadyExists, BadArgument, NotFound
from jointcloud.meta import accounts, catalog, layouts
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.redundancy.policy import Redundancy

MAX_KEYS = 1000


@dataclass(frozen=True)
class Listing:
    common_prefixes: list[str]
    objects: list[ObjectInfo]
    next_token: str | None


@dataclass(frozen=True)
class Download:
    info: ObjectInfo
    offset: int
    length: int
    body: AsyncIterator[bytes]


def full_hash(sha256_hex: str) -> str:
    return "Full" + sha256_hex.upper()


def _encode_token(after: str, inclusive: bool) -> str:
    raw = json.dumps({"a": after, "i": inclusive}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, bool]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, inclusive = data["a"], data["i"]
        if not isinstance(after, str) or not isinstance(inclusive, bool):
            raise ValueError
    except (ValueError, KeyError, TypeError) as exc:
        raise BadArgument("continuationToken is not a token this service issued") from exc
    return after, inclusive


# Batch uploads: files up to SMALL_FILE bytes are read whole and stored
# BATCH_FILES at a time (one intent transaction, one encoding hop, one
# durable write per space), several batches at once while the request body
# is still arriving; at most BUFFERED_BYTES of them are held in memory.
SMALL_FILE = 1 << 20
BATCH_FILES = 256
BATCH_BYTES = 8 << 20
BATCHES_AT_ONCE = 2
BUFFERED_BYTES = 64 << 20

_background: set[asyncio.Future[None]] = set()


async def _finish(work: Awaitable[None]) -> None:
    """Run clean-up to its end even if the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    await asyncio.shield(task)


async def _read_upto(stream: AsyncIterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """Chunks of ``stream`` until more than ``limit`` bytes or its end; and
    whether it ended."""
    chunks: list[bytes] = []
    have = 0
    async for chunk in stream:
        chunks.append(chunk)
        have += len(chunk)
        if have > limit:
            return chunks, False
    return chunks, True


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


class _Stager:
    """Stages the files of one upload in order of arrival; ``finish`` gives
    their staged layouts in that order, ``abandon`` removes everything."""

    def __init__(
        self,
        store: BlockStore,
        user_id: int,
        policy: Redundancy,
        affinity: int | None,
        spaces: Sequence[UserSpace],
    ) -> None:
        self.store = store
        self.user_id = user_id
        self.policy = policy
        self.affinity = affinity
        self.spaces = spaces
        self.slots: list[StagedLayout | None] = []
        self.batch: list[tuple[int, bytes]] = []
        self.batch_bytes = 0
        self.buffered = 0  # small-file bytes read and not yet stored
        self.running: set[asyncio.Task[None]] = set()

    async def add(self, stream: AsyncIterator[bytes]) -> None:
        index = len(self.slots)
        self.slots.append(None)
        head, ended = await _read_upto(stream, SMALL_FILE)
        if not ended:  # a large file streams on its own, right now
            await self._submit()
            self.slots[index] = await self.store.stage(
                self.user_id, _chain(head, stream), self.policy, self.affinity, self.spaces
            )
            return
        data = head[0] if len(head) == 1 else b"".join(head)
        if self.buffered + len(data) > BUFFERED_BYTES:
            await self._submit()
            while self.running and self.buffered + len(data) > BUFFERED_BYTES:
                await self._wait_one()
        self.batch.append((index, data))
        self.batch_bytes += len(data)
        self.buffered += len(data)
        if len(self.batch) >= BATCH_FILES or self.batch_bytes >= BATCH_BYTES:
            await self._submit()

    async def _submit(self) -> None:
        if not self.batch:
            return
        while len(self.running) >= BATCHES_AT_ONCE:
            await self._wait_one()
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        self.running.add(asyncio.ensure_future(self._store(batch)))

    async def _store(self, batch: list[tuple[int, bytes]]) -> None:
        try:
            staged = await self.store.stage_many(
                self.user_id, [d for _, d in batch], self.policy, self.affinity, self.spaces
            )
            for (index, _), st in zip(batch, staged, strict=True):
                self.slots[index] = st
        finally:
            self.buffered -= sum(len(d) for _, d in batch)

    async def _wait_one(self) -> None:
        done, _ = await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
        self.running -= done
        errors = [t.exception() for t in done if not t.cancelled()]  # each one retrieved
        for exc in errors:
            if exc is not None:
                raise exc  # a failed batch fails the upload now

    async def finish(self) -> list[StagedLayout]:
        await self._submit()
        while self.running:
            await self._wait_one()
        staged = [s for s in self.slots if s is not None]
        assert len(staged) == len(self.slots)
        return staged

    async def abandon(self) -> None:
        """Let the batches still running end (they are bounded work; a batch
        cancelled inside its database transaction could leave the connection
        mid-statement), then discard everything staged."""
        if self.running:
            await asyncio.wait(self.running)
        for task in self.running:
            if not task.cancelled():
                task.exception()  # retrieved: the upload re-raises its own error
        await self.store.discard([s for s in self.slots if s is not None])


class ObjectService:
    def __init__(self, db: Database, packages: PackageService, store: BlockStore) -> None:
        self.db = db
        self.packages = packages
        self.store = store

    async def upload(
        self,
        user_id: int,
        package_id: int,
        files: AsyncIterator[tuple[str, AsyncIterator[bytes]]],
        *,
        affinity: int | None = None,
        redundancy: object = None,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> list[ObjectInfo]:
        """Store every file, then commit all of them in one transaction.

        Small files are read whole and stored in batches while the next ones
        arrive (see ``_Stager``); larger ones stream. ``before_commit`` is
        awaited inside the commit transaction, just before anything is
        written: it raises to abandon the upload (e.g. the client went away).
        On any failure every staged block is removed and nothing is visible."""
        override = optional_policy(redundancy)
        async with self.db.read() as conn:  # one snapshot for both look-ups
            found = await catalog.package_policy(conn, user_id, package_id)
            spaces = await accounts.list_spaces(conn, user_id)
        if found is None:
            raise NotFound(f"package {package_id} not found")
        pkg, default = found
        policy = override or default
        stager = _Stager(self.store, user_id, policy, affinity, spaces)
        paths: list[str] = []
        try:
            seen: set[str] = set()
            async for raw_path, stream in files:
                path = object_path(raw_path, "files filename")
                if path in seen:
                    raise BadArgument(f"path {path!r} appears twice in one upload")
                seen.add(path)
                paths.append(path)
                await stager.add(stream)
            if not paths:
                raise BadArgument("the upload has no 'files' part")
            staged = await stager.finish()
        except BaseException:
            await _finish(stager.abandon())
            raise
        items = [
            catalog.NewContent(path, st.size, full_hash(st.sha256), st.md5, [(0, st.layout_id)])
            for path, st in zip(paths, staged, strict=True)
        ]

        async def commit() -> list[ObjectInfo]:
            async with self.db.write() as conn:
                if not await catalog.lock_package_paths(conn, pkg.package_id):
                    raise NotFound(f"package {package_id} not found")
                if before_commit is not None:
                    await before_commit()
                await layouts.activate_many(conn, staged)
                return await catalog.commit_objects(
                    conn, pkg.package_id, items, policy=policy, ts=now()
                )

        committing = asyncio.ensure_future(commit())
        try:
            # Shielded: once the transaction runs, its outcome decides the
            # clean-up (a commit that went through keeps its blocks).
            return await asyncio.shield(committing)
        except BaseException:
            await _finish(self._settle(committing, staged))
            raise

    async def _settle(
        self, committing: asyncio.Future[list[ObjectInfo]], staged: Sequence[StagedLayout]
    ) -> None:
        await asyncio.wait([committing])
        if not committing.cancelled() and committing.exception() is None:
            return  # committed after all (the caller was cancelled meanwhile)
        await self.store.discard(staged)

    async def get(self, user_id: int, object_id: int) -> ObjectInfo:
        async with self.db.read() as conn:
            info = await catalog.get_object(conn, user_id, object_id)
        if info is None:
            raise NotFound(f"object {object_id} not found")
        return info

    async def get_by_path(self, user_id: int, package_id: int, path: str) -> ObjectInfo:
        await self.packages.get(user_id, package_id)
        path = object_path(path)
        async with self.db.read() as conn:
            info = await catalog.get_object_by_path(conn, package_id, path)
        if info is None:
            raise NotFound(f"no object at path {path!r} in package {package_id}")
        return info

    async def open(
        self, user_id: int, object_id: int | None = None, *, package_id: int = 0, path: str = ""
    ) -> ObjectContent:
        """An object and its layout, read in one snapshot (by id or by path)."""
        if object_id is None:
            path = object_path(path)
        async with self.db.read() as conn:
            if object_id is not None:
                info = await catalog.get_object(conn, user_id, object_id)
                missing = f"object {object_id} not found"
            else:
                if await catalog.get_package(conn, user_id, package_id) is None:
                    raise NotFound(f"package {package_id} not found")
                info = await catalog.get_object_by_path(conn, package_id, path)
                missing = f"no object at path {path!r} in package {package_id}"
            if info is None:
                raise NotFound(missing)
            return await catalog.content(conn, info)

    def read(self, content: ObjectContent, offset: int = 0, length: int | None = None) -> Download:
        info = content.info
        if offset < 0:
            raise BadArgument("offset must not be negative")
        if length is not None and length < 0:
            raise BadArgument("length must not be negative")
        if offset > info.size:
            raise BadArgument(f"offset {offset} is beyond the object's size {info.size}")
        length = info.size - offset if length is None else min(length, info.size - offset)
        return Download(info, offset, length, self.store.read(content, offset, length))

    async def download(
        self, user_id: int, object_id: int, offset: int = 0, length: int | None = None
    ) -> Download:
        return self.read(await self.open(user_id, object_id), offset, length)

    async def list_by_path(
        self,
        user_id: int,
        package_id: int,
        path: str,
        *,
        is_prefix: bool,
        no_recursive: bool,
        token: str | None = None,
        max_keys: int = MAX_KEYS,
    ) -> Listing:
        await self.packages.get(user_id, package_id)
        if not 1 <= max_keys <= MAX_KEYS:
            raise BadArgument(f"maxKeys must be between 1 and {MAX_KEYS}")
        if not is_prefix:
            exact = object_path(path)
            async with self.db.read() as conn:
                one = await catalog.get_object_by_path(conn, package_id, exact)
            return Listing([], [one] if one else [], None)
        prefix = path_prefix(path)
        after, inclusive = _decode_token(token) if token else (None, False)
        objs: list[ObjectInfo] = []
        prefixes: list[str] = []
        async with self.db.read() as conn:
            while len(objs) + len(prefixes) < max_keys:
                room = max_keys - len(objs) - len(prefixes)
                batch = await catalog.list_objects(
                    conn, package_id, prefix, after, room, inclusive=inclusive
                )
                if not batch:
                    return Listing(prefixes, objs, None)
                for obj in batch:
                    rest = obj.path[len(prefix) :]
                    if no_recursive and "/" in rest:
                        common = prefix + rest.split("/", 1)[0] + "/"
                        prefixes.append(common)
                        # Everything under common sorts before common[:-1] + "0"
                        # ('/' + 1), so resume there.
                        after, inclusive = common[:-1] + "0", True
                        break
                    objs.append(obj)
                    after, inclusive = obj.path, False
            more = await catalog.list_objects(
                conn, package_id, prefix, after, 1, inclusive=inclusive
            )
        next_token = _encode_token(after, inclusive) if more and after is not None else None
        return Listing(prefixes, objs, next_token)

    async def package_objects(self, user_id: int, package_id: int) -> list[ObjectInfo]:
        await self.packages.get(user_id, package_id)
        out: list[ObjectInfo] = []
        async with self.db.read() as conn:
            after: str | None = None
            while batch := await catalog.list_objects(conn, package_id, "", after, 1000):
                out += batch
                after = batch[-1].path
        return out

    async def by_ids(self, user_id: int, ids: Sequence[int]) -> list[ObjectInfo | None]:
        async with self.db.read() as conn:
            found = await catalog.objects_by_ids(conn, user_id, ids)
        return [found.get(i) for i in ids]

    async def move(
        self, user_id: int, movings: Sequence[tuple[int, int, str]]
    ) -> tuple[list[int], list[tuple[int, str]]]:
        checked = [(oid, pid, object_path(p)) for oid, pid, p in movings]
        ok: list[int] = []
        failed: list[tuple[int, str]] = []
        for object_id, package_id, path in checked:
            try:
                async with self.db.write() as conn:
                    if await catalog.get_object(conn, user_id, object_id) is None:
                        raise NotFound(f"object {object_id} not found")
                    if await catalog.get_package(conn, user_id, package_id) is None:
                        raise NotFound(f"package {package_id} not found")
                    other = await catalog.get_object_by_path(
                        conn, package_id, path, include_uncommitted=True
                    )
                    if other is not None and other.object_id != object_id:
                        raise AlreadyExists(
                            f"path {path!r} is already taken in package {package_id}"
                        )
                    await catalog.move_object(conn, object_id, package_id, path)
                ok.append(object_id)
            except (NotFound, AlreadyExists) as exc:
                failed.append((object_id, exc.message))
            except IntegrityError:
                failed.append((object_id, f"path {path!r} is already taken"))
        return ok, failed

    async def delete(self, user_id: int, object_ids: Sequence[int]) -> None:
        async with self.db.write() as conn:
            found = await catalog.objects_by_ids(conn, user_id, object_ids)
            missing = [i for i in object_ids if i not in found]
            if missing:
                raise NotFound(f"objects not found: {', '.join(map(str, missing))}")
            await catalog.delete_objects(conn, list(dict.fromkeys(object_ids)))

    async def delete_by_path(self, user_id: int, package_id: int, path: str) -> None:
        info = await self.get_by_path(user_id, package_id, path)
        await self.delete(user_id, [info.object_id])

    async def clone(
        self, user_id: int, clonings: Sequence[tuple[int, int, str]]
    ) -> list[ObjectInfo | None]:
        checked = [(oid, pid, object_path(p, "newPath")) for oid, pid, p in clonings]
        out: list[ObjectInfo | None] = []
        for object_id, package_id, path in checked:
            try:
                async with self.db.write() as conn:
                    src = await catalog.get_object(conn, user_id, object_id)
                    pkg = await catalog.get_package(conn, user_id, package_id)
                    taken = await catalog.get_object_by_path(
                        conn, package_id, path, include_uncommitted=True
                    )
                    if src is None or pkg is None or taken is not None:
                        out.append(None)
                        continue
                    new_id = await catalog.clone_object(conn, src, package_id, path)
                    out.append((await catalog.objects_by_ids(conn, user_id, [new_id]))[new_id])
            except IntegrityError:
                out.append(None)
        return out
