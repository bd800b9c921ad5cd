"""Objects: the typed object service every protocol calls — put, head, get,
delete, copy, list and tags, each with a ``Principal`` and authorized where
the address becomes a package (``PackageService.resolve``) — and the JCS v1
operations (batch upload, by-id reads, move, delete, clone) on the same
implementation.

One upload path: every write of bytes, one object (``put``) or a batch
(``upload``), stages its files with ``_Stager`` (additional checksums
computed as the bytes flow, in the data path's worker threads), then commits
them in one transaction with ``_commit``, which locks the package's paths and
evaluates the write's preconditions against the rows it is about to replace:
two "create only if absent" writes of one path cannot both succeed, and the
one that fails leaves no block (its staged layouts are discarded).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, overload

from jointcloud.core.authz import Operation, Principal, allows, authorize, visible
from jointcloud.core.background import finish
from jointcloud.core.blockstore import BlockStore
from jointcloud.core.buckets import PackageService, optional_policy
from jointcloud.core.combiner import Combiner, write_contents
from jointcloud.core.commands import (
    NO_CONDITIONS,
    ByteRange,
    ChecksumAlgorithm,
    Conditions,
    CopyObject,
    DeleteObject,
    GetObject,
    ListObjects,
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
from jointcloud.core.models import (
    ContentHash,
    ListedObject,
    ObjectContent,
    ObjectEntry,
    ObjectInfo,
    ObjectMeta,
    Package,
    StagedLayout,
    UserSpace,
)
from jointcloud.core.paths import (
    check_cursor,
    key_prefix,
    object_key,
    object_path,
    path_prefix,
)
from jointcloud.errors import (
    AccessDenied,
    AlreadyExists,
    BadArgument,
    BadDigest,
    Conflict,
    DuplicateEntry,
    InvalidRange,
    NotFound,
    ObjectNotFound,
    OutOfScope,
    PackageNotFound,
    PreconditionFailed,
)
from jointcloud.meta import catalog
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
class EntryListing:
    """A JCS listing page: each object as ``ObjectEntry``."""

    common_prefixes: list[str]
    objects: list[ObjectEntry]
    next_token: str | None


@dataclass(frozen=True)
class BriefListing:
    """A listing page with only what a listing shows of each object."""

    common_prefixes: list[str]
    objects: list[ListedObject]
    next_token: str | None


E = TypeVar("E", ObjectInfo, ObjectEntry, ListedObject)
# (conn, package id, prefix, after, limit, inclusive) -> one batch, in path order
Fetch = Callable[[Any, int, str, "str | None", int, bool], Awaitable[list[E]]]


class ObjectAttributes(NamedTuple):
    """An object and, for one completed from uploaded parts, their sizes in
    order (S3's GetObjectAttributes) and each one's own checksums (empty
    where none were kept); None for an object of one piece."""

    info: ObjectInfo
    part_sizes: tuple[int, ...] | None
    part_checksums: tuple[Mapping[ChecksumAlgorithm, str], ...] | None = None


class PartRange(NamedTuple):
    """Where one part of an object lies (S3's ``partNumber`` reads)."""

    offset: int
    length: int
    parts_count: int
    multipart: bool  # completed from uploaded parts (its ETag ``<md5>-N``)
    # The checksums of those bytes: the part's own as uploaded (none kept:
    # empty), or the object's when the part is the whole object.
    checksums: Mapping[ChecksumAlgorithm, str] = {}


_COMPOSITE_ETAG = re.compile(r"^[0-9a-f]{32}-([0-9]+)$")


@dataclass(frozen=True)
class Download:
    info: ObjectInfo
    offset: int
    length: int
    body: AsyncIterator[bytes]
    partial: bool = False  # a byte range was asked for (and is what ``body`` holds)
    part: PartRange | None = None  # where the part asked for lies (``part_number``)


def _encode_token(after: str, inclusive: bool) -> str:
    raw = json.dumps({"a": after, "i": inclusive}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, field: str) -> tuple[str, bool]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, inclusive = data["a"], data["i"]
        if not isinstance(after, str) or not isinstance(inclusive, bool):
            raise ValueError
        check_cursor(after, field)  # a crafted cursor no stored path could hold
    except (ValueError, KeyError, TypeError, BadArgument) as exc:
        raise BadArgument.about(field, "is not a token this service issued") from exc
    return after, inclusive


def _past(common: str) -> tuple[str, bool]:
    """Where a listing resumes after a common prefix: the least string above
    every path that begins with it (its last character + 1, inclusive)."""
    last = ord(common[-1])
    if last >= 0x10FFFF:
        return common + "\U0010ffff", False
    # No key holds a surrogate (paths.check_chars): U+D7FF is followed by U+E000.
    following = 0xE000 if last == 0xD7FF else last + 1
    return common[:-1] + chr(following), True


def _part_sizes(content: ObjectContent) -> tuple[int, ...] | None:
    """The sizes of the parts an object was completed from (its ETag
    ``<md5>-N``, N layouts: each part is one), in order; None for an object
    of one piece."""
    info, parts = content.info, content.parts
    found = _COMPOSITE_ETAG.match(info.etag)
    if found is None or int(found.group(1)) != len(parts):
        return None
    ends = [off for off, _ in parts[1:]] + [info.size]
    return tuple(end - off for (off, _), end in zip(parts, ends, strict=True))


def _part_of(content: ObjectContent, part_number: int) -> PartRange:
    """Where part ``part_number`` (1-based) of the object lies, and how many
    parts it has (``ObjectService.part_range``)."""
    if part_number < 1:
        raise BadArgument("part numbers start at 1")
    size = content.info.size
    sizes = _part_sizes(content)
    count = 1 if sizes is None else len(sizes)
    if part_number > count:
        raise InvalidRange(
            f"The requested partnumber is not satisfiable: part {part_number} of "
            f"an object of {count} part{'' if count == 1 else 's'}",
            size=size,
        )
    if sizes is None:
        return PartRange(0, size, 1, False, content.info.checksums)
    sums = _part_checksums(content)
    return PartRange(
        sum(sizes[: part_number - 1]),
        sizes[part_number - 1],
        count,
        True,
        {} if sums is None else sums[part_number - 1],
    )


def _part_checksums(content: ObjectContent) -> tuple[Mapping[ChecksumAlgorithm, str], ...] | None:
    """Each part's own checksums, where they were kept (else None)."""
    sums = content.part_checksums
    return sums if len(sums) == len(content.parts) and any(sums) else None


def _where(ref: PackageRef, pkg: Package, path: str) -> str:
    """A path as the caller named its package (by id or by name)."""
    named = pkg.package_id if ref.package_id is not None else repr(pkg.name)
    return f"path {path!r} in package {named}"


def _verify(
    staged: StagedLayout, expect: Mapping[ChecksumAlgorithm, str], content_md5: str | None
) -> None:
    """The digests a client supplied against what the bytes gave."""
    if content_md5 is not None and content_md5 != staged.md5:
        raise BadDigest(
            f"content MD5 {content_md5} does not match the {staged.size} bytes received"
        )
    for algorithm, value in expect.items():
        if staged.checksums.get(algorithm) != value:
            raise BadDigest(
                f"checksum {algorithm} {value} does not match the {staged.size} bytes received"
            )


# Batch uploads: files up to SMALL_FILE bytes are read whole and stored
# BATCH_FILES at a time (one intent transaction, one encoding hop, one
# durable write per space), several batches at once while the request body
# is still arriving; at most BUFFERED_BYTES of them are held in memory.
SMALL_FILE = 1 << 20
BATCH_FILES = 256
BATCH_BYTES = 8 << 20
BATCHES_AT_ONCE = 2
BUFFERED_BYTES = 64 << 20


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
        spaces: Sequence[UserSpace] | None,
        checksums: Collection[ChecksumAlgorithm] = (),
    ) -> None:
        self.store = store
        self.user_id = user_id
        self.policy = policy
        self.affinity = affinity
        self.spaces = spaces
        self.checksums = checksums
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
                self.user_id,
                _chain(head, stream),
                self.policy,
                self.affinity,
                self.spaces,
                checksums=self.checksums,
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
                self.user_id,
                [d for _, d in batch],
                self.policy,
                self.affinity,
                self.spaces,
                checksums=self.checksums,
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
        self.combiner = Combiner(db)

    # --- the one upload path --------------------------------------------------

    async def _target(
        self, user_id: int, pkg: Package, path: str | None = None
    ) -> tuple[Redundancy, ObjectInfo | None]:
        """The policy uploads to ``pkg`` get (its own, else its bucket's) and
        the object now at ``path`` (if one is given). No query when the
        package record already knows its policy and no path is asked for;
        the user's spaces are loaded by the store only if something goes to
        them (not for inline objects). The commit checks again that the
        package still exists."""
        if pkg.upload_policy is not None and path is None:
            return pkg.upload_policy, None
        current = None
        async with self.db.read() as conn:
            found = await catalog.package_policy(conn, user_id, pkg.package_id)
            if path is not None:
                current = await catalog.get_object_by_path(conn, pkg.package_id, path)
        if found is None:
            raise PackageNotFound(f"package {pkg.package_id} not found")
        return found[1], current

    async def _stage_files(
        self,
        user_id: int,
        policy: Redundancy,
        affinity: int | None,
        spaces: Sequence[UserSpace] | None,
        files: AsyncIterator[tuple[str, AsyncIterator[bytes]]],
        checksums: Collection[ChecksumAlgorithm] = (),
    ) -> tuple[list[str], list[StagedLayout]]:
        """Store every file's bytes (not yet visible): small ones in batches
        while the next arrive, larger ones streamed (see ``_Stager``). On any
        failure — of a file, of the source, a cancellation — everything staged
        is removed before the error goes on."""
        stager = _Stager(self.store, user_id, policy, affinity, spaces, checksums)
        paths: list[str] = []
        try:
            async for path, stream in files:
                paths.append(path)
                await stager.add(stream)
            staged = await stager.finish()
        except BaseException:
            await finish(stager.abandon())
            raise
        return paths, staged

    async def _commit(
        self,
        package_id: int,
        policy: Redundancy,
        staged: Sequence[StagedLayout],
        items: Sequence[catalog.NewContent],
        *,
        conditions: Conditions = NO_CONDITIONS,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> builtins.list[ObjectInfo]:
        """Make staged files visible in one transaction, under the package's
        path lock; ``conditions`` are evaluated there against each path's
        current object. If the transaction does not commit (a precondition,
        ``before_commit`` raising, a cancellation...), the staged blocks go."""

        async def commit() -> list[ObjectInfo]:
            async with self.db.write() as conn:
                if not await catalog.lock_package_paths(conn, package_id):
                    raise PackageNotFound(f"package {package_id} not found")
                if before_commit is not None:
                    await before_commit()
                for it in items:
                    current = await catalog.get_object_by_path(conn, package_id, it.path)
                    check_write_conditions(current, conditions)
                return await write_contents(conn, package_id, policy, staged, items)

        # Without conditions, uploads into one package commit together.
        committing = (
            self.combiner.submit(package_id, policy, staged, items, before_commit)
            if conditions.empty
            else asyncio.ensure_future(commit())
        )
        try:
            # Shielded: once the transaction runs, its outcome decides the
            # clean-up (a commit that went through keeps its blocks).
            return await asyncio.shield(committing)
        except BaseException:
            await finish(self._settle(committing, staged))
            raise

    async def _settle(
        self, committing: asyncio.Future[builtins.list[ObjectInfo]], staged: Sequence[StagedLayout]
    ) -> None:
        await asyncio.wait([committing])
        if not committing.cancelled() and committing.exception() is None:
            return  # committed after all (the caller was cancelled meanwhile)
        # Failed, or cancelled: the commit may still have gone through (a
        # cancelled combined commit whose group commit ended; ``NotDurable``),
        # and then its objects read these blocks, which ``discard`` keeps.
        await self.store.discard(staged)

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
        default, current = await self._target(principal.user_id, pkg, path if conditional else None)
        policy = override or default
        if conditional:
            # Refuse early, before any byte is read; the commit checks again.
            check_write_conditions(current, cmd.conditions)
        wanted = frozenset(expect) | frozenset(ChecksumAlgorithm(a) for a in cmd.compute)

        async def one() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
            yield path, cmd.body

        _, staged = await self._stage_files(
            principal.user_id, policy, cmd.affinity, None, one(), wanted
        )
        (st,) = staged
        try:
            check_payload(st, cmd.payload_sha256)
            _verify(st, {**expect, **trailing_checksums(cmd.trailer)}, md5)
        except BadArgument:  # a digest that does not match (or a malformed trailer)
            await finish(self.store.discard(staged))
            raise
        item = catalog.NewContent(
            path, st.size, ContentHash(st.sha256), st.md5, [(0, st.layout_id)], meta, st.checksums
        )
        (info,) = await self._commit(
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
            part = _part_of(content, cmd.part_number)
            ranged = part.multipart and part.length > 0
            offset, length = (part.offset, part.length) if ranged else (0, content.info.size)
            body = self.store.read(content, offset, length)
            return Download(content.info, offset, length, body, partial=ranged, part=part)
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
        self, principal: Principal, cmd: CopyObject, *, path_free: bool = False
    ) -> ObjectInfo:
        """``copy``; ``path_free``: the destination path must not be taken
        even by an unfinished upload's placeholder (the JCS clone rule)."""
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
        if same and given is None and redirect is None:
            raise BadArgument(
                "copying an object onto itself must replace its metadata, its tags "
                "or its website redirect location"
            )
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
            check_source_conditions(src, cmd.source_conditions)
            if path_free or not cmd.conditions.empty:
                current = await catalog.get_object_by_path(
                    conn, dst_pkg.package_id, dst_path, include_uncommitted=path_free
                )
                if path_free and current is not None:
                    raise AlreadyExists(
                        f"{_where(cmd.dest.package, dst_pkg, dst_path)} is already taken"
                    )
                check_write_conditions(current, cmd.conditions)
            base = src.meta if copy_meta or given is None else given
            base = dataclasses.replace(base, website_redirect_location=redirect)
            tags = src.meta.tags if copy_tags or given is None else given.tags
            refs = await catalog.part_refs(conn, src.object_id)
            return await catalog.commit_object(
                conn,
                dst_pkg.package_id,
                dst_path,
                size=src.size,
                file_hash=src.file_hash,
                etag=src.etag,
                policy=src.redundancy,
                parts=[(r.offset, r.layout_id) for r in refs],
                ts=now(),
                meta=dataclasses.replace(base, tags=tags),
                checksums=src.checksums,
                part_checksums=[r.checksums for r in refs],
            )

    async def list(self, principal: Principal, cmd: ListObjects) -> Listing:
        """Objects under ``cmd.prefix`` in path order, those sharing a part up
        to ``cmd.delimiter`` rolled up into common prefixes; a key restricted
        to some paths sees only what its caveats reach."""
        return Listing(*await self._list(principal, cmd, catalog.list_objects))

    async def list_brief(self, principal: Principal, cmd: ListObjects) -> BriefListing:
        """``list`` showing only path, size, ETag, update time and checksums
        of each object (S3's listings): several times cheaper per object."""
        return BriefListing(*await self._list(principal, cmd, catalog.list_listed))

    async def _list(
        self, principal: Principal, cmd: ListObjects, fetch: Fetch[E]
    ) -> tuple[builtins.list[str], builtins.list[E], str | None]:
        prefix = key_prefix(cmd.prefix)
        if cmd.max_keys < 0:
            raise BadArgument("max_keys must not be negative")
        pkg = await self.packages.resolve(principal, cmd.package, Operation.LIST, prefix or "")
        if prefix is None:
            return [], [], None  # no key begins with it
        after: str | None = cmd.start_after
        inclusive = False
        if after is not None and cmd.after_prefix:
            after, inclusive = _past(after)
        if cmd.continuation:
            after, inclusive = _decode_token(cmd.continuation, "continuation")
        if cmd.max_keys == 0:
            return [], [], None
        async with self.db.read() as conn:
            return await self._scan(
                conn,
                principal,
                pkg,
                prefix,
                cmd.delimiter or None,
                after,
                inclusive,
                min(cmd.max_keys, MAX_KEYS),
                fetch,
            )

    async def _scan(
        self,
        conn: Any,
        principal: Principal | None,
        pkg: Package,
        prefix: str,
        delimiter: str | None,
        after: str | None,
        inclusive: bool,
        max_keys: int,
        fetch: Fetch[E],
    ) -> tuple[builtins.list[str], builtins.list[E], str | None]:
        """One page of a listing in the read snapshot ``conn``; ``principal``
        with caveats filters what is shown (None: show everything)."""
        restricted = principal if principal is not None and principal.caveats else None
        objs: builtins.list[E] = []
        prefixes: builtins.list[str] = []
        batch: Sequence[E] = ()
        while len(objs) + len(prefixes) < max_keys:
            room = max_keys - len(objs) - len(prefixes)
            # One row more than fits: it answers "is there more?" at the end.
            batch = await fetch(conn, pkg.package_id, prefix, after, room + 1, inclusive)
            if not batch:
                return prefixes, objs, None
            for obj in batch:
                if len(objs) + len(prefixes) == max_keys:
                    break
                rest = obj.path[len(prefix) :]
                if delimiter is not None and delimiter in rest:
                    common = prefix + rest.split(delimiter, 1)[0] + delimiter
                    if restricted is None or allows(
                        restricted,
                        Operation.LIST,
                        project_id=pkg.bucket_id,
                        package=pkg.name,
                        path=common,
                    ):
                        prefixes.append(common)
                    # Everything under ``common`` is skipped in one step.
                    after, inclusive = _past(common)
                    break
                if restricted is None or visible(restricted, pkg.name, obj.path):
                    objs.append(obj)
                after, inclusive = obj.path, False
        last = batch[-1].path
        if after is not None and (last > after or (inclusive and last == after)):
            more: Sequence[E] = batch  # a fetched row lies past the page
        else:
            more = await fetch(conn, pkg.package_id, prefix, after, 1, inclusive)
        next_token = _encode_token(after, inclusive) if more and after is not None else None
        return prefixes, objs, next_token

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

    async def part_range(
        self,
        principal: Principal,
        address: ObjectAddress,
        part_number: int,
        conditions: Conditions = NO_CONDITIONS,
    ) -> PartRange:
        """Where part ``part_number`` (1-based) of the object lies, and how
        many parts it has. An object completed from N uploaded parts (its
        ETag ``<md5>-N``) keeps their boundaries: each part is one layout;
        any other object is one part, the whole of it. ``InvalidRange`` for
        a part beyond the last; preconditions as ``head``."""
        content = await self._open(principal, address, conditions)
        return _part_of(content, part_number)

    async def attributes(
        self, principal: Principal, address: ObjectAddress, conditions: Conditions = NO_CONDITIONS
    ) -> ObjectAttributes:
        """The object's record and the sizes of the parts it was completed
        from (each part is one layout: see ``part_range``); preconditions as
        ``head``."""
        content = await self._open(principal, address, conditions)
        sizes = _part_sizes(content)
        return ObjectAttributes(
            content.info, sizes, None if sizes is None else _part_checksums(content)
        )

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
    ) -> builtins.list[ObjectInfo]:
        """Store every file, then commit all of them in one transaction.

        Small files are read whole and stored in batches while the next ones
        arrive (see ``_Stager``); larger ones stream. ``before_commit`` is
        awaited inside the commit transaction, just before anything is
        written: it raises to abandon the upload (e.g. the client went away).
        On any failure every staged block is removed and nothing is visible."""
        override = optional_policy(redundancy)
        pkg = await self.packages.resolve(principal, PackageRef.by_id(package_id), Operation.WRITE)
        default, _ = await self._target(principal.user_id, pkg)
        policy = override or default

        async def checked() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
            seen: set[str] = set()
            async for raw_path, stream in files:
                path = object_path(raw_path, "file name")
                if path in seen:
                    raise BadArgument(f"path {path!r} appears twice in one upload")
                seen.add(path)
                authorize(
                    principal,
                    Operation.WRITE,
                    project_id=pkg.bucket_id,
                    package=pkg.name,
                    path=path,
                )
                yield path, stream

        paths, staged = await self._stage_files(
            principal.user_id, policy, affinity, None, checked()
        )
        if not paths:
            raise BadArgument("the upload has no 'files' part")
        items = [
            catalog.NewContent(path, st.size, ContentHash(st.sha256), st.md5, [(0, st.layout_id)])
            for path, st in zip(paths, staged, strict=True)
        ]
        return await self._commit(
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

    async def list_by_path(
        self,
        principal: Principal,
        package_id: int,
        path: str,
        *,
        is_prefix: bool,
        no_recursive: bool,
        token: str | None = None,
        max_keys: int = MAX_KEYS,
    ) -> EntryListing:
        """JCS: one object (``is_prefix`` false) or a page of those under a
        prefix; a key restricted to some paths sees only what they reach."""
        pkg = await self.packages.resolve(principal, PackageRef.by_id(package_id), Operation.LIST)
        if not 1 <= max_keys <= MAX_KEYS:
            raise BadArgument.about("max keys", f"must be between 1 and {MAX_KEYS}")

        def may_list(at: str) -> None:
            authorize(
                principal, Operation.LIST, project_id=pkg.bucket_id, package=pkg.name, path=at
            )

        if not is_prefix:
            exact = object_path(path)
            may_list(exact)
            async with self.db.read() as conn:
                one = await catalog.get_object_by_path(conn, package_id, exact)
            if one is None or not visible(principal, pkg.name, one.path):
                return EntryListing([], [], None)
            return EntryListing([], [ObjectEntry.of(one)], None)
        prefix = path_prefix(path)
        may_list(prefix)
        after, inclusive = _decode_token(token, "continuation token") if token else (None, False)
        delimiter = "/" if no_recursive else None
        async with self.db.read() as conn:
            return EntryListing(
                *await self._scan(
                    conn,
                    principal,
                    pkg,
                    prefix,
                    delimiter,
                    after,
                    inclusive,
                    max_keys,
                    catalog.list_entries,
                )
            )

    async def package_objects(
        self, principal: Principal, package_id: int
    ) -> builtins.list[ObjectInfo]:
        pkg = await self.packages.get(principal, package_id, Operation.LIST)
        out: list[ObjectInfo] = []
        async with self.db.read() as conn:
            after: str | None = None
            while batch := await catalog.list_objects(conn, package_id, "", after, 1000):
                out += [o for o in batch if visible(principal, pkg.name, o.path)]
                after = batch[-1].path
        return out

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
                if restricted:  # moving takes the object away and writes it anew
                    await self._may(
                        principal, await self.get_by_id(principal, object_id), Operation.DELETE
                    )
                    await self.packages.resolve(
                        principal, PackageRef.by_id(package_id), Operation.WRITE, path
                    )
                async with self.db.write() as conn:
                    if await catalog.get_object(conn, user_id, object_id) is None:
                        raise ObjectNotFound(f"object {object_id} not found")
                    if await catalog.get_package(conn, user_id, package_id) is None:
                        raise PackageNotFound(f"package {package_id} not found")
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
        if principal.project_id is not None or principal.caveats:
            async with self.db.read() as conn:
                seen = await catalog.objects_by_ids(conn, principal.user_id, object_ids)
            for info in seen.values():
                await self._may(principal, info, Operation.DELETE)
        async with self.db.write() as conn:
            found = await catalog.objects_by_ids(conn, principal.user_id, object_ids)
            missing = [i for i in object_ids if i not in found]
            if missing:
                raise ObjectNotFound(f"objects not found: {', '.join(map(str, missing))}")
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
                out.append(await self._copy(principal, cmd, path_free=True))
            except (NotFound, AlreadyExists, Conflict, PreconditionFailed, AccessDenied):
                out.append(None)
        return out
