"""Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
CompleteMultipartUpload, AbortMultipartUpload, ListParts and
ListMultipartUploads, on core's ``MultipartService`` with S3's rules
(parts 1–10000, ascending completion lists with their ETags, every part
but the last at least the minimum size, at most 5 GiB a part).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.responses import Response

from jointcloud.api.s3.app import op
from jointcloud.api.s3.errors import (
    InvalidArgumentS3,
    InvalidRequestS3,
    MalformedXML,
    error_response,
)
from jointcloud.api.s3.headers import (
    SSE,
    announced_algorithm,
    body_checks,
    check_encryption_headers,
    checksum_fields,
    checksum_headers,
    content_md5,
    decimal,
    object_meta,
    part_number,
)
from jointcloud.api.s3.ops_bucket import owner
from jointcloud.api.s3.ops_copy import (
    copy_source,
    source_conditions,
    write_conditions,
)
from jointcloud.api.s3.ops_object import check_key
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.xmlio import MAX_XML, Value, child_text, iso, parse, render
from jointcloud.core.commands import ByteRange, ChecksumAlgorithm
from jointcloud.core.multipart import (
    FULL_OBJECT_CHECKSUMS,
    MAX_PAGE,
    MAX_PART_SIZE,
    CompletedPart,
    Part,
    Upload,
)
from jointcloud.errors import DomainError

STORAGE_CLASS = "STANDARD"
_COPY_RANGE = re.compile(r"^bytes=([0-9]{1,19})-([0-9]{1,19})$")  # ASCII, bounded: int()-safe
_CHECKSUM_ELEMENTS = {f"Checksum{a.value}": a for a in ChecksumAlgorithm}


def xml(root: str, fields: list[tuple[str, Value]]) -> Response:
    return Response(render(root, fields), status_code=200, media_type="application/xml")


def _upload_id(r: S3Request) -> str:
    return r.query("uploadId") or ""


def _part_number(r: S3Request) -> int:
    return part_number(r.query("partNumber") or "")


def _count(r: S3Request, name: str, default: int) -> int:
    """A non-negative integer query parameter (``max-parts``...)."""
    raw = r.query(name)
    if raw is None:
        return default
    value = decimal(raw, 10)
    if value is None or value > 2**31 - 1:
        raise InvalidArgumentS3(
            f"Provided {name} not an integer or within integer range",
            ArgumentName=name,
            ArgumentValue=raw[:64],
        )
    return value


def _checksum_type(upload: Upload) -> str | None:
    if upload.checksum_algorithm is None:
        return None
    return "FULL_OBJECT" if upload.full_object else "COMPOSITE"


def _part_fields(part: Part) -> list[tuple[str, Value]]:
    fields: list[tuple[str, Value]] = [(f"Checksum{a.value}", v) for a, v in part.checksums.items()]
    return [
        ("PartNumber", part.part_number),
        ("LastModified", iso(part.update_time)),
        ("ETag", f'"{part.etag}"'),
        ("Size", part.size),
        *fields,
    ]


# --- create, upload, copy -------------------------------------------------------


@op("CreateMultipartUpload")
async def create_upload(r: S3Request) -> Response:
    check_key(r)
    algorithm = announced_algorithm(r)
    kind = (r.header("x-amz-checksum-type") or "").strip().upper()
    if kind not in ("", "COMPOSITE", "FULL_OBJECT"):
        raise InvalidArgumentS3(
            "Value for x-amz-checksum-type header is invalid.",
            ArgumentName="x-amz-checksum-type",
            ArgumentValue=kind[:32],
        )
    if kind and algorithm is None:
        raise InvalidRequestS3(
            "The x-amz-checksum-type header can only be used with the "
            "x-amz-checksum-algorithm header."
        )
    if algorithm is ChecksumAlgorithm.CRC64NVME:
        # AWS keeps CRC-64/NVME of whole objects only: an upload naming it is
        # FULL_OBJECT by default, and COMPOSITE is refused.
        if kind == "COMPOSITE":
            raise InvalidRequestS3(
                "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
            )
        kind = "FULL_OBJECT"
    full_object = kind == "FULL_OBJECT"
    if full_object and algorithm not in FULL_OBJECT_CHECKSUMS:
        raise InvalidRequestS3(
            f"The FULL_OBJECT checksum type cannot be used with the "
            f"{algorithm.value.lower() if algorithm else 'missing'} checksum algorithm."
        )
    upload = await r.ctx.multipart.create(
        r.principal,
        r.address,
        meta=object_meta(r),
        checksum_algorithm=algorithm,
        conditions=write_conditions(r),
        full_object=full_object,
    )
    headers = dict(SSE)  # as AWS, whose uploads are all SSE-S3 now
    type_ = _checksum_type(upload)
    if algorithm is not None and type_ is not None:
        headers["x-amz-checksum-algorithm"] = algorithm.value
        headers["x-amz-checksum-type"] = type_
    body = render(
        "InitiateMultipartUploadResult",
        [("Bucket", r.bucket), ("Key", r.key), ("UploadId", upload.upload_id)],
    )
    return Response(body, status_code=200, media_type="application/xml", headers=headers)


@op("UploadPart")
async def upload_part(r: S3Request) -> Response:
    """A refusal may come before the body is read (a bad part number, an
    unknown upload) or in its middle: the connection is closed after it, or
    a client that sent ``Expect: 100-continue`` and then no body would have
    its next request read as this one's body."""
    try:
        return await _upload_part(r)
    except DomainError as exc:
        response = error_response(
            exc,
            resource=r.target.resource,
            request_id=r.request_id,
            named=r.target.named(r.query("uploadId")),
        )
        response.headers["Connection"] = "close"
        return response


