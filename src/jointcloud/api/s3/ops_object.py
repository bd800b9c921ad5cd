"""Object operations: PutObject, GetObject, HeadObject, DeleteObject."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from jointcloud.api.common.http import http_date, parse_byte_range, parse_conditions, pieces
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
from jointcloud.core.commands import Conditions, DeleteObject, GetObject, PutObject
from jointcloud.core.objects import PartRange
from jointcloud.core.paths import MAX_PATH, check_chars
from jointcloud.errors import BadArgument, InvalidRange

MAX_PUT = 5 * 1024**3  # a single PUT; larger objects are uploaded in parts (AWS)


def check_key(r: S3Request) -> None:
    try:
        raw = r.key.encode("utf-8")
        check_chars(r.key, "key", key=True)
    except (UnicodeEncodeError, BadArgument):  # not UTF-8, or a control character
        raise InvalidURI("Couldn't parse the specified URI.") from None
    if len(raw) > MAX_PATH:
        raise KeyTooLong("Your key is too long", MaxSizeAllowed=str(MAX_PATH))


@op("PutObject")
async def put_object(r: S3Request) -> Response:
    check_key(r)
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
            conditions=parse_conditions(r.header),
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


async def _part(r: S3Request, part: int, conditions: Conditions) -> PartRange:
    """Where part ``part`` of the object lies; beyond its last part is
    ``400 InvalidPart``, as AWS answers (and ceph's s3-tests check)."""
    try:
        return await r.ctx.objects.part_range(r.principal, r.address, part, conditions)
    except InvalidRange as exc:
        raise InvalidPartS3(exc.message) from None


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
        if part is None:
            raise
        raise InvalidPartS3(exc.message) from None
    where = dl.part
    checksum_mode = (r.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
    # The object's checksums describe all of it: not sent for a range; a
    # part gets its own (where they were kept).
    whole = not dl.partial and part is None
    headers = object_headers(dl.info, checksums=checksum_mode and whole)
    if checksum_mode and where is not None:
        headers.update(part_checksum_headers(where.checksums, dl.info.checksums))
    headers["Content-Length"] = str(dl.length)
    if where is not None and where.multipart:
        headers["x-amz-mp-parts-count"] = str(where.parts_count)
    status = 200
    if dl.partial:
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
    conditions = parse_conditions(r.header)
    info = await r.ctx.objects.head(r.principal, r.address, conditions)
    checksum_mode = (r.header("x-amz-checksum-mode") or "").upper() == "ENABLED"
    headers = object_headers(info, checksums=checksum_mode and part is None)
    headers["Content-Length"] = str(info.size)
    status = 200
    if part is not None:
        where = await _part(r, part, conditions)
        if checksum_mode:
            headers.update(part_checksum_headers(where.checksums, info.checksums))
        if where.multipart and where.length:
            status = 206
            end = where.offset + where.length - 1
            headers["Content-Length"] = str(where.length)
            headers["Content-Range"] = f"bytes {where.offset}-{end}/{info.size}"
            headers["x-amz-mp-parts-count"] = str(where.parts_count)
    _overrides(r, headers)
    return Response(status_code=status, headers=headers)


# Conditions of DeleteObject that AWS evaluates in directory buckets only; a
# general purpose bucket refuses them instead of deleting unconditionally.
DIRECTORY_BUCKET_CONDITIONS = ("x-amz-if-match-size", "x-amz-if-match-last-modified-time")
NOT_IMPLEMENTED_HEADER = "A header you provided implies functionality that is not implemented"


@op("DeleteObject")
async def delete_object(r: S3Request) -> Response:
    """``If-Match`` (an ETag or ``*``) is evaluated against the object:
    412 when it differs, 404 when there is none (AWS, general purpose
    buckets)."""
    check_key(r)
    for name in DIRECTORY_BUCKET_CONDITIONS:
        if r.header(name) is not None:
            raise NotImplementedOp(NOT_IMPLEMENTED_HEADER, Header=name)
    await r.ctx.objects.delete(
        r.principal, DeleteObject(r.address, conditions=parse_conditions(r.header))
    )
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
