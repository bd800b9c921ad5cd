"""Object operations: PutObject, GetObject, HeadObject, DeleteObject."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from jointcloud.api.common.http import (
    etag_list,
    http_date,
    parse_byte_range,
    parse_conditions,
    pieces,
)
from jointcloud.api.s3.app import op
from jointcloud.api.s3.errors import (
    InvalidArgumentS3,
    InvalidPartS3,
    InvalidRequestS3,
    InvalidURI,
    KeyTooLong,
    NotImplementedOp,
)
from jointcloud.api.s3.headers import (
    OVERRIDES,
    SSE,
    SSE_C_NOT_APPLICABLE,
    body_checks,
    check_read_encryption_headers,
    checksum_fields,
    content_md5,
    decimal,
    object_checksum_headers,
    object_headers,
    object_meta,
    part_checksum_headers,
    part_number,
)
from jointcloud.api.s3.metatext import has_control, plain_header
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.xmlio import Value, render
from jointcloud.core.commands import (
    ByteRange,
    Conditions,
    DeleteObject,
    GetObject,
    PutObject,
    resolve_range,
)
from jointcloud.core.models import ObjectInfo
from jointcloud.core.objects import PartRange
from jointcloud.core.paths import MAX_PATH, check_chars
from jointcloud.errors import BadArgument, InvalidRange

NOT_IMPLEMENTED_HEADER = "A header you provided implies functionality that is not implemented"
MAX_PUT = 5 * 1024**3  # a single PUT; larger objects are uploaded in parts (AWS)


def check_key(r: S3Request) -> None:
    try:
        raw = r.key.encode("utf-8")
        check_chars(r.key, "key", key=True)
    except (UnicodeEncodeError, BadArgument):  # not UTF-8, or a control character
        raise InvalidURI("Couldn't parse the specified URI.") from None
    if len(raw) > MAX_PATH:
        raise KeyTooLong("Your key is too long", MaxSizeAllowed=str(MAX_PATH))


def check_write_if_none_match(r: S3Request) -> None:
    """AWS's writes take ``If-None-Match: *`` only: an ETag there answers
    ``501 NotImplemented``, so no write is made on a condition AWS would
    not have evaluated."""
    tags = etag_list(r.header("if-none-match"))
    if tags and tags != ("*",):
        raise NotImplementedOp(NOT_IMPLEMENTED_HEADER, Header="If-None-Match")


@op("PutObject")
async def put_object(r: S3Request) -> Response:
    check_key(r)
    check_write_if_none_match(r)
    checks = body_checks(r, MAX_PUT)
    body, declared = r.stored_body()
    info = await r.ctx.objects.put(
        r.principal,
        PutObject(
            r.address,
            body,
            payload_sha256=declared,
            meta=object_meta(r),
            checksums=checks.given,
            compute=checks.compute,
            content_md5=content_md5(r),
            trailer=r.trailing_checksums if checks.trailing else None,
            conditions=write_conditions(r),
        ),
    )
    headers = {"ETag": f'"{info.etag}"', **SSE}
    headers.update(object_checksum_headers(info.checksums))
    return Response(status_code=200, headers=headers)


async def _check_read_encryption(r: S3Request) -> None:
    """SSE-C parameters on a read are refused once the object is looked up,
    so a missing key is still ``NoSuchKey`` (and a bucket out of reach
    refused), as AWS answers; an object that is there is not SSE-C."""
    if check_read_encryption_headers(r):
        await r.ctx.objects.head(r.principal, r.address)
        raise InvalidRequestS3(SSE_C_NOT_APPLICABLE)


def _part_number(r: S3Request) -> int | None:
    raw = r.query("partNumber")
    return None if raw is None else part_number(raw)


async def _head_part(
    r: S3Request, part: int, conditions: Conditions
) -> tuple[ObjectInfo, PartRange]:
    """The object and where its part ``part`` lies, of one version; beyond
    its last part is ``400 InvalidPart``, as AWS answers (and ceph's
    s3-tests check)."""
    try:
        return await r.ctx.objects.head_part(r.principal, r.address, part, conditions)
    except InvalidRange as exc:
        raise InvalidPartS3(exc.message) from None


def _empty_suffix(rng: ByteRange | None, exc: InvalidRange) -> bool:
    """A suffix range (``bytes=-N``, N > 0) of an empty object: AWS answers
    it with the whole, empty object, not 416 (any other range of an empty
    object is 416, as RFC 9110 has it)."""
    return rng is not None and bool(rng.suffix) and exc.size == 0


def _overrides(r: S3Request, headers: dict[str, str]) -> None:
    for param, header in OVERRIDES.items():
        value = r.query(param)
        if value is not None:
            if has_control(value):
                raise InvalidArgumentS3(
                    f"{param} holds a control character, which a header value cannot",
                    ArgumentName=param,
                )
            headers[header] = plain_header(value)


def write_conditions(r: S3Request) -> Conditions:
    """The conditions AWS's PutObject and DeleteObject take: ``If-Match``
    and ``If-None-Match``. The date conditions are ignored there, as AWS
    ignores them (they failed the write with 412 here; found by review)."""
    return dataclasses.replace(
        parse_conditions(r.header), if_modified_since=None, if_unmodified_since=None
    )


@op("GetObject")
async def get_object(r: S3Request) -> Response:
    check_key(r)
    await _check_read_encryption(r)
    part = _part_number(r)
    rng = parse_byte_range(r.header("range"))
    if part is not None and rng is not None:
        raise InvalidRequestS3("Cannot specify both Range header and partNumber query parameter")
    conditions = parse_conditions(r.header)
    # A part is located and read in one snapshot: an overwrite in between
    # cannot make it a range of another object.
    try:
        dl = await r.ctx.objects.get(
            r.principal,
            GetObject(r.address, range=rng, conditions=conditions, part_number=part),
        )
    except InvalidRange as exc:
        if part is not None:
            raise InvalidPartS3(exc.message) from None
        if not _empty_suffix(rng, exc):
            raise
        # AWS answers a suffix range of an empty object with all of it (200,
        # no body), as tail readers (Trino, arrow's object_store) expect.
        dl = await r.ctx.objects.get(r.principal, GetObject(r.address, conditions=conditions))
    where = dl.part
    checksum_mode = (r.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
    # The object's checksums describe all of it: sent for a range that is all
    # of it too (as AWS), not for a smaller one; a part gets its own (where
    # they were kept).
    whole = part is None and dl.offset == 0 and dl.length == dl.info.size
    headers = object_headers(dl.info, checksums=checksum_mode and whole)
    if checksum_mode and where is not None:
        headers.update(part_checksum_headers(where.checksums, dl.info.checksums))
    headers["Content-Length"] = str(dl.length)
    if where is not None and where.multipart:
        headers["x-amz-mp-parts-count"] = str(where.parts_count)
    status = 200
    # A part number is a range even when it is all of an object uploaded in
    # one piece: AWS answers part 1 of it 206 with its Content-Range.
    if dl.partial or (where is not None and where.length > 0):
        status = 206
        end = dl.offset + dl.length - 1
        headers["Content-Range"] = f"bytes {dl.offset}-{end}/{dl.info.size}"
    _overrides(r, headers)
    # The first piece before the headers: a read that cannot be served at all
    # still answers with an S3 error, not a broken stream.
    first = await anext(dl.body, b"")
    if len(first) == dl.length:  # all of it in hand (small objects): no stream to run
        await dl.body.aclose()  # type: ignore[attr-defined]
        return Response(first, status_code=status, headers=headers)

    async def send() -> AsyncIterator[bytes]:
        try:
            for piece in pieces(first):
                yield piece
            async for chunk in dl.body:
                for piece in pieces(chunk):
                    yield piece
        finally:
            await dl.body.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(send(), status_code=status, headers=headers)


@op("HeadObject")
async def head_object(r: S3Request) -> Response:
    check_key(r)
    await _check_read_encryption(r)
    part = _part_number(r)
    rng = parse_byte_range(r.header("range"))
    if part is not None and rng is not None:
        raise InvalidRequestS3("Cannot specify both Range header and partNumber query parameter")
    conditions = parse_conditions(r.header)
    where = None
    if part is not None:
        info, where = await _head_part(r, part, conditions)
    else:
        info = await r.ctx.objects.head(r.principal, r.address, conditions)
    # A Range is answered as GetObject would (AWS: "only the ContentLength
    # is affected"; 206 with Content-Range, 416 when it selects nothing).
    offset, length = 0, info.size
    if rng is not None:
        try:
            offset, length = resolve_range(rng, info.size)
        except InvalidRange as exc:
            if not _empty_suffix(rng, exc):
                raise
            rng = None
    checksum_mode = (r.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
    whole = part is None and offset == 0 and length == info.size
    headers = object_headers(info, checksums=checksum_mode and whole)
    headers["Content-Length"] = str(length)
    status = 200
    if rng is not None:
        status = 206
        headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{info.size}"
    if where is not None:
        if checksum_mode:
            headers.update(part_checksum_headers(where.checksums, info.checksums))
        if where.multipart:
            headers["x-amz-mp-parts-count"] = str(where.parts_count)
        headers["Content-Length"] = str(where.length)
        if where.length:
            status = 206
            end = where.offset + where.length - 1
            headers["Content-Range"] = f"bytes {where.offset}-{end}/{info.size}"
    _overrides(r, headers)
    return Response(status_code=status, headers=headers)


# Conditions of DeleteObject that AWS evaluates in directory buckets only; a
# general purpose bucket refuses them instead of deleting unconditionally.
DIRECTORY_BUCKET_CONDITIONS = ("x-amz-if-match-size", "x-amz-if-match-last-modified-time")


@op("DeleteObject")
async def delete_object(r: S3Request) -> Response:
    """``If-Match`` (an ETag or ``*``) is evaluated against the object:
    412 when it differs, 404 when there is none (AWS, general purpose
    buckets)."""
    check_key(r)
    for name in DIRECTORY_BUCKET_CONDITIONS:
        if r.header(name) is not None:
            raise NotImplementedOp(NOT_IMPLEMENTED_HEADER, Header=name)
    await r.ctx.objects.delete(r.principal, DeleteObject(r.address, conditions=write_conditions(r)))
    return Response(status_code=204)


# GetObjectAttributes: what ``x-amz-object-attributes`` may ask for.
ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")


def _count_header(r: S3Request, name: str, default: int) -> int:
    raw = r.header(name)
    if raw is None:
        return default
    value = decimal(raw, 10)
    if value is None:
        raise InvalidArgumentS3(
            f"{name} must be a non-negative integer", ArgumentName=name, ArgumentValue=raw[:16]
        )
    return value


@op("GetObjectAttributes")
async def get_object_attributes(r: S3Request) -> Response:
    """The object's ETag, checksum, parts (of a multipart object, paged by
    ``x-amz-max-parts`` and ``x-amz-part-number-marker``), storage class and
    size, as asked for; each part with its own checksum where it was kept
    (objects completed before migration 0012 have none)."""
    check_key(r)
    await _check_read_encryption(r)
    wanted = {a.strip() for a in (r.header("x-amz-object-attributes") or "").split(",")}
    wanted.discard("")
    if not wanted:
        raise InvalidRequestS3("The x-amz-object-attributes header specifying the attributes "
                               "to be retrieved is either missing or empty")  # fmt: skip
    unknown = sorted(wanted - set(ATTRIBUTES))
    if unknown:
        raise InvalidArgumentS3(
            f"Invalid attribute name specified: {unknown[0][:64]}",
            ArgumentName="x-amz-object-attributes",
        )
    max_parts = min(_count_header(r, "x-amz-max-parts", 1000), 1000)
    marker = _count_header(r, "x-amz-part-number-marker", 0)
    conditions = parse_conditions(r.header)
    info, sizes, part_sums = await r.ctx.objects.attributes(r.principal, r.address, conditions)
    fields: list[tuple[str, Value]] = []
    if "ETag" in wanted:
        fields.append(("ETag", info.etag))
    if "Checksum" in wanted and info.checksums:
        fields.append(("Checksum", checksum_fields(dict(info.checksums))))
    if "ObjectParts" in wanted and sizes is not None:
        page = list(enumerate(sizes, 1))[marker : marker + max_parts]
        truncated = bool(page) and page[-1][0] < len(sizes)
        parts: list[tuple[str, Value]] = [
            ("PartsCount", len(sizes)),
            ("PartNumberMarker", marker),
            ("NextPartNumberMarker", page[-1][0] if page else marker),
            ("MaxParts", max_parts),
            ("IsTruncated", truncated),
        ]
        for n, size in page:
            part: list[tuple[str, Value]] = [("PartNumber", n), ("Size", size)]
            if part_sums is not None:
                part += [(f"Checksum{a.value}", v) for a, v in sorted(part_sums[n - 1].items())]
            parts.append(("Part", part))
        fields.append(("ObjectParts", parts))
    if "StorageClass" in wanted:
        fields.append(("StorageClass", "STANDARD"))
    if "ObjectSize" in wanted:
        fields.append(("ObjectSize", info.size))
    return Response(
        render("GetObjectAttributesOutput", fields),
        media_type="application/xml",
        headers={"Last-Modified": http_date(info.update_time)},
    )