async def _upload_part(r: S3Request) -> Response:
    check_key(r)
    check_encryption_headers(r)  # a part with SSE-C keys: refused, not ignored
    number = _part_number(r)
    checks = body_checks(r, MAX_PART_SIZE)
    body, declared = r.stored_body()
    part = await r.ctx.multipart.upload_part(
        r.principal,
        _upload_id(r),
        r.address,
        number,
        body,
        payload_sha256=declared,
        checksums=checks.given,
        content_md5=content_md5(r),
        trailer=r.trailing_checksums if checks.trailing else None,
        compute=checks.compute,
    )
    headers = {"ETag": f'"{part.etag}"', **SSE}
    headers.update(checksum_headers(part.checksums))
    return Response(status_code=200, headers=headers)


def _copy_range(r: S3Request, size: int) -> ByteRange | None:
    """``x-amz-copy-source-range: bytes=first-last``, both inside the source."""
    raw = r.header("x-amz-copy-source-range")
    if raw is None:
        return None
    m = _COPY_RANGE.match(raw.strip())
    if m is None or int(m.group(2)) < int(m.group(1)):
        raise InvalidArgumentS3(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where "
            "first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=raw[:64],
        )
    first, last = int(m.group(1)), int(m.group(2))
    if last >= size:
        # 400 InvalidArgument, as AWS answers it (its message; versitygw
        # #610 quotes it from S3 itself): not 416 InvalidRange.
        raise InvalidArgumentS3(
            f"Range specified is not valid for source object of size: {size}",
            ArgumentName="x-amz-copy-source-range",
            ArgumentValue=raw[:64],
        )
    return ByteRange(first, last)


@op("UploadPartCopy")
async def upload_part_copy(r: S3Request) -> Response:
    check_key(r)
    check_encryption_headers(r)
    number = _part_number(r)
    source = copy_source(r)
    conditions = source_conditions(r)
    rng = None
    if r.header("x-amz-copy-source-range") is not None:
        info = await r.ctx.objects.head(r.principal, source)
        rng = _copy_range(r, info.size)
    part = await r.ctx.multipart.upload_part_copy(
        r.principal,
        _upload_id(r),
        r.address,
        number,
        source,
        range=rng,
        source_conditions=conditions,
    )
    fields: list[tuple[str, Value]] = [
        ("ETag", f'"{part.etag}"'),
        ("LastModified", iso(part.update_time)),
    ]
    fields.extend((f"Checksum{a.value}", v) for a, v in part.checksums.items())
    response = xml("CopyPartResult", fields)
    response.headers.update(SSE)
    return response


# --- complete, abort ------------------------------------------------------------


