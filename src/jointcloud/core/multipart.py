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
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from jointcloud.core.authz import Operation, Principal, visible
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
    checksum_of,
    resolve_range,
    trailing_checksums,
)
from jointcloud.core.models import ContentHash, ObjectInfo, Package, StagedLayout
from jointcloud.core.paths import key_prefix, object_key
from jointcloud.errors import (
    BadArgument,
    BadDigest,
    EntityTooLarge,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    NotFound,
    ObjectNotFound,
    OutOfScope,
    PackageNotFound,
    UploadNotFound,
)
from jointcloud.meta import catalog, layouts, uploads
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.meta.uploads import PartRecord, UploadRecord
from jointcloud.redundancy.policy import Redundancy
from jointcloud.redundancy.stream import COPY_READ_AHEAD, combine_checksums
from jointcloud.redundancy.stream import FULL_OBJECT_CHECKSUMS as FULL_OBJECT_CHECKSUMS

MAX_PART_INDEX = 100_000  # JCS v1 part indexes are 0..MAX_PART_INDEX
MAX_PART_NUMBER = 10_000  # S3 part numbers are 1..MAX_PART_NUMBER
DEFAULT_MIN_PART_SIZE = 5 * 1024 * 1024  # S3's (Settings.multipart_min_part_size)
MAX_PART_SIZE = 5 * 1024**3  # S3's
MAX_PAGE = 1000  # parts or uploads per listing page
UPLOAD_ID_BYTES = 32

EMPTY: Mapping[ChecksumAlgorithm, str] = MappingProxyType({})


@dataclass(frozen=True)
class PartRules:
    """What one protocol's multipart allows."""

    first_part: int = 1
    last_part: int = MAX_PART_NUMBER
    # The completion lists parts in ascending order (else: any order, no repeats).
    ascending: bool = True
    # Each listed part carries the ETag its upload answered, checked.
    check_etags: bool = True
    # Every part but the last is at least the service's ``min_part_size``.
    min_size: bool = True
    max_part_size: int | None = MAX_PART_SIZE


S3_RULES = PartRules()
JCS_RULES = PartRules(
    first_part=0,
    last_part=MAX_PART_INDEX,
    ascending=False,
    check_etags=False,
    min_size=False,
    max_part_size=None,
)


class CompletedPart(NamedTuple):
    """One entry of a completion list: the part, the ETag its upload answered
    (quotes allowed) and the checksums it answered (base64), if any."""

    part_number: int
    etag: str | None = None
    checksums: Mapping[ChecksumAlgorithm, str] = EMPTY


@dataclass(frozen=True)
class Upload:
    upload_id: str
    package_id: int
    path: str
    redundancy: Redundancy
    meta: ObjectMeta = field(hash=False)
    checksum_algorithm: ChecksumAlgorithm | None
    object_id: int | None  # the object a JCS upload is linked to
    create_time: datetime
    update_time: datetime
    # The object's checksum: a CRC of all its bytes (S3's FULL_OBJECT), not
    # a checksum of the parts' checksums (COMPOSITE, ``…-N``).
    full_object: bool = False


@dataclass(frozen=True)
class Part:
    part_number: int
    etag: str  # MD5 hex of the part's bytes
    size: int
    checksums: Mapping[ChecksumAlgorithm, str] = field(hash=False)  # base64
    update_time: datetime


@dataclass(frozen=True)
class PartsPage:
    upload: Upload
    parts: list[Part]
    next_marker: int | None  # the part number to resume after; None: the last page


@dataclass(frozen=True)
class UploadsPage:
    uploads: list[Upload]
    # Where the next page starts (None: this is the last page).
    next_key_marker: str | None
    next_upload_id_marker: str | None


def composite_hash(part_sha256: Sequence[str]) -> ContentHash:
    """SHA-256 over the parts' SHA-256 digests, marked composite."""
    digest = hashlib.sha256(b"".join(bytes.fromhex(h) for h in part_sha256)).hexdigest()
    return ContentHash(digest, composite=True)


