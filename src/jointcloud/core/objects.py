"""Objects: the typed object service every protocol calls — put, head, get,
delete, copy, list and tags, each with a ``Principal`` and authorized where
the address becomes a package (``PackageService.resolve``) — and the JCS v1
operations (batch upload, by-id reads, move, delete, clone) on the same
implementation. Every write of bytes goes through the one upload path
(``core/uploads.py``); listings page through ``core/listing.py``; where an
object's parts lie is ``core/object_parts.py``.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

from jointcloud.core.authz import Operation, Principal, authorize
from jointcloud.core.background import finish
from jointcloud.core.blockstore import BlockStore
from jointcloud.core.buckets import PackageService, optional_policy
from jointcloud.core.commands import (
    NO_CONDITIONS,
    ByteRange,
    ChecksumAlgorithm,
    Conditions,
    CopyObject,
    DeleteObject,
    GetObject,
    MetadataDirective,
    ObjectAddress,
    PackageRef,
    PutObject,
    check_checksum,
    check_content_md5,
    check_meta,
    check_payload,
    check_read_conditions,
    check_source_conditions,
    check_tags,
    check_write_conditions,
    resolve_range,
    trailing_checksums,
)
from jointcloud.core.copy_checksum import read_digests, refuse_too_large, to_read
from jointcloud.core.deletes import BatchDeletes
from jointcloud.core.listing import (
    MAX_KEYS,
    BriefListing,
    EntryListing,
    Listing,
    ObjectListings,
)
from jointcloud.core.models import (
    ContentHash,
    ObjectContent,
    ObjectInfo,
    ObjectMeta,
    Package,
)
from jointcloud.core.object_parts import ObjectAttributes, PartRange, attributes_of, part_of
from jointcloud.core.paths import object_key, object_path
from jointcloud.core.uploads import UploadPath, UploadSlots, verify_digests
from jointcloud.errors import (
    AccessDenied,
    AlreadyExists,
    BadArgument,
    Conflict,
    DuplicateEntry,
    NotFound,
    ObjectNotFound,
    OutOfScope,
    PackageNotFound,
    PreconditionFailed,
)
from jointcloud.meta import catalog
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "MAX_KEYS",
    "BriefListing",
    "Download",
    "EntryListing",
    "Listing",
    "ObjectAttributes",
    "ObjectService",
    "PartRange",
]


@dataclass(frozen=True)
class Download:
    info: ObjectInfo
    offset: int
    length: int
    body: AsyncIterator[bytes]
    partial: bool = False  # a byte range was asked for (and is what ``body`` holds)
    part: PartRange | None = None  # where the part asked for lies (``part_number``)


async def _check_destination(
    conn: AsyncConnection, cmd: CopyObject, pkg: Package, path: str, path_free: bool
) -> None:
    """A copy's conditions on its destination (and, ``path_free``, that not
    even an unfinished upload holds the path)."""
    current = await catalog.get_object_by_path(
        conn, pkg.package_id, path, include_uncommitted=path_free
    )
    if path_free and current is not None:
        raise AlreadyExists(f"{_where(cmd.dest.package, pkg, path)} is already taken")
    check_write_conditions(current, cmd.conditions)


def _where(ref: PackageRef, pkg: Package, path: str) -> str:
    """A path as the caller named its package (by id or by name)."""
    named = pkg.package_id if ref.package_id is not None else repr(pkg.name)
    return f"path {path!r} in package {named}"


class ObjectService(ObjectListings, BatchDeletes):
    def __init__(
        self,
        db: Database,
        packages: PackageService,
        store: BlockStore,
        slots: UploadSlots | None = None,
    ) -> None:
        super().__init__(db, packages)
        self.store = store
        # Uploads a client sends, at most so many of one user's at once.
        self.slots = slots if slots is not None else UploadSlots()
        self.uploads = UploadPath(db, store)
        self.combiner = self.uploads.combiner  # uploads into one package commit together

    # --- the typed service ----------------------------------------------------

    async def _resolve(
        self, principal: Principal, address: ObjectAddress, op: Operation
    ) -> tuple[Package, str]:
        path = object_key(address.path)
        return await self.packages.resolve(principal, address.package, op, path), path

    async def put(self, principal: Principal, cmd: PutObject) -> ObjectInfo:
        """Store one object (replacing any at its path), with its metadata
        and the checksums asked for. Supplied checksums and content MD5 are
        verified against the bytes (``BadDigest``: nothing stored); the
        preconditions are evaluated against the object at the path in the
        committing transaction (``if_none_match=("*",)``: create only)."""
        meta = check_meta(cmd.meta)
        expect = {
            ChecksumAlgorithm(a): check_checksum(ChecksumAlgorithm(a), v)
            for a, v in cmd.checksums.items()
        }
        md5 = None if cmd.content_md5 is None else check_content_md5(cmd.content_md5)
        override = optional_policy(cmd.redundancy)
        pkg, path = await self._resolve(principal, cmd.address, Operation.WRITE)
        conditional = not cmd.conditions.empty
        default, current = await self.uploads.target(
            principal.user_id, pkg, path if conditional else None
        )
        policy = override or default
        if conditional:
            # Refuse early, before any byte is read; the commit checks again.
            check_write_conditions(current, cmd.conditions)
        wanted = frozenset(expect) | frozenset(ChecksumAlgorithm(a) for a in cmd.compute)

        async def one() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
            yield path, cmd.body

        with self.slots.take(principal.user_id):  # before any byte is read
            async with self.store.renewals.held():  # from the intent to the commit
                _, staged = await self.uploads.stage_files(
                    principal.user_id, policy, cmd.affinity, None, one(), wanted
                )
                (st,) = staged
                try:
                    check_payload(st, cmd.payload_sha256)
                    verify_digests(st, {**expect, **trailing_checksums(cmd.trailer)}, md5)
                except BadArgument:  # a digest that does not match (or a malformed trailer)
                    await finish(self.store.discard(staged))
                    raise
                item = catalog.NewContent(
                    path,
                    st.size,
                    ContentHash(st.sha256),
                    st.md5,
                    [(0, st.layout_id)],
                    meta,
                    st.checksums,
                )
                (info,) = await self.uploads.commit(
                    pkg.package_id, policy, staged, [item], conditions=cmd.conditions
                )
        return info

    async def _open(
        self,
        principal: Principal,
        address: ObjectAddress,
        conditions: Conditions,
        rng: ByteRange | None = None,
    ) -> ObjectContent:
        """An object and its layouts, of one version, if its preconditions
        hold; with ``rng``, only the layouts that hold bytes of it."""
        pkg, path = await self._resolve(principal, address, Operation.READ)
        async with self.db.read_statement() as conn:
            if rng is None:
                found = await catalog.open_by_path(conn, pkg.package_id, path)
            else:
                found = await catalog.open_span(
                    conn,
                    pkg.package_id,
                    path,
                    first=rng.start or 0,
                    last=rng.end,
                    tail=rng.suffix,
                )
        if found is None:
            raise ObjectNotFound(f"no object at {_where(address.package, pkg, path)}", name=path)
        check_read_conditions(found.info, conditions)
        return found

    async def head(
        self, principal: Principal, address: ObjectAddress, conditions: Conditions = NO_CONDITIONS
    ) -> ObjectInfo:
        """The object at ``address``; a failed If-None-Match/If-Modified-Since
        is ``NotModified``, a failed If-Match/If-Unmodified-Since
        ``PreconditionFailed``."""
        pkg, path = await self._resolve(principal, address, Operation.READ)
        async with self.db.read() as conn:
            info = await catalog.get_object_by_path(conn, pkg.package_id, path)
        if info is None:
            raise ObjectNotFound(f"no object at {_where(address.package, pkg, path)}", name=path)
        check_read_conditions(info, conditions)
        return info

    @overload
    async def get(self, principal: Principal, cmd: GetObject) -> Download: ...
    @overload
    async def get(self, principal: Principal, cmd: int) -> ObjectInfo: ...
    async def get(self, principal: Principal, cmd: GetObject | int) -> Download | ObjectInfo:
        """The object's bytes, or the range asked for (``InvalidRange`` if it
        selects nothing); preconditions as ``head``. (Transitional: with an
        object id, ``get_by_id``.)"""
        if isinstance(cmd, int):
            return await self.get_by_id(principal, cmd)
        # A part is located among all of them; a range needs only its own.
        rng = cmd.range if cmd.part_number is None else None
        content = await self._open(principal, cmd.address, cmd.conditions, rng)
        if cmd.part_number is not None:
            if cmd.range is not None:
                raise BadArgument("a part number and a range cannot be asked for together")
            part = part_of(content, cmd.part_number)
            # An empty part (the last of an upload may be) is no bytes, not
            # the whole object (it was answered with all of it).
            ranged = part.multipart and part.length > 0
            body = self.store.read(content, part.offset, part.length)
            return Download(content.info, part.offset, part.length, body, partial=ranged, part=part)
        offset, length = resolve_range(cmd.range, content.info.size)
        body = self.store.read(content, offset, length)
        return Download(content.info, offset, length, body, partial=cmd.range is not None)

    @overload
    async def delete(self, principal: Principal, cmd: DeleteObject) -> bool: ...
    @overload
    async def delete(self, principal: Principal, cmd: Sequence[int]) -> None: ...
    async def delete(self, principal: Principal, cmd: DeleteObject | Sequence[int]) -> bool | None:
        """Delete the object at the address; whether there was one (a missing
        object is no error: deleting is idempotent, as in S3). Preconditions
        (If-Match...) are evaluated in the deleting transaction; If-Match
        with no object there fails. (Transitional: with object ids,
        ``delete_by_ids``.)"""
        if not isinstance(cmd, DeleteObject):
            await self.delete_by_ids(principal, cmd)
            return None
        pkg, path = await self._resolve(principal, cmd.address, Operation.DELETE)
        async with self.db.write() as conn:
            if not await catalog.lock_package_paths(conn, pkg.package_id):
                raise PackageNotFound(f"package {pkg.package_id} not found")
            current = await catalog.get_object_by_path(conn, pkg.package_id, path)
            check_write_conditions(current, cmd.conditions)
            if current is None:
                return False
            await catalog.delete_objects(conn, [current.object_id])
        return True

    async def copy(self, principal: Principal, cmd: CopyObject) -> ObjectInfo:
        """A server-side copy: the destination shares the source's immutable
        layouts (no byte moves) and, with ``COPY``, its metadata; with
        ``REPLACE``, ``cmd.meta`` instead (tags follow ``tags_directive``).
        Reads the source, writes the destination (replacing any object
        there); source preconditions fail as ``PreconditionFailed``."""
        return await self._copy(principal, cmd)

    async def _copy(
        self,
        principal: Principal,
        cmd: CopyObject,
        *,
        path_free: bool = False,
        source_id: int | None = None,
    ) -> ObjectInfo:
        """``copy``; ``path_free``: the destination path must not be taken
        even by an unfinished upload's placeholder (the JCS clone rule);
        ``source_id``: the object named by id, which must still be the one at
        the source's path when the copy commits (a clone by id, whose object
        may be moved away and another put at its path meanwhile)."""
        src_pkg, src_path = await self._resolve(principal, cmd.source, Operation.READ)
        dst_pkg, dst_path = await self._resolve(principal, cmd.dest, Operation.WRITE)
        copy_meta = cmd.directive is MetadataDirective.COPY
        copy_tags = cmd.tags_directive is MetadataDirective.COPY
        given = None if copy_meta and copy_tags else check_meta(cmd.meta)
        # A website redirect belongs to one object: a copy has only the one
        # its command gives, whatever the directive (as S3). Only it is
        # checked when the rest of the command's metadata is not used.
        redirect = check_meta(
            ObjectMeta(website_redirect_location=cmd.meta.website_redirect_location)
        ).website_redirect_location
        same = (src_pkg.package_id, src_path) == (dst_pkg.package_id, dst_path)
        if same and path_free:  # a clone's path is taken, by its source
            raise AlreadyExists(f"{_where(cmd.dest.package, dst_pkg, dst_path)} is already taken")
        if same and given is None and redirect is None and not cmd.restates:
            raise BadArgument(
                "copying an object onto itself must replace its metadata, its tags "
                "or its website redirect location"
            )
        computed = None
        if cmd.checksum is not None or cmd.one_piece:
            content = await self._open(principal, cmd.source, NO_CONDITIONS)
            if cmd.one_piece:
                refuse_too_large(content.info)
            checksum, md5 = to_read(content.info, cmd.checksum, cmd.one_piece)
            if checksum is not None or md5:
                # Every condition once before the source is read (all are
                # checked again where the copy commits).
                check_source_conditions(content.info, cmd.source_conditions)
                if path_free or not cmd.conditions.empty:
                    async with self.db.read() as conn:
                        await _check_destination(conn, cmd, dst_pkg, dst_path, path_free)
                computed = await read_digests(self.store, content, checksum, md5=md5)
        async with self.db.write() as conn:
            # Both packages' paths, in id order: the source cannot change
            # between reading its row and its parts.
            for package_id in sorted({src_pkg.package_id, dst_pkg.package_id}):
                if not await catalog.lock_package_paths(conn, package_id):
                    raise PackageNotFound(f"package {package_id} not found")
            src = await catalog.get_object_by_path(conn, src_pkg.package_id, src_path)
            if src is None:
                raise ObjectNotFound(
                    f"no object at {_where(cmd.source.package, src_pkg, src_path)}",
                    name=src_path,
                )
            if source_id is not None and src.object_id != source_id:
                raise Conflict(f"object {source_id} moved while it was copied; copy it again")
            check_source_conditions(src, cmd.source_conditions)
            if cmd.one_piece:
                refuse_too_large(src)  # replaced by a larger one since
            if path_free or not cmd.conditions.empty:
                await _check_destination(conn, cmd, dst_pkg, dst_path, path_free)
            base = src.meta if copy_meta or given is None else given
            base = dataclasses.replace(base, website_redirect_location=redirect)
            tags = src.meta.tags if copy_tags or given is None else given.tags
            refs = await catalog.part_refs(conn, src.object_id)
            checksums: Mapping[ChecksumAlgorithm, str] = src.checksums
            part_checksums: list[Mapping[ChecksumAlgorithm, str]] | None = [
                r.checksums for r in refs
            ]
            etag = src.etag
            wanted, wants_md5 = to_read(src, cmd.checksum, cmd.one_piece)
            wants_checksum = wanted is not None
            if (wants_checksum or wants_md5) and (computed is None or not computed.of(src)):
                raise Conflict(
                    f"{_where(cmd.source.package, src_pkg, src_path)} was replaced "
                    "while it was read for the copy; copy it again"
                )
            if wants_checksum:
                assert computed is not None and computed.checksum is not None
                # The whole object's value, of the asked algorithm alone (S3
                # keeps one algorithm per object); its parts' are of another.
                checksums = dict([computed.checksum])
                part_checksums = None
            if wants_md5:
                assert computed is not None and computed.md5 is not None
                etag = computed.md5  # one piece: its parts' bounds are not shown
            return await catalog.commit_object(
                conn,
                dst_pkg.package_id,
                dst_path,
                size=src.size,
                file_hash=src.file_hash,
                etag=etag,
                policy=src.redundancy,
                parts=[(r.offset, r.layout_id) for r in refs],
                ts=now(),
                meta=dataclasses.replace(base, tags=tags),
                checksums=checksums,
                part_checksums=part_checksums,
            )

    async def get_tags(self, principal: Principal, address: ObjectAddress) -> dict[str, str]:
        return dict((await self.head(principal, address)).meta.tags)

    async def set_tags(
        self, principal: Principal, address: ObjectAddress, tags: Mapping[str, str]
    ) -> ObjectInfo:
        """Replace the object's tags (its content, ETag and update time stay)."""
        checked = check_tags(tags)
        pkg, path = await self._resolve(principal, address, Operation.WRITE)
        async with self.db.write() as conn:
            if not await catalog.lock_package_paths(conn, pkg.package_id):
                raise PackageNotFound(f"package {pkg.package_id} not found")
            info = await catalog.get_object_by_path(conn, pkg.package_id, path)
            if info is None:
                raise ObjectNotFound(
                    f"no object at {_where(address.package, pkg, path)}", name=path
                )
            await catalog.set_object_tags(conn, info.object_id, checked)
        return dataclasses.replace(info, meta=dataclasses.replace(info.meta, tags=checked))

    async def delete_tags(self, principal: Principal, address: ObjectAddress) -> None:
        await self.set_tags(principal, address, {})

    async def head_part(
        self,
        principal: Principal,
        address: ObjectAddress,
        part_number: int,
        conditions: Conditions = NO_CONDITIONS,
    ) -> tuple[ObjectInfo, PartRange]:
        """The object and where its part ``part_number`` (1-based) lies, with
        how many parts it has, read in one snapshot (two reads could describe
        two versions of an object being overwritten). An object completed
        from N uploaded parts (its ETag ``<md5>-N``) keeps their boundaries:
        each part is one layout; any other object is one part, the whole of
        it. ``InvalidRange`` for a part beyond the last; preconditions as
        ``head``."""
        content = await self._open(principal, address, conditions)
        return content.info, part_of(content, part_number)

    async def attributes(
        self, principal: Principal, address: ObjectAddress, conditions: Conditions = NO_CONDITIONS
    ) -> ObjectAttributes:
        """The object's record and the sizes of the parts it was completed
        from (each part is one layout: see ``head_part``); preconditions as
        ``head``."""
        return attributes_of(await self._open(principal, address, conditions))

    # --- JCS v1 ---------------------------------------------------------------

    async def _may(self, principal: Principal, info: ObjectInfo, op: Operation) -> None:
        """Authorize ``op`` on an object found by id (a plain user key, which
        reaches the whole account, needs no look-up of its package)."""
        if principal.project_id is None and not principal.caveats:
            return
        try:
            await self.packages.resolve(principal, PackageRef.by_id(info.package_id), op, info.path)
        except (OutOfScope, NotFound):
            # Named by id only: a refusal must not tell its path or package.
            raise ObjectNotFound(f"object {info.object_id} not found") from None

    async def _allowed(self, principal: Principal, info: ObjectInfo, op: Operation) -> bool:
        try:
            await self._may(principal, info, op)
        except (AccessDenied, ObjectNotFound):
            return False
        return True

    async def upload(
        self,
        principal: Principal,
        package_id: int,
        files: AsyncIterator[tuple[str, AsyncIterator[bytes]]],
        *,
        affinity: int | None = None,
        redundancy: object = None,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        from_client: bool = True,
        content_types: Mapping[str, str] | None = None,
    ) -> builtins.list[ObjectInfo]:
        """Store every file, then commit all of them in one transaction.
        ``content_types``: the content type a file was sent with, by its
        path as given (read when the file comes up), kept as S3's would be.

        Small files are read whole and stored in batches while the next ones
        arrive (see ``_Stager``); larger ones stream. ``before_commit`` is
        awaited inside the commit transaction, just before anything is
        written: it raises to abandon the upload (e.g. the client went away).
        On any failure every staged block is removed and nothing is visible.
        ``from_client``: the bytes come from a client, and the upload takes
        one of its user's slots (``UploadSlots``); a transfer task's do not."""
        override = optional_policy(redundancy)
        pkg = await self.packages.resolve(principal, PackageRef.by_id(package_id), Operation.WRITE)
        default, _ = await self.uploads.target(principal.user_id, pkg)
        policy = override or default

        metas: builtins.list[ObjectMeta | None] = []  # each file's, in order

        async def checked() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
            seen: set[str] = set()
            async for raw_path, stream in files:
                path = object_path(raw_path, "file name")
                if path in seen:
                    raise BadArgument(f"path {path!r} appears twice in one upload")
                seen.add(path)
                given = (content_types or {}).get(raw_path)
                try:
                    meta = None if given is None else check_meta(ObjectMeta(content_type=given))
                except BadArgument as exc:
                    raise BadArgument(f"file {path!r}: {exc}") from None
                metas.append(meta)
                authorize(
                    principal,
                    Operation.WRITE,
                    project_id=pkg.bucket_id,
                    package=pkg.name,
                    path=path,
                )
                yield path, stream

        # Every file's layout is renewed until the commit of them all: the
        # first ones wait for the last, however long its client takes.
        slot = self.slots.take(principal.user_id) if from_client else contextlib.nullcontext()
        with slot:
            async with self.store.renewals.held():
                paths, staged = await self.uploads.stage_files(
                    principal.user_id, policy, affinity, None, checked()
                )
                if not paths:
                    raise BadArgument("the upload has no 'files' part")
                items = [
                    catalog.NewContent(
                        path, st.size, ContentHash(st.sha256), st.md5, [(0, st.layout_id)], meta
                    )
                    for path, st, meta in zip(paths, staged, metas, strict=True)
                ]
                return await self.uploads.commit(
                    pkg.package_id, policy, staged, items, before_commit=before_commit
                )

    async def get_by_id(self, principal: Principal, object_id: int) -> ObjectInfo:
        async with self.db.read() as conn:
            info = await catalog.get_object(conn, principal.user_id, object_id)
        if info is None:
            raise ObjectNotFound(f"object {object_id} not found")
        await self._may(principal, info, Operation.READ)
        return info

    async def get_by_path(self, principal: Principal, package_id: int, path: str) -> ObjectInfo:
        return await self.head(principal, ObjectAddress(PackageRef.by_id(package_id), path))

    async def open(
        self,
        principal: Principal,
        object_id: int | None = None,
        *,
        package_id: int = 0,
        path: str = "",
    ) -> ObjectContent:
        """An object and its layout, read in one snapshot (by id or by path)."""
        if object_id is None:
            address = ObjectAddress(PackageRef.by_id(package_id), path)
            return await self._open(principal, address, NO_CONDITIONS)
        async with self.db.read_statement() as conn:
            found = await catalog.open_by_id(conn, principal.user_id, object_id)
        if found is None:
            raise ObjectNotFound(f"object {object_id} not found")
        await self._may(principal, found.info, Operation.READ)  # outside the snapshot
        return found

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
        self, principal: Principal, object_id: int, offset: int = 0, length: int | None = None
    ) -> Download:
        return self.read(await self.open(principal, object_id), offset, length)

    async def by_ids(
        self, principal: Principal, ids: Sequence[int]
    ) -> builtins.list[ObjectInfo | None]:
        """The objects with these ids (None: none, or not for this key)."""
        async with self.db.read() as conn:
            found = await catalog.objects_by_ids(conn, principal.user_id, ids)
        out: list[ObjectInfo | None] = []
        for i in ids:
            info = found.get(i)
            ok = info is not None and await self._allowed(principal, info, Operation.READ)
            out.append(info if ok else None)
        return out

    async def move(
        self, principal: Principal, movings: Sequence[tuple[int, int, str]]
    ) -> tuple[builtins.list[int], builtins.list[tuple[int, str]]]:
        checked = [(oid, pid, object_path(p)) for oid, pid, p in movings]
        user_id = principal.user_id
        ok: list[int] = []
        failed: list[tuple[int, str]] = []
        restricted = principal.project_id is not None or bool(principal.caveats)
        for object_id, package_id, path in checked:
            try:
                was: tuple[int, str] | None = None
                if restricted:  # moving takes the object away and writes it anew
                    source = await self.get_by_id(principal, object_id)
                    await self._may(principal, source, Operation.DELETE)
                    await self.packages.resolve(
                        principal, PackageRef.by_id(package_id), Operation.WRITE, path
                    )
                    was = (source.package_id, source.path)
                async with self.db.write() as conn:
                    first = await catalog.get_object(conn, user_id, object_id)
                    if first is None:
                        raise ObjectNotFound(f"object {object_id} not found")
                    if await catalog.get_package(conn, user_id, package_id) is None:
                        raise PackageNotFound(f"package {package_id} not found")
                    # Both packages' paths, in id order, as copies and deletes
                    # take them: a delete by IDs that checked the object where
                    # it is finishes before it moves (on PostgreSQL it would
                    # otherwise delete it where it went, unchecked there).
                    locked = sorted({first.package_id, package_id})
                    for locking in locked:
                        if not await catalog.lock_package_paths(conn, locking):
                            if locking == package_id:
                                raise PackageNotFound(f"package {package_id} not found")
                            raise ObjectNotFound(f"object {object_id} not found")
                    now_at = await catalog.get_object(conn, user_id, object_id)
                    if now_at is None:
                        raise ObjectNotFound(f"object {object_id} not found")
                    if now_at.package_id not in locked or (
                        was is not None and was != (now_at.package_id, now_at.path)
                    ):
                        # Moved before the lock, or the caveats were checked
                        # where it was (see delete_by_ids).
                        failed.append((object_id, "the object moved meanwhile; try again"))
                        continue
                    other = await catalog.get_object_by_path(
                        conn, package_id, path, include_uncommitted=True
                    )
                    if other is not None and other.object_id != object_id:
                        raise AlreadyExists(
                            f"path {path!r} is already taken in package {package_id}"
                        )
                    await catalog.move_object(conn, object_id, package_id, path)
                ok.append(object_id)
            except (DuplicateEntry, Conflict):  # a concurrent writer took the path
                failed.append((object_id, f"path {path!r} is already taken"))
            except (NotFound, AlreadyExists, AccessDenied) as exc:
                failed.append((object_id, exc.message))
        return ok, failed

    async def delete_by_ids(self, principal: Principal, object_ids: Sequence[int]) -> None:
        checked: dict[int, tuple[int, str]] | None = None
        if principal.project_id is not None or principal.caveats:
            async with self.db.read() as conn:
                seen = await catalog.objects_by_ids(conn, principal.user_id, object_ids)
            for info in seen.values():
                await self._may(principal, info, Operation.DELETE)
            checked = {i: (o.package_id, o.path) for i, o in seen.items()}
        async with self.db.write() as conn:
            found = await catalog.objects_by_ids(conn, principal.user_id, object_ids)
            # Their packages' paths, in id order, as copies, commits and
            # package deletes take them: a copy that took an object's layouts commits first, so
            # the release below sees its references (PostgreSQL's READ
            # COMMITTED would not see them uncommitted, and would release a
            # layout the copy reads).
            locked = sorted({o.package_id for o in found.values()})
            for package_id in locked:
                await catalog.lock_package_paths(conn, package_id)
            found = await catalog.objects_by_ids(conn, principal.user_id, object_ids)
            missing = [i for i in object_ids if i not in found]
            if missing:
                raise ObjectNotFound(f"objects not found: {', '.join(map(str, missing))}")
            if not {o.package_id for o in found.values()} <= set(locked):
                # Moved to a package not locked here before the lock.
                raise Conflict("an object changed while it was being deleted; try again")
            # The key's caveats were checked where the objects were; one
            # moved (or made) since is not deleted unchecked.
            if checked is not None and checked != {
                i: (o.package_id, o.path) for i, o in found.items()
            }:
                raise Conflict("an object changed while it was being deleted; try again")
            await catalog.delete_objects(conn, list(dict.fromkeys(object_ids)))

    async def delete_by_path(self, principal: Principal, package_id: int, path: str) -> None:
        """JCS: a missing object is an error here."""
        address = ObjectAddress(PackageRef.by_id(package_id), path)
        if not await self.delete(principal, DeleteObject(address)):
            raise ObjectNotFound(f"no object at path {path!r} in package {package_id}")

    async def clone(
        self, principal: Principal, clonings: Sequence[tuple[int, int, str]]
    ) -> builtins.list[ObjectInfo | None]:
        """JCS: server-side copies to paths that must be free; None for each
        one that could not be made (no source, no package, path taken, or
        not reachable by the key)."""
        checked = [(oid, pid, object_path(p, "new path")) for oid, pid, p in clonings]
        out: list[ObjectInfo | None] = []
        for object_id, package_id, path in checked:
            async with self.db.read() as conn:
                src = await catalog.get_object(conn, principal.user_id, object_id)
            if src is None:
                out.append(None)
                continue
            cmd = CopyObject(
                source=ObjectAddress(PackageRef.by_id(src.package_id), src.path),
                dest=ObjectAddress(PackageRef.by_id(package_id), path),
            )
            try:
                out.append(await self._copy(principal, cmd, path_free=True, source_id=object_id))
            except (NotFound, AlreadyExists, Conflict, PreconditionFailed, AccessDenied):
                out.append(None)
        return out
