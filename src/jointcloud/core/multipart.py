"""Multipart uploads: S3-grade, with the JCS v1 three-step upload on top.

An upload is an entity of its own with an opaque random id; several may be in
flight for one path. Parts are stored as their own layouts as they arrive (a
part copy reads a range of an existing object and stores it again, all on the
server); completing an upload only writes metadata — the object references
the part layouts in order — so no byte is copied. Until completion a new
object stays invisible, and an existing object keeps serving its old content.

What differs between protocols is a ``PartRules`` option, not a second
implementation: S3 numbers parts 1–10000 and checks the completion list
(ascending, matching ETags, every part but the last at least the minimum
size); a JCS v1 upload numbers them 0–100000, completes them in any order
and checks neither. A JCS upload is linked to an object (an invisible
placeholder, or the object it overwrites) and addressed by that object's id
(``new_linked``, ``upload_part_linked``, ``complete_linked``).

Where it lives: the entities and ``PartRules`` are in
:mod:`~jointcloud.core.multipart_model`, completion (the list checked, the
object committed, its ETag and checksums made of the parts') in
:mod:`~jointcloud.core.multipart_complete`; this module is the service
(begin, store and copy parts, list, abort, complete, JCS linked uploads) and
re-exports the names callers use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

from jointcloud.core.authz import Operation, Principal, path_prefixes, visible
from jointcloud.core.background import finish
from jointcloud.core.blockstore import BlockStore
from jointcloud.core.buckets import PackageService
from jointcloud.core.commands import (
    NO_CONDITIONS,
    NO_META,
    ByteRange,
    ChecksumAlgorithm,
    Conditions,
    ObjectAddress,
    ObjectMeta,
    PackageRef,
    Trailer,
    check_checksum,
    check_content_md5,
    check_meta,
    check_payload,
    check_source_conditions,
    check_write_conditions,
    resolve_range,
    trailing_checksums,
)
from jointcloud.core.listing import in_region, skip_to
from jointcloud.core.models import ObjectInfo, Package, StagedLayout
from jointcloud.core.multipart_complete import (
    check_completion,
    complete_upload,
    composite_etag,
    composite_hash,
)
from jointcloud.core.multipart_model import (
    DEFAULT_MIN_PART_SIZE,
    EMPTY,
    JCS_RULES,
    MAX_PAGE,
    MAX_PART_INDEX,
    MAX_PART_NUMBER,
    MAX_PART_SIZE,
    S3_RULES,
    UPLOAD_ID_BYTES,
    CompletedPart,
    Part,
    PartRules,
    PartsPage,
    Upload,
    UploadsPage,
    check_part_number,
    composite_algorithm,
    match_upload,
    new_upload_id,
    to_part,
    to_upload,
)
from jointcloud.core.paths import key_prefix, object_key
from jointcloud.core.uploads import UploadSlots
from jointcloud.errors import (
    BadArgument,
    BadDigest,
    ChecksumTypeMismatch,
    EntityTooLarge,
    NotFound,
    ObjectNotFound,
    OutOfScope,
    PackageNotFound,
    UploadNotFound,
)
from jointcloud.meta import catalog, layouts, uploads
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.meta.uploads import UploadRecord
from jointcloud.redundancy.stream import COPY_READ_AHEAD
from jointcloud.redundancy.stream import FULL_OBJECT_CHECKSUMS as FULL_OBJECT_CHECKSUMS

__all__ = [
    "DEFAULT_MIN_PART_SIZE",
    "EMPTY",
    "FULL_OBJECT_CHECKSUMS",
    "JCS_RULES",
    "MAX_PAGE",
    "MAX_PART_INDEX",
    "MAX_PART_NUMBER",
    "MAX_PART_SIZE",
    "S3_RULES",
    "UPLOAD_ID_BYTES",
    "CompletedPart",
    "MultipartService",
    "Part",
    "PartRules",
    "PartsPage",
    "Upload",
    "UploadsPage",
    "composite_etag",
    "composite_hash",
    "new_upload_id",
]


# --- checksums, sizes ------------------------------------------------------------


def _verify(
    staged: StagedLayout, expect: Mapping[ChecksumAlgorithm, str], content_md5: str | None
) -> None:
    """The digests a client supplied against what the part's bytes gave."""
    if content_md5 is not None and content_md5 != staged.md5:
        raise BadDigest(f"content MD5 {content_md5} does not match the part's {staged.size} bytes")
    for algorithm, value in expect.items():
        if staged.checksums.get(algorithm) != value:
            raise BadDigest(
                f"checksum {algorithm} {value} does not match the part's {staged.size} bytes"
            )