def composite_etag(part_md5: Sequence[str]) -> str:
    """The S3 multipart ETag: MD5 of the concatenated part MD5s, '-N'."""
    digest = hashlib.md5(b"".join(bytes.fromhex(h) for h in part_md5)).hexdigest()
    return f"{digest}-{len(part_md5)}"


_MD5_HEX = re.compile(r"[0-9a-f]{32}")


def _check_expected(
    expect: Mapping[ChecksumAlgorithm, str] | None, made: Mapping[ChecksumAlgorithm, str]
) -> None:
    """The object's checksums as the client computed them (a composite one
    with or without its ``-N``) against those the parts made."""
    for wanted, value in (expect or {}).items():
        ours = made.get(wanted)
        if ours is None or value not in (ours, ours.rsplit("-", 1)[0]):
            raise BadDigest(
                f"checksum {wanted}: {value[:80]!r} is not the one of the parts "
                f"({ours or 'none was computed for this upload'})"
            )


async def _completed_before(
    conn: Any, package_id: int, path: str, listed: Sequence[CompletedPart]
) -> ObjectInfo | None:
    """A completion sent again after its answer was lost (an SDK retries):
    the upload is gone, but the object at ``path`` is the one these parts
    made (its ETag is theirs), so the answer is the same, as AWS gives it."""
    md5s = [(p.etag or "").strip().strip('"').lower() for p in listed]
    if not all(_MD5_HEX.fullmatch(m) for m in md5s):
        return None
    current = await catalog.get_object_by_path(conn, package_id, path)
    if current is None or current.etag != composite_etag(md5s):
        return None
    return current


# --- checksums, sizes ------------------------------------------------------------


def _composite(algorithm: ChecksumAlgorithm, part_values: Sequence[str]) -> str:
    """S3's checksum of a multipart object: the checksum of the concatenated
    part checksums, '-N'."""
    joined = b"".join(base64.b64decode(v) for v in part_values)
    return f"{checksum_of(algorithm, joined)}-{len(part_values)}"


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


def new_upload_id() -> str:
    """Random and opaque, letters and digits only: an id beginning with '-'
    reads as an option to command-line clients (aws s3api --upload-id)."""
    return secrets.token_bytes(UPLOAD_ID_BYTES).hex()


def _to_upload(rec: UploadRecord) -> Upload:
    return Upload(
        upload_id=rec.upload_id,
        package_id=rec.package_id,
        path=rec.path,
        redundancy=rec.policy,
        meta=rec.meta,
        checksum_algorithm=rec.checksum_algorithm,
        object_id=rec.object_id,
        create_time=rec.create_time,
        update_time=rec.update_time,
        full_object=rec.full_object,
    )


def _to_part(rec: PartRecord) -> Part:
    return Part(
        part_number=rec.part_number,
        etag=rec.md5,
        size=rec.size,
        checksums=dict(rec.checksums),
        update_time=rec.create_time,
    )


def _plural(numbers: Sequence[int]) -> str:
    listed = ", ".join(map(str, numbers))
    return f"part {listed} was" if len(numbers) == 1 else f"parts {listed} were"


