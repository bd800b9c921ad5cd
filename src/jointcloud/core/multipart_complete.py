"""Completing a multipart upload: the completion list checked against the
parts stored (order, ETags, checksums, sizes), then one transaction makes
the chosen parts, in order, the object at the upload's path, with the
object's ETag, content hash and checksums computed from the parts'; parts
not listed go with the upload. Only metadata is written: the object
references the part layouts, so no byte is copied.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jointcloud.core.commands import (
    ChecksumAlgorithm,
    Conditions,
    check_checksum,
    check_write_conditions,
    checksum_of,
)
from jointcloud.core.models import ContentHash, ObjectInfo, Package
from jointcloud.core.multipart_model import (
    CompletedPart,
    PartRules,
    check_part_number,
    composite_algorithm,
    match_upload,
    parts_phrase,
)
from jointcloud.errors import (
    BadArgument,
    BadDigest,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    PackageNotFound,
    PartChecksumMissing,
)
from jointcloud.meta import catalog, layouts, uploads
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.meta.uploads import PartRecord
from jointcloud.redundancy.stream import combine_checksums


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


def _composite(algorithm: ChecksumAlgorithm, part_values: Sequence[str]) -> str:
    """S3's checksum of a multipart object: the checksum of the concatenated
    part checksums, '-N'."""
    joined = b"".join(base64.b64decode(v) for v in part_values)
    return f"{checksum_of(algorithm, joined)}-{len(part_values)}"


def check_completion(
    parts: Sequence[CompletedPart | tuple[int, str | None, Mapping[ChecksumAlgorithm, str]]],
    rules: PartRules,
) -> list[CompletedPart]:
    """The completion list on its own, before any upload is looked up: at
    least one part, numbers in range, ascending (or no repeats) as ``rules``
    ask, checksums well formed."""
    listed = [CompletedPart(*p) for p in parts]
    numbers = [p.part_number for p in listed]
    if not listed:
        raise BadArgument("the completion must list at least one part")
    for n in numbers:
        check_part_number(n, rules)
    if rules.ascending:
        for a, b in itertools.pairwise(numbers):
            if b <= a:
                raise InvalidPartOrder(f"parts must be listed in ascending order: {b} follows {a}")
    elif len(set(numbers)) != len(numbers):
        raise BadArgument("the completion must not list a part twice")
    for p in listed:
        for name, value in p.checksums.items():
            check_checksum(ChecksumAlgorithm(name), value)
    return listed


async def complete_upload(
    db: Database,
    pkg: Package,
    path: str,
    upload_id: str,
    listed: Sequence[CompletedPart],
    conditions: Conditions,
    *,
    rules: PartRules,
    expect: Mapping[ChecksumAlgorithm, str] | None,
    min_part_size: int,
) -> ObjectInfo:
    """Commit upload ``upload_id`` of ``path`` in ``pkg`` with the parts
    ``listed`` (checked by :func:`check_completion`), as
    ``MultipartService.complete`` describes."""
    async with db.write() as conn:
        if not await catalog.lock_package_paths(conn, pkg.package_id):
            raise PackageNotFound(f"package {pkg.package_id} not found")
        found = await uploads.get(conn, upload_id, lock=True)
        if found is None and rules.check_etags:
            done_before = await _completed_before(conn, pkg.package_id, path, listed)
            if done_before is not None:
                _check_expected(expect, done_before.checksums)
                return done_before
        rec = match_upload(found, upload_id, pkg, path)
        if (composite := composite_algorithm(rec, rules)) is not None:
            _require_listed_checksums(listed, composite)
        stored = await uploads.parts(conn, rec.row_id)
        chosen = choose_parts(listed, stored, rules, min_part_size)
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


def _require_listed_checksums(
    listed: Sequence[CompletedPart], algorithm: ChecksumAlgorithm
) -> None:
    """As AWS: a COMPOSITE upload's value is made of its parts', so the
    completion must name each part's (the client's word for what it sent),
    and one without them is refused rather than completed unchecked."""
    for part in listed:
        if algorithm not in part.checksums:
            name = algorithm.value.lower()
            raise PartChecksumMissing(
                f"The upload was created using a {name} checksum. The complete request "
                f"must include the checksum for each part. It was missing for part "
                f"{part.part_number} in the request."
            )


def choose_parts(
    listed: Sequence[CompletedPart],
    stored: Mapping[int, PartRecord],
    rules: PartRules,
    min_part_size: int,
) -> list[PartRecord]:
    """The stored parts the completion lists, in its order, checked against
    what it says of them (ETags, checksums) and, under ``rules``, their sizes."""
    missing = [p.part_number for p in listed if p.part_number not in stored]
    if missing:
        raise InvalidPart(f"{parts_phrase(missing)} not uploaded")
    chosen = [stored[p.part_number] for p in listed]
    for want, have in zip(listed, chosen, strict=True):
        if rules.check_etags:
            if want.etag is None:
                raise InvalidPart(f"part {have.part_number}: no ETag given")
            if want.etag.strip().strip('"').lower() != have.md5:
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
            if part.size < min_part_size:
                raise EntityTooSmall(
                    f"part {part.part_number} is {part.size} bytes; every part but the "
                    f"last must be at least {min_part_size} bytes"
                )
    return chosen