def _completion(body: bytes) -> list[CompletedPart]:
    """The ``<CompleteMultipartUpload>`` list: part numbers, ETags (quoted
    or not) and the checksums each part's upload answered."""
    root = parse(body, "CompleteMultipartUpload")
    parts: list[CompletedPart] = []
    for node in root:
        if not isinstance(node.tag, str):
            continue
        if node.tag != "Part":
            raise MalformedXML(f"unexpected element <{node.tag}> in <CompleteMultipartUpload>")
        number = decimal((child_text(node, "PartNumber") or "").strip(), 10)
        if number is None:
            raise MalformedXML("every <Part> needs a <PartNumber> (an integer)")
        etag = child_text(node, "ETag")
        sums = {}
        for child in node:
            algorithm = _CHECKSUM_ELEMENTS.get(child.tag) if isinstance(child.tag, str) else None
            if algorithm is not None and child.text:
                sums[algorithm] = child.text.strip()
        parts.append(CompletedPart(number, etag, sums))
    if not parts:
        raise MalformedXML(
            "The XML you provided was not well-formed or did not validate against our "
            "published schema: <CompleteMultipartUpload> must list at least one <Part>"
        )
    return parts


def _location(r: S3Request) -> str:
    url = r.request.url
    host = r.header("host") or url.netloc
    key = quote(r.key, safe="/")
    if r.target.virtual_host:
        return f"{url.scheme}://{host}/{key}"
    return f"{url.scheme}://{host}/{quote(r.bucket, safe='')}/{key}"


async def _check_completion_type(r: S3Request) -> None:
    """``x-amz-checksum-type`` on a completion must be the upload's own, as
    AWS checks (``InvalidRequest``, the upload left as it was). An upload
    this request cannot list (ended, unknown, or credentials without list)
    is left to the completion's own answer."""
    kind = r.header("x-amz-checksum-type")
    if kind is None:
        return
    try:
        page = await r.ctx.multipart.list_parts(r.principal, _upload_id(r), r.address, max_parts=1)
    except DomainError:
        return
    own = _checksum_type(page.upload)
    # An upload made without an algorithm is left alone: AWS gives such an
    # upload a default checksum of its own, and what it then accepts here
    # is not documented.
    if own is not None and kind.strip().upper() != own:
        raise InvalidRequestS3(
            f"The upload was created using the {own} checksum mode. "
            "The complete request must use the same checksum mode."
        )


@op("CompleteMultipartUpload")
async def complete_upload(r: S3Request) -> Response:
    check_key(r)
    r.refuse_trailer("CompleteMultipartUpload")
    body = await r.read_small(MAX_XML)
    parts = _completion(body)
    expect = {
        a: value
        for a in ChecksumAlgorithm
        if (value := r.header(f"x-amz-checksum-{a.value.lower()}")) is not None
    }
    await _check_completion_type(r)
    info = await r.ctx.multipart.complete(
        r.principal,
        _upload_id(r),
        r.address,
        parts,
        conditions=write_conditions(r),
        expect=expect,
    )
    fields: list[tuple[str, Value]] = [
        ("Location", _location(r)),
        ("Bucket", r.bucket),
        ("Key", r.key),
        ("ETag", f'"{info.etag}"'),
    ]
    fields.extend(checksum_fields(dict(info.checksums)))
    response = xml("CompleteMultipartUploadResult", fields)
    response.headers.update(SSE)
    return response


@op("AbortMultipartUpload")
async def abort_upload(r: S3Request) -> Response:
    check_key(r)
    await r.ctx.multipart.abort(r.principal, _upload_id(r), r.address)
    return Response(status_code=204)


# --- listings -------------------------------------------------------------------