class MultipartService:
    def __init__(
        self,
        db: Database,
        packages: PackageService,
        store: BlockStore,
        *,
        min_part_size: int = DEFAULT_MIN_PART_SIZE,
    ) -> None:
        self.db = db
        self.packages = packages
        self.store = store
        self.min_part_size = min_part_size

    # -- addressing ---------------------------------------------------------

    async def _address(
        self, principal: Principal, address: ObjectAddress, op: Operation
    ) -> tuple[Package, str]:
        path = object_key(address.path)
        return await self.packages.resolve(principal, address.package, op, path), path

    @staticmethod
    def _match(rec: UploadRecord | None, upload_id: str, pkg: Package, path: str) -> UploadRecord:
        # An upload of another package or path does not exist here (S3: NoSuchUpload).
        if rec is None or rec.package_id != pkg.package_id or rec.path != path:
            raise UploadNotFound(
                f"no multipart upload {upload_id!r} in progress for {path!r} "
                "(finished, aborted or never begun)",
                name=upload_id,
            )
        return rec

    async def _find(self, upload_id: str, pkg: Package, path: str) -> UploadRecord:
        if not isinstance(upload_id, str) or not upload_id or len(upload_id) > 128:
            raise UploadNotFound(f"no multipart upload {upload_id!r}", name=str(upload_id))
        async with self.db.read() as conn:
            return self._match(await uploads.get(conn, upload_id), upload_id, pkg, path)

    @staticmethod
    def _check_number(part_number: int, rules: PartRules) -> None:
        if (
            isinstance(part_number, bool)
            or not isinstance(part_number, int)
            or not rules.first_part <= part_number <= rules.last_part
        ):
            raise BadArgument(
                f"part number must be between {rules.first_part} and {rules.last_part}, "
                f"got {part_number!r}"
            )

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
        return _to_upload(rec)

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
        self._check_number(part_number, rules)
        expect = {
            ChecksumAlgorithm(a): check_checksum(ChecksumAlgorithm(a), v)
            for a, v in checksums.items()
        }
        md5 = None if content_md5 is None else check_content_md5(content_md5)
        pkg, path = await self._address(principal, address, Operation.WRITE)
        rec = await self._find(upload_id, pkg, path)
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
        self._check_number(part_number, rules)
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
            await finish(self._settle(committing, staged))
            raise

    async def _settle(self, committing: asyncio.Future[Part], staged: StagedLayout) -> None:
        await asyncio.wait([committing])
        if not committing.cancelled() and committing.exception() is None:
            return
        await self.store.discard([staged])

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
            rec = self._match(await uploads.get(conn, upload_id), upload_id, pkg, path)
            rows = await uploads.part_page(conn, rec.row_id, marker, max_parts + 1)
        more = len(rows) > max_parts
        rows = rows[:max_parts]
        return PartsPage(
            _to_upload(rec),
            [_to_part(p) for p in rows],
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
        truncated = False
        async with self.db.read() as conn:
            while not truncated:
                batch = await uploads.page(conn, pkg.package_id, prefix, key, uid, MAX_PAGE)
                for rec in batch:
                    if len(found) == max_uploads:
                        truncated = True
                        break
                    key, uid = rec.path, rec.upload_id
                    # A key limited to some paths sees only the uploads there.
                    if visible(principal, pkg.name, rec.path):
                        found.append(_to_upload(rec))
                if len(batch) < MAX_PAGE:
                    break
        return UploadsPage(found, key if truncated else None, uid if truncated else None)

    async def abort(self, principal: Principal, upload_id: str, address: ObjectAddress) -> None:
        """End an upload: its parts go (GC removes their blocks), and so does
        the invisible placeholder object of a JCS upload."""
        pkg, path = await self._address(principal, address, Operation.WRITE)
        async with self.db.write() as conn:
            rec = self._match(await uploads.get(conn, upload_id, lock=True), upload_id, pkg, path)
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
        listed = [CompletedPart(*p) for p in parts]
        numbers = [p.part_number for p in listed]
        if not listed:
            raise BadArgument("the completion must list at least one part")
        for n in numbers:
            self._check_number(n, rules)
        if rules.ascending:
            for a, b in itertools.pairwise(numbers):
                if b <= a:
                    raise InvalidPartOrder(
                        f"parts must be listed in ascending order: {b} follows {a}"
                    )
        elif len(set(numbers)) != len(numbers):
            raise BadArgument("the completion must not list a part twice")
        for p in listed:
            for name, value in p.checksums.items():
                check_checksum(ChecksumAlgorithm(name), value)
        pkg, path = await self._address(principal, address, Operation.WRITE)
        async with self.db.write() as conn:
            if not await catalog.lock_package_paths(conn, pkg.package_id):
                raise PackageNotFound(f"package {pkg.package_id} not found")
            found = await uploads.get(conn, upload_id, lock=True)
            if found is None and rules.check_etags:
                done_before = await _completed_before(conn, pkg.package_id, path, listed)
                if done_before is not None:
                    _check_expected(expect, done_before.checksums)
                    return done_before
            rec = self._match(found, upload_id, pkg, path)
            stored = await uploads.parts(conn, rec.row_id)
            chosen = self._chosen(listed, stored, rules)
            check_write_conditions(
                await catalog.get_object_by_path(conn, pkg.package_id, path), conditions
            )
            refs: list[tuple[int, int]] = []
            offset = 0
            for part in chosen:
                refs.append((offset, part.layout_id))
                offset += part.size
            checksums: dict[ChecksumAlgorithm, str] = {}
            part_checksums: list[dict[ChecksumAlgorithm, str]] | None = None
            algorithm = rec.checksum_algorithm
            if algorithm is not None and all(algorithm in p.checksums for p in chosen):
                # Each part keeps its own, of the upload's algorithm: S3 answers
                # it for a part read and in GetObjectAttributes.
                part_checksums = [{algorithm: p.checksums[algorithm]} for p in chosen]
                if rec.full_object:
                    checksums[algorithm] = combine_checksums(
                        algorithm, [(p.checksums[algorithm], p.size) for p in chosen]
                    )
                else:
                    checksums[algorithm] = _composite(
                        algorithm, [p.checksums[algorithm] for p in chosen]
                    )
            _check_expected(expect, checksums)
            done = await catalog.commit_object(
                conn,
                pkg.package_id,
                path,
                size=offset,
                file_hash=composite_hash([p.sha256 for p in chosen]),
                etag=composite_etag([p.md5 for p in chosen]),
                policy=rec.policy,
                parts=refs,
                ts=now(),
                meta=rec.meta,
                checksums=checksums,
                part_checksums=part_checksums,
            )
            # Parts not listed go with the upload.
            await layouts.release_unreferenced(conn, await uploads.drop(conn, [rec.row_id]))
        return done

    def _chosen(
        self, listed: Sequence[CompletedPart], stored: Mapping[int, PartRecord], rules: PartRules
    ) -> list[PartRecord]:
        missing = [p.part_number for p in listed if p.part_number not in stored]
        if missing:
            raise InvalidPart(f"{_plural(missing)} not uploaded")
        chosen = [stored[p.part_number] for p in listed]
        for want, have in zip(listed, chosen, strict=True):
            if rules.check_etags:
                etag = (want.etag or "").strip().strip('"').lower()
                if etag != have.md5:
                    raise InvalidPart(
                        f"part {have.part_number}: ETag {want.etag!r} does not match "
                        f"the uploaded part's {have.md5!r}"
                    )
            for algorithm, value in want.checksums.items():
                if have.checksums.get(ChecksumAlgorithm(algorithm)) != value:
                    raise InvalidPart(
                        f"part {have.part_number}: checksum {algorithm} does not match "
                        "the uploaded part's"
                    )
        if rules.min_size:
            for part in chosen[:-1]:
                if part.size < self.min_part_size:
                    raise EntityTooSmall(
                        f"part {part.part_number} is {part.size} bytes; every part but the "
                        f"last must be at least {self.min_part_size} bytes"
                    )
        return chosen

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
            return _to_upload(rec)
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
        return _to_upload(rec)

    async def upload_part_linked(
        self, principal: Principal, object_id: int, part_number: int, body: AsyncIterator[bytes]
    ) -> Part:
        """Store part ``part_number`` (0–100000) of the upload linked to an
        object (JCS ``uploadPart``)."""
        self._check_number(part_number, JCS_RULES)
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
            missing = sorted(set(part_numbers))
            raise InvalidPart(f"{_plural(missing)} not uploaded")
        address = ObjectAddress(PackageRef.by_id(up.package_id), up.path)
        return await self.complete(
            principal,
            up.upload_id,
            address,
            [CompletedPart(n) for n in part_numbers],
            rules=JCS_RULES,
        )