async def _limited(source: AsyncIterator[bytes], limit: int | None) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in source:
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise EntityTooLarge(f"a part may hold at most {limit} bytes")
        yield chunk


# --- the service ----------------------------------------------------------------


class MultipartService:
    def __init__(
        self,
        db: Database,
        packages: PackageService,
        store: BlockStore,
        *,
        min_part_size: int = DEFAULT_MIN_PART_SIZE,
        slots: UploadSlots | None = None,
    ) -> None:
        self.db = db
        self.packages = packages
        self.store = store
        self.min_part_size = min_part_size
        # A part being stored is an upload in progress of its user (shared
        # with ObjectService's PUTs and uploads; UploadSlots).
        self.slots = slots if slots is not None else UploadSlots()

    # -- addressing ---------------------------------------------------------

    async def _address(
        self, principal: Principal, address: ObjectAddress, op: Operation
    ) -> tuple[Package, str]:
        path = object_key(address.path)
        return await self.packages.resolve(principal, address.package, op, path), path

    async def _find(self, upload_id: str, pkg: Package, path: str) -> UploadRecord:
        if not isinstance(upload_id, str) or not upload_id or len(upload_id) > 128:
            raise UploadNotFound(f"no multipart upload {upload_id!r}", name=str(upload_id))
        async with self.db.read() as conn:
            return match_upload(await uploads.get(conn, upload_id), upload_id, pkg, path)

    # -- S3-grade uploads ---------------------------------------------------

    async def create(
        self,
        principal: Principal,
        address: ObjectAddress,
        meta: ObjectMeta = NO_META,
        checksum_algorithm: ChecksumAlgorithm | None = None,
        conditions: Conditions = NO_CONDITIONS,
        *,
        full_object: bool = False,
    ) -> Upload:
        """Begin an upload to ``address``; ``meta`` and the checksum algorithm
        (computed for every part, and for the object on completion) are kept
        for the object. ``conditions`` are checked against the object there
        now (completion checks its own). ``full_object``: the object's
        checksum is a CRC of all its bytes, combined from the parts' CRCs."""
        meta = check_meta(meta)
        if checksum_algorithm is not None:
            checksum_algorithm = ChecksumAlgorithm(checksum_algorithm)
        if full_object and checksum_algorithm not in FULL_OBJECT_CHECKSUMS:
            raise BadArgument(
                f"a full-object checksum is a CRC ({', '.join(sorted(FULL_OBJECT_CHECKSUMS))}), "
                f"not {checksum_algorithm or 'none'}"
            )
        pkg, path = await self._address(principal, address, Operation.WRITE)
        _, policy = await self.packages.effective_policy(principal, pkg.package_id)
        async with self.db.write() as conn:
            if not conditions.empty:
                current = await catalog.get_object_by_path(conn, pkg.package_id, path)
                check_write_conditions(current, conditions)
            rec = await uploads.create(
                conn,
                upload_id=new_upload_id(),
                package_id=pkg.package_id,
                path=path,
                policy=policy,
                meta=meta,
                checksum_algorithm=checksum_algorithm,
                object_id=None,
                ts=now(),
                full_object=full_object,
            )
        return to_upload(rec)

    async def upload_part(
        self,
        principal: Principal,
        upload_id: str,
        address: ObjectAddress,
        part_number: int,
        body: AsyncIterator[bytes],
        *,
        checksums: Mapping[ChecksumAlgorithm, str] = EMPTY,
        content_md5: str | None = None,
        rules: PartRules = S3_RULES,
        trailer: Trailer | None = None,
        compute: frozenset[ChecksumAlgorithm] = frozenset(),
        payload_sha256: str | None = None,
    ) -> Part:
        """Store part ``part_number`` (replacing a part with that number).
        ``checksums`` (base64), those of ``trailer`` (sent after the body;
        their algorithms in ``compute``) and ``content_md5`` (hex) are
        verified against the bytes, and ``payload_sha256`` as ``PutObject``'s:
        a mismatch stores nothing."""
        check_part_number(part_number, rules)
        expect = {
            ChecksumAlgorithm(a): check_checksum(ChecksumAlgorithm(a), v)
            for a, v in checksums.items()
        }
        md5 = None if content_md5 is None else check_content_md5(content_md5)
        pkg, path = await self._address(principal, address, Operation.WRITE)
        rec = await self._find(upload_id, pkg, path)
        own = rec.checksum_algorithm
        sent = set(expect) | (set(compute) if trailer is not None else set())
        if not sent and (composite := composite_algorithm(rec, rules)) is not None:
            # As S3: a COMPOSITE value is made of the parts' values as their
            # clients computed them, so a part must come with its own.
            raise ChecksumTypeMismatch(
                "Checksum Type mismatch occurred, expected checksum Type: "
                f"{composite.value.lower()}, actual checksum Type: null"
            )
        if own is not None and sent - {own}:
            # As S3: the parts of an upload are checked with its algorithm
            # (its COMPOSITE or FULL_OBJECT value is made of theirs).
            other = min(a.value.lower() for a in sent - {own})
            raise ChecksumTypeMismatch(
                "Checksum Type mismatch occurred, expected checksum Type: "
                f"{own.value.lower()}, actual checksum Type: {other}"
            )
        return await self._store_part(
            principal,
            rec,
            part_number,
            body,
            expect=expect,
            content_md5=md5,
            limit=rules.max_part_size,
            trailer=trailer,
            compute=compute,
            payload_sha256=payload_sha256,
        )

    async def upload_part_copy(
        self,
        principal: Principal,
        upload_id: str,
        address: ObjectAddress,
        part_number: int,
        source: ObjectAddress,
        range: ByteRange | None = None,
        source_conditions: Conditions = NO_CONDITIONS,
        *,
        rules: PartRules = S3_RULES,
    ) -> Part:
        """Store part ``part_number`` from a byte range of an existing object:
        the server reads the source's blocks and stores the bytes again under
        the upload's policy; nothing passes through the client."""
        check_part_number(part_number, rules)
        pkg, path = await self._address(principal, address, Operation.WRITE)
        src_path = object_key(source.path, "copy source path")
        src_pkg = await self.packages.resolve(principal, source.package, Operation.READ, src_path)
        rec = await self._find(upload_id, pkg, path)
        async with self.db.read() as conn:
            content = await catalog.open_by_path(conn, src_pkg.package_id, src_path)
        if content is None:
            raise ObjectNotFound(
                f"no object at path {src_path!r} in package {src_pkg.name!r}", name=src_path
            )
        info = content.info
        check_source_conditions(info, source_conditions)
        offset, length = resolve_range(range, info.size)
        if rules.max_part_size is not None and length > rules.max_part_size:
            raise EntityTooLarge(f"a part may hold at most {rules.max_part_size} bytes")
        return await self._store_part(
            principal,
            rec,
            part_number,
            self.store.read(content, offset, length, read_ahead=COPY_READ_AHEAD),
        )

    async def _store_part(
        self,
        principal: Principal,
        rec: UploadRecord,
        part_number: int,
        body: AsyncIterator[bytes],
        *,
        expect: Mapping[ChecksumAlgorithm, str] = EMPTY,
        content_md5: str | None = None,
        limit: int | None = None,
        trailer: Trailer | None = None,
        compute: frozenset[ChecksumAlgorithm] = frozenset(),
        payload_sha256: str | None = None,
    ) -> Part:
        wanted = set(expect) | set(compute)
        if rec.checksum_algorithm is not None:
            wanted.add(rec.checksum_algorithm)
        with self.slots.take(principal.user_id):  # before any byte is read
            staged = await self.store.stage(
                principal.user_id, _limited(body, limit), rec.policy, checksums=wanted
            )
        computed = dict(staged.checksums)
        try:
            check_payload(staged, payload_sha256)
            _verify(staged, {**expect, **trailing_checksums(trailer)}, content_md5)
        except BaseException:
            await finish(self.store.discard([staged]))
            raise

        async def commit() -> Part:
            ts = now()
            async with self.db.write() as conn:
                if await uploads.get_row(conn, rec.row_id, lock=True) is None:
                    raise UploadNotFound(
                        f"multipart upload {rec.upload_id!r} ended while its part was stored"
                    )
                await layouts.activate(conn, staged)
                old = await uploads.put_part(
                    conn,
                    rec.row_id,
                    part_number,
                    layout_id=staged.layout_id,
                    size=staged.size,
                    md5=staged.md5,
                    sha256=staged.sha256,
                    checksums=computed,
                    ts=ts,
                )
                await layouts.release_unreferenced(conn, [] if old is None else [old])
            return Part(part_number, staged.md5, staged.size, computed, ts)

        committing = asyncio.ensure_future(commit())
        try:
            # Shielded: once the transaction runs, its outcome decides the
            # clean-up (a part that was recorded keeps its blocks).
            return await asyncio.shield(committing)
        except BaseException:
            await finish(self.store.settle(committing, [staged]))
            raise

    async def list_parts(
        self,
        principal: Principal,
        upload_id: str,
        address: ObjectAddress,
        marker: int | None = None,
        max_parts: int = MAX_PAGE,
    ) -> PartsPage:
        """The parts above ``marker``, in order, at most ``max_parts``."""
        if not 1 <= max_parts <= MAX_PAGE:
            raise BadArgument(f"max parts must be between 1 and {MAX_PAGE}")
        if marker is not None and marker < 0:
            raise BadArgument("the part number marker must not be negative")
        pkg, path = await self._address(principal, address, Operation.LIST)
        async with self.db.read() as conn:
            rec = match_upload(await uploads.get(conn, upload_id), upload_id, pkg, path)
            rows = await uploads.part_page(conn, rec.row_id, marker, max_parts + 1)
            # PostgreSQL reads each statement in a snapshot of its own: an
            # upload completed or aborted between the two reads had no parts
            # left, and an empty list of a live upload was answered.
            match_upload(await uploads.get(conn, upload_id), upload_id, pkg, path)
        more = len(rows) > max_parts
        rows = rows[:max_parts]
        return PartsPage(
            to_upload(rec),
            [to_part(p) for p in rows],
            rows[-1].part_number if more else None,
        )

    async def list_uploads(
        self,
        principal: Principal,
        package: PackageRef,
        prefix: str = "",
        key_marker: str | None = None,
        upload_id_marker: str | None = None,
        max_uploads: int = MAX_PAGE,
    ) -> UploadsPage:
        """Uploads in progress under ``prefix``, ordered by path and then
        upload id, after the markers (``upload_id_marker`` counts only with
        ``key_marker``: uploads of that path with a greater id come first)."""
        if not 1 <= max_uploads <= MAX_PAGE:
            raise BadArgument(f"max uploads must be between 1 and {MAX_PAGE}")
        valid = key_prefix(prefix)
        pkg = await self.packages.resolve(principal, package, Operation.LIST, valid or None)
        if valid is None:
            return UploadsPage([], None, None)  # no key begins with it
        prefix = valid
        found: list[Upload] = []
        key, uid = key_marker, upload_id_marker if key_marker is not None else None
        mark = key, uid  # the last upload passed: where a next page starts
        # A key limited to some paths sees only the uploads there; the rows
        # between its regions are skipped unread (as listings skip them): it
        # read every upload of the package to find its few (found by review).
        regions = path_prefixes(principal, pkg.name) if principal.caveats else None
        truncated = False
        async with self.db.read() as conn:
            while not truncated:
                if regions is not None:
                    ahead = skip_to(regions, key, uid is not None)
                    if ahead is None:
                        break  # every region it may see is behind
                    if ahead[0] != key:
                        key, uid = ahead[0], ""  # from the region's start on
                batch = await uploads.page(conn, pkg.package_id, prefix, key, uid, MAX_PAGE)
                left = False  # a row past the key's region: skip_to goes on
                for rec in batch:
                    if len(found) == max_uploads:
                        truncated = True
                        break
                    if regions is not None and not in_region(regions, rec.path):
                        ahead = skip_to(regions, rec.path, True)
                        key, uid = (rec.path, rec.upload_id) if ahead is None else (ahead[0], "")
                        left = ahead is not None
                        break
                    key, uid = mark = rec.path, rec.upload_id
                    if visible(principal, pkg.name, rec.path):
                        found.append(to_upload(rec))
                if not left and len(batch) < MAX_PAGE:
                    break
        return UploadsPage(found, *(mark if truncated else (None, None)))

    async def abort(self, principal: Principal, upload_id: str, address: ObjectAddress) -> None:
        """End an upload: its parts go (GC removes their blocks), and so does
        the invisible placeholder object of a JCS upload."""
        pkg, path = await self._address(principal, address, Operation.WRITE)
        async with self.db.write() as conn:
            # The package's paths before the upload's row, as a completion
            # takes them (``abandon_upload`` needs the paths: the placeholder
            # may be becoming an object).
            await catalog.lock_package_paths(conn, pkg.package_id)
            rec = match_upload(await uploads.get(conn, upload_id, lock=True), upload_id, pkg, path)
            await catalog.abandon_upload(conn, None, upload=rec.row_id)

    async def complete(
        self,
        principal: Principal,
        upload_id: str,
        address: ObjectAddress,
        parts: Sequence[CompletedPart | tuple[int, str | None, Mapping[ChecksumAlgorithm, str]]],
        conditions: Conditions = NO_CONDITIONS,
        *,
        rules: PartRules = S3_RULES,
        expect: Mapping[ChecksumAlgorithm, str] | None = None,
    ) -> ObjectInfo:
        """Make the listed parts, in that order, the object at ``address``
        (the upload's metadata with it) and end the upload; parts not listed
        go. ``conditions`` are evaluated on the object there, in the commit
        transaction (If-None-Match ``*``: only if there is none). ``expect``:
        the object's checksums as the client computed them (the composite
        value, with or without its ``-N``): ``BadDigest`` unless they are the
        ones the parts make."""
        listed = check_completion(parts, rules)
        pkg, path = await self._address(principal, address, Operation.WRITE)
        return await complete_upload(
            self.db,
            pkg,
            path,
            upload_id,
            listed,
            conditions,
            rules=rules,
            expect=expect,
            min_part_size=self.min_part_size,
        )

    # -- uploads linked to an object (the JCS v1 three-step upload) ----------

    async def new_linked(self, principal: Principal, address: ObjectAddress) -> ObjectInfo:
        """Begin an upload linked to the object at ``address``: an invisible
        placeholder if there is none (the object id names the upload). An
        earlier linked upload of that object is discarded with its parts;
        other uploads of the path are not touched."""
        pkg, path = await self._address(principal, address, Operation.WRITE)
        _, policy = await self.packages.effective_policy(principal, pkg.package_id)
        async with self.db.write() as conn:
            if not await catalog.lock_package_paths(conn, pkg.package_id):
                raise PackageNotFound(f"package {pkg.package_id} not found")
            existing = await catalog.get_object_by_path(
                conn, pkg.package_id, path, include_uncommitted=True
            )
            if existing is None:
                object_id = await catalog.create_placeholder(conn, pkg.package_id, path, policy)
            else:
                object_id = existing.object_id
                # Starting over discards the parts of an earlier, unfinished upload.
                stale = await uploads.drop_for_object(conn, object_id)
                await layouts.release_unreferenced(conn, stale)
            await uploads.create(
                conn,
                upload_id=new_upload_id(),
                package_id=pkg.package_id,
                path=path,
                policy=policy,
                meta=None,
                checksum_algorithm=None,
                object_id=object_id,
                ts=now(),
            )
            info = await catalog.get_object(
                conn, principal.user_id, object_id, include_uncommitted=True
            )
        assert info is not None
        return info

    async def linked(
        self, principal: Principal, object_id: int, *, begin: bool = False
    ) -> Upload | None:
        """The upload linked to an object (following the object if it was
        moved); with ``begin``, one is begun if there is none (as parts could
        always be sent to any object)."""
        async with self.db.read() as conn:
            obj = await catalog.get_object(
                conn, principal.user_id, object_id, include_uncommitted=True
            )
            rec = None if obj is None else await uploads.for_object(conn, object_id)
        if obj is None:
            raise ObjectNotFound(f"object {object_id} not found")
        ref = PackageRef.by_id(obj.package_id)
        try:
            await self.packages.resolve(principal, ref, Operation.WRITE, obj.path)
        except (OutOfScope, NotFound):
            # Named by id only: a refusal must not tell its path or package.
            raise ObjectNotFound(f"object {object_id} not found") from None
        if rec is not None and (rec.package_id, rec.path) == (obj.package_id, obj.path):
            return to_upload(rec)
        if rec is None and not begin:
            return None
        _, policy = await self.packages.effective_policy(principal, obj.package_id)
        async with self.db.write() as conn:
            if not await catalog.lock_package_paths(conn, obj.package_id):
                raise ObjectNotFound(f"object {object_id} not found")
            obj = await catalog.get_object(
                conn, principal.user_id, object_id, include_uncommitted=True
            )
            if obj is None:
                raise ObjectNotFound(f"object {object_id} not found")
            rec = await uploads.for_object(conn, object_id, lock=True)
            if rec is None:
                if not begin:
                    return None
                rec = await uploads.create(
                    conn,
                    upload_id=new_upload_id(),
                    package_id=obj.package_id,
                    path=obj.path,
                    policy=policy,
                    meta=None,
                    checksum_algorithm=None,
                    object_id=object_id,
                    ts=now(),
                )
            elif (rec.package_id, rec.path) != (obj.package_id, obj.path):
                await uploads.retarget(conn, rec.row_id, obj.package_id, obj.path)
                rec = await uploads.get_row(conn, rec.row_id)
                assert rec is not None
        return to_upload(rec)

    async def upload_part_linked(
        self, principal: Principal, object_id: int, part_number: int, body: AsyncIterator[bytes]
    ) -> Part:
        """Store part ``part_number`` (0–100000) of the upload linked to an
        object (JCS ``uploadPart``)."""
        check_part_number(part_number, JCS_RULES)
        up = await self.linked(principal, object_id, begin=True)
        assert up is not None
        address = ObjectAddress(PackageRef.by_id(up.package_id), up.path)
        return await self.upload_part(
            principal, up.upload_id, address, part_number, body, rules=JCS_RULES
        )

    async def complete_linked(
        self, principal: Principal, object_id: int, part_numbers: Sequence[int]
    ) -> ObjectInfo:
        """Complete the upload linked to an object with its parts in the
        given order (JCS ``completeMultipartUpload``); the object keeps its id."""
        if not part_numbers:
            raise BadArgument("the completion must list at least one part")
        up = await self.linked(principal, object_id)
        if up is None:
            # Also what the losers of two completions racing hear: say that
            # there is no upload, not that their parts went missing (found
            # by fuzzing, 2026-12-06).
            raise BadArgument(
                f"object {object_id} has no multipart upload in progress "
                "(never begun, or already completed or aborted)"
            )
        address = ObjectAddress(PackageRef.by_id(up.package_id), up.path)
        return await self.complete(
            principal,
            up.upload_id,
            address,
            [CompletedPart(n) for n in part_numbers],
            rules=JCS_RULES,
        )