@op("ListParts")
async def list_parts(r: S3Request) -> Response:
    check_key(r)
    max_parts = min(_count(r, "max-parts", MAX_PAGE), MAX_PAGE)
    marker = _count(r, "part-number-marker", 0)
    page = await r.ctx.multipart.list_parts(
        r.principal,
        _upload_id(r),
        r.address,
        marker=marker or None,
        max_parts=max(max_parts, 1),
    )
    parts = page.parts if max_parts else []
    truncated = page.next_marker is not None if max_parts else bool(page.parts)
    who = owner(r.principal)
    algorithm = page.upload.checksum_algorithm
    fields: list[tuple[str, Value]] = [
        ("Bucket", r.bucket),
        ("Key", r.key),
        ("UploadId", page.upload.upload_id),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", parts[-1].part_number if parts else marker),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
    ]
    fields.extend(("Part", _part_fields(p)) for p in parts)
    fields.extend(
        [
            ("Initiator", who),
            ("Owner", who),
            ("StorageClass", STORAGE_CLASS),
            ("ChecksumAlgorithm", None if algorithm is None else algorithm.value),
            ("ChecksumType", _checksum_type(page.upload)),
        ]
    )
    return xml("ListPartsResult", fields)


def _url_encoded(r: S3Request) -> bool:
    kind = r.query("encoding-type")
    if kind is not None and kind != "url":
        raise InvalidArgumentS3(
            "Invalid Encoding Method specified in Request",
            ArgumentName="encoding-type",
            ArgumentValue=kind[:64],
        )
    return kind == "url"


@op("ListMultipartUploads")
async def list_uploads(r: S3Request) -> Response:
    encoded = _url_encoded(r)

    def enc(text: str) -> str:
        return quote(text, safe="/") if encoded else text

    prefix = r.query("prefix") or ""
    delimiter = r.query("delimiter") or None
    key_marker = r.query("key-marker") or None
    id_marker = (r.query("upload-id-marker") or None) if key_marker is not None else None
    max_uploads = min(_count(r, "max-uploads", MAX_PAGE), MAX_PAGE)

    def rolled(path: str) -> str | None:
        """The common prefix ``path`` falls under, if any."""
        if delimiter is None or not path.startswith(prefix):
            return None
        at = path.find(delimiter, len(prefix))
        return None if at < 0 else path[: at + len(delimiter)]

    # A key marker that is a common prefix (a NextKeyMarker we gave) skips
    # every upload under it.
    key, uid = key_marker, id_marker
    if key_marker is not None and rolled(key_marker) == key_marker:
        key, uid = key_marker + "\U0010ffff", None
    entries: list[Upload | str] = []
    seen: set[str] = set()
    truncated = False
    while not truncated:
        page = await r.ctx.multipart.list_uploads(
            r.principal, r.package, prefix, key, uid, MAX_PAGE
        )
        for upload in page.uploads:
            common = rolled(upload.path)
            if common is not None and common in seen:
                continue
            if len(entries) >= max_uploads:
                truncated = True
                break
            if common is not None:
                seen.add(common)
                entries.append(common)
            else:
                entries.append(upload)
        if page.next_key_marker is None:
            break
        key, uid = page.next_key_marker, page.next_upload_id_marker
    who = owner(r.principal)
    fields: list[tuple[str, Value]] = [
        ("Bucket", r.bucket),
        ("KeyMarker", enc(key_marker or "")),
        ("UploadIdMarker", id_marker or ""),
    ]
    if entries:
        last = entries[-1]
        if isinstance(last, str):
            fields.append(("NextKeyMarker", enc(last)))
        else:
            fields.append(("NextKeyMarker", enc(last.path)))
            fields.append(("NextUploadIdMarker", last.upload_id))
    fields.append(("Prefix", enc(prefix)))
    if delimiter is not None:
        fields.append(("Delimiter", enc(delimiter)))
    fields.extend([("MaxUploads", max_uploads), ("IsTruncated", truncated)])
    for entry in entries:
        if isinstance(entry, str):
            continue
        algorithm = entry.checksum_algorithm
        fields.append(
            (
                "Upload",
                [
                    ("Key", enc(entry.path)),
                    ("UploadId", entry.upload_id),
                    ("Initiator", who),
                    ("Owner", who),
                    ("StorageClass", STORAGE_CLASS),
                    ("Initiated", iso(entry.create_time)),
                    ("ChecksumAlgorithm", None if algorithm is None else algorithm.value),
                    ("ChecksumType", _checksum_type(entry)),
                ],
            )
        )
    fields.extend(("CommonPrefixes", [("Prefix", enc(p))]) for p in entries if isinstance(p, str))
    if encoded:
        fields.append(("EncodingType", "url"))
    return xml("ListMultipartUploadsResult", fields)
