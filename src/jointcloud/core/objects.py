"""Objects: batch upload, ranged download, listing, move, delete, clone."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from jointcloud.core.blockstore import BlockStore
from jointcloud.core.buckets import PackageService, optional_policy
from jointcloud.core.models import ObjectContent, ObjectInfo, StagedLayout
from jointcloud.core.paths import object_path, path_prefix
from jointcloud.errors import AlreadyExists, BadArgument, NotFound
from jointcloud.meta import accounts, catalog, layouts
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

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
    ) -> list[ObjectInfo]:
        """Store every file, then commit all of them in one transaction."""
        override = optional_policy(redundancy)
        async with self.db.read() as conn:  # one snapshot for both look-ups
            found = await catalog.package_policy(conn, user_id, package_id)
            spaces = await accounts.list_spaces(conn, user_id)
        if found is None:
            raise NotFound(f"package {package_id} not found")
        pkg, default = found
        policy = override or default
        staged: list[tuple[str, StagedLayout]] = []
        try:
            async for raw_path, stream in files:
                path = object_path(raw_path, "files filename")
                if any(p == path for p, _ in staged):
                    raise BadArgument(f"path {path!r} appears twice in one upload")
                staged.append(
                    (path, await self.store.stage(user_id, stream, policy, affinity, spaces))
                )
            if not staged:
                raise BadArgument("the upload has no 'files' part")
            ts = now()
            async with self.db.write() as conn:
                if not await catalog.lock_package_paths(conn, pkg.package_id):
                    raise NotFound(f"package {package_id} not found")
                done = []
                for path, st in staged:
                    await layouts.activate(conn, st)
                    done.append(
                        await catalog.commit_object(
                            conn,
                            pkg.package_id,
                            path,
                            size=st.size,
                            file_hash=full_hash(st.sha256),
                            etag=st.md5,
                            policy=policy,
                            parts=[(0, st.layout_id)],
                            ts=ts,
                        )
                    )
        except BaseException:
            await asyncio.shield(self.store.discard([s for _, s in staged]))
            raise
        return done

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
