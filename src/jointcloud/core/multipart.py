"""Three-step multipart upload: new → parts → complete.

Parts are stored as their own layouts as they arrive; completing an upload
only writes metadata (the object references the part layouts in order), so
no byte is copied. Until completion a new object stays invisible, and an
existing object keeps serving its old content.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence

from jointcloud.core.blockstore import BlockStore
from jointcloud.core.buckets import PackageService
from jointcloud.core.models import ObjectInfo
from jointcloud.core.paths import object_path
from jointcloud.errors import BadArgument, NotFound
from jointcloud.meta import catalog, layouts
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

MAX_PART_INDEX = 100_000


def composite_hash(part_sha256: Sequence[str]) -> str:
    digest = hashlib.sha256(b"".join(bytes.fromhex(h) for h in part_sha256)).hexdigest()
    return "Comp" + digest.upper()


def composite_etag(part_md5: Sequence[str]) -> str:
    """The S3 multipart ETag: MD5 of the concatenated part MD5s, '-N'."""
    digest = hashlib.md5(b"".join(bytes.fromhex(h) for h in part_md5)).hexdigest()
    return f"{digest}-{len(part_md5)}"


class MultipartService:
    def __init__(self, db: Database, packages: PackageService, store: BlockStore) -> None:
        self.db = db
        self.packages = packages
        self.store = store

    async def _object(self, user_id: int, object_id: int) -> ObjectInfo:
        async with self.db.read() as conn:
            info = await catalog.get_object(conn, user_id, object_id, include_uncommitted=True)
        if info is None:
            raise NotFound(f"object {object_id} not found")
        return info

    async def new(self, user_id: int, package_id: int, path: str) -> ObjectInfo:
        pkg, policy = await self.packages.effective_policy(user_id, package_id)
        path = object_path(path)
        async with self.db.write() as conn:
            await catalog.lock_package_paths(conn, pkg.package_id)
            existing = await catalog.get_object_by_path(
                conn, pkg.package_id, path, include_uncommitted=True
            )
            if existing is None:
                object_id = await catalog.create_placeholder(conn, pkg.package_id, path, policy)
            else:
                object_id = existing.object_id
                # Starting over discards parts of any earlier, unfinished upload.
                stale = await layouts.clear_upload_parts(conn, object_id)
                await layouts.release_unreferenced(conn, stale)
            info = await catalog.get_object(conn, user_id, object_id, include_uncommitted=True)
        assert info is not None
        return info

    async def upload_part(
        self, user_id: int, object_id: int, index: int, body: AsyncIterator[bytes]
    ) -> None:
        if not 0 <= index <= MAX_PART_INDEX:
            raise BadArgument(f"index must be between 0 and {MAX_PART_INDEX}")
        info = await self._object(user_id, object_id)
        staged = await self.store.stage(user_id, body, info.redundancy)
        try:
            async with self.db.write() as conn:
                if (
                    await catalog.get_object(conn, user_id, object_id, include_uncommitted=True)
                    is None
                ):
                    raise NotFound(f"object {object_id} not found")
                await layouts.activate(conn, staged)
                old = await layouts.put_upload_part(conn, object_id, index, staged)
                await layouts.release_unreferenced(conn, [] if old is None else [old])
        except BaseException:
            await asyncio.shield(self.store.discard([staged]))
            raise

    async def complete(self, user_id: int, object_id: int, indexes: Sequence[int]) -> ObjectInfo:
        if not indexes:
            raise BadArgument("indexes must list at least one part")
        if len(set(indexes)) != len(indexes):
            raise BadArgument("indexes must not repeat a part")
        info = await self._object(user_id, object_id)
        async with self.db.write() as conn:
            if not await catalog.lock_package_paths(conn, info.package_id):
                raise NotFound(f"object {object_id} not found")
            parts = await layouts.upload_parts(conn, object_id)
            missing = [i for i in indexes if i not in parts]
            if missing:
                raise BadArgument(
                    f"indexes: parts {', '.join(map(str, missing))} were not uploaded"
                )
            chosen = [parts[i] for i in indexes]
            refs: list[tuple[int, int]] = []
            offset = 0
            for part in chosen:
                refs.append((offset, part.layout_id))
                offset += part.size
            done = await catalog.commit_object(
                conn,
                info.package_id,
                info.path,
                size=offset,
                file_hash=composite_hash([p.sha256 for p in chosen]),
                etag=composite_etag([p.md5 for p in chosen]),
                policy=info.redundancy,
                parts=refs,
                ts=now(),
            )
            leftovers = await layouts.clear_upload_parts(conn, object_id)
            await layouts.release_unreferenced(conn, leftovers)
        return done
