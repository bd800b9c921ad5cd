"""Copies and batch deletes: CopyObject and DeleteObjects, and the
``x-amz-copy-source`` header they share with UploadPartCopy.

A copy is server-side: the destination shares the source's immutable
layouts (core), from any bucket (package) of the credentials' project the
credentials may read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import parse_qsl, unquote

import structlog
from starlette.responses import Response, StreamingResponse

from jointcloud import errors
from jointcloud.api.common.http import etag_list, parse_conditions
from jointcloud.api.s3.app import op
from jointcloud.api.s3.documents import read_document
from jointcloud.api.s3.errors import (
    InvalidArgumentS3,
    InvalidRequestS3,
    MalformedXML,
    NoSuchVersion,
    classify,
    error_response,
)
from jointcloud.api.s3.headers import (
    REDIRECT,
    SSE,
    announced_algorithm,
    checksum_fields,
    object_meta,
)
from jointcloud.api.s3.ops_object import check_key, check_write_if_none_match
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.xmlio import Value, child_text, iso, parse, render
from jointcloud.core.commands import (
    Conditions,
    CopyObject,
    MetadataDirective,
    ObjectAddress,
    PackageRef,
)
from jointcloud.core.models import ObjectInfo
from jointcloud.core.paths import MAX_PATH

MAX_DELETE = 1000  # keys of one DeleteObjects (AWS)
DIRECTORY_BUCKET_FIELDS = ("Size", "LastModifiedTime")  # conditions of an <Object>

SELF_COPY = (
    "This copy request is illegal because it is trying to copy an object to itself "
    "without changing the object's metadata, storage class, website redirect location "
    "or encryption attributes."
)


log = structlog.get_logger(__name__)


def xml(root: str, fields: list[tuple[str, Value]]) -> Response:
    return Response(render(root, fields), status_code=200, media_type="application/xml")


# --- x-amz-copy-source ----------------------------------------------------------


def copy_source(r: S3Request) -> ObjectAddress:
    """``x-amz-copy-source``: ``[/]bucket/key`` URL-encoded, optionally
    ``?versionId=null`` (buckets here are unversioned: any other version id
    is refused). The bucket is a package of the credentials' project."""
    raw = r.header("x-amz-copy-source") or ""
    path, _, query = raw.partition("?")
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "versionId" and value != "null":
            raise InvalidArgumentS3(
                "Invalid version id specified",
                ArgumentName="x-amz-copy-source",
                ArgumentValue=raw[:256],
            )
    text = unquote(path, errors="surrogateescape")
    if text.startswith("/"):
        text = text[1:]
    bucket, slash, key = text.partition("/")
    if not bucket or not slash or not key or bucket.startswith("arn:"):
        raise InvalidArgumentS3(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=raw[:256],
        )
    if len(key.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise InvalidArgumentS3(
            "The copy source key is too long",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=raw[:256],
        )
    return ObjectAddress(PackageRef.by_name(bucket), key)


def source_conditions(r: S3Request) -> Conditions:
    """``x-amz-copy-source-if-*``: every failure is 412 PreconditionFailed."""
    return parse_conditions(r.header, "x-amz-copy-source-")


def write_conditions(r: S3Request) -> Conditions:
    """``If-Match`` / ``If-None-Match`` of a write (conditional writes)."""
    check_write_if_none_match(r)
    return Conditions(
        if_match=etag_list(r.header("if-match")),
        if_none_match=etag_list(r.header("if-none-match")),
    )


# --- CopyObject -----------------------------------------------------------------


def _directive(r: S3Request, header: str, what: str) -> MetadataDirective:
    value = r.header(header)
    if value is None:
        return MetadataDirective.COPY
    try:
        return MetadataDirective(value.strip().upper())
    except ValueError:
        raise InvalidArgumentS3(
            f"Unknown {what} directive.", ArgumentName=header, ArgumentValue=value[:64]
        ) from None


def _copy_result(info: ObjectInfo) -> list[tuple[str, Value]]:
    fields: list[tuple[str, Value]] = [
        ("ETag", f'"{info.etag}"'),
        ("LastModified", iso(info.update_time)),
    ]
    fields.extend(checksum_fields(dict(info.checksums)))
    return fields


@op("CopyObject")
async def copy_object(r: S3Request) -> Response:
    check_key(r)
    source = copy_source(r)
    directive = _directive(r, "x-amz-metadata-directive", "metadata")
    tags_directive = _directive(r, "x-amz-tagging-directive", "tagging")
    algorithm = announced_algorithm(r)
    # The request's metadata first: its encryption and lock refusals come
    # before the copy-onto-itself one.
    meta = object_meta(r, tags=tags_directive is MetadataDirective.REPLACE)
    # What AWS's refusal names besides metadata and the redirect: a storage
    # class or an encryption given makes a copy onto itself a change (how
    # AWS copies in place, e.g. to add a checksum); a checksum alone does
    # not. Only what every object here has already counts (STANDARD, and
    # SSE-S3, the one encryption object_meta lets through): any other
    # storage class would be a change this store cannot make, so it keeps
    # the refusal rather than answer a success that changed nothing.
    storage_class = (r.header("x-amz-storage-class") or "").strip()
    restates = storage_class == "STANDARD" or r.header("x-amz-server-side-encryption") is not None
    if (
        source.package.name == r.bucket
        and source.path == r.key
        and directive is not MetadataDirective.REPLACE
        and r.header(REDIRECT) is None
        and not restates
    ):
        raise InvalidRequestS3(SELF_COPY)
    copying = r.ctx.objects.copy(
        r.principal,
        CopyObject(
            source=source,
            dest=r.address,
            source_conditions=source_conditions(r),
            conditions=write_conditions(r),
            directive=directive,
            meta=meta,
            tags_directive=tags_directive,
            checksum=algorithm,
            restates=restates,
            one_piece=True,
        ),
    )
    return await _answer_copy(r, copying)


# A copy that must read its source (a multipart one, for its MD5) can take
# minutes. AWS answers such a copy 200 at once, sends whitespace now and
# then, and puts the result, or an <Error> that botocore and the other SDKs
# read as one, in that 200. Without it a client's read timeout (60 s in
# boto3) fires and its retry reads the source all over again. A copy done
# within PATIENCE answers as any other request.
PATIENCE = 1.0
KEEPALIVE_EVERY = 5.0
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


async def _answer_copy(r: S3Request, copying: Coroutine[Any, Any, ObjectInfo]) -> Response:
    task = asyncio.ensure_future(copying)
    try:
        done, _ = await asyncio.wait([task], timeout=PATIENCE)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        response = xml("CopyObjectResult", _copy_result(task.result()))
        response.headers.update(SSE)
        return response

    async def body() -> AsyncIterator[bytes]:
        try:
            yield _DECLARATION
            async for space in _patience(task, KEEPALIVE_EVERY):
                yield space
            try:
                document = render("CopyObjectResult", _copy_result(task.result()))
            except errors.DomainError as exc:
                failed = error_response(exc, resource=r.target.resource, request_id=r.request_id)
                document = bytes(failed.body)
            except Exception as exc:  # a bug: S3's InternalError, as the app answers one
                log.exception("unhandled error in a copy", error_type=type(exc).__name__)
                failed = error_response(
                    errors.OperationFailed("We encountered an internal error. Please try again."),
                    resource=r.target.resource,
                    request_id=r.request_id,
                )
                document = bytes(failed.body)
            yield document.removeprefix(_DECLARATION)
        finally:
            task.cancel()  # the client went away: the copy is not committed

    return StreamingResponse(body(), media_type="application/xml", headers=dict(SSE))


async def _patience(task: asyncio.Future[ObjectInfo], every: float) -> AsyncIterator[bytes]:
    """A space every ``every`` seconds until ``task`` is done."""
    while not task.done():
        done, _ = await asyncio.wait([task], timeout=every)
        if not done:
            yield b" "


# --- DeleteObjects --------------------------------------------------------------


def _delete_list(body: bytes) -> tuple[bool, list[tuple[str, str | None, str | None]]]:
    """(quiet, [(key, etag, version id)]) of a ``<Delete>`` document."""
    root = parse(body, "Delete")
    quiet_text = child_text(root, "Quiet")
    quiet = (quiet_text or "").strip().lower() == "true"
    if quiet_text is not None and quiet_text.strip().lower() not in ("true", "false"):
        raise MalformedXML("<Quiet> must be true or false")
    items: list[tuple[str, str | None, str | None]] = []
    for node in root:
        if not isinstance(node.tag, str) or node.tag == "Quiet":
            continue
        if node.tag != "Object":
            raise MalformedXML(f"unexpected element <{node.tag}> in <Delete>")
        key = child_text(node, "Key")
        if key is None:
            raise MalformedXML("every <Object> needs a <Key>")
        for field in DIRECTORY_BUCKET_FIELDS:
            if child_text(node, field) is not None:
                # AWS evaluates these in directory buckets only; a general
                # purpose bucket refuses the document (MalformedXML).
                raise MalformedXML(f"<{field}> in <Object> is for directory buckets only")
        items.append((key, child_text(node, "ETag"), child_text(node, "VersionId")))
    if not items:
        raise MalformedXML("<Delete> must list at least one <Object>")
    if len(items) > MAX_DELETE:
        raise MalformedXML(f"<Delete> lists {len(items)} objects; at most {MAX_DELETE}")
    return quiet, items


def _delete_item(key: str, etag: str | None, version: str | None) -> Conditions:
    """What one entry of a DeleteObjects asks, checked as DeleteObject checks
    its own request (a refusal is this entry's error alone)."""
    if version not in (None, "null"):
        raise NoSuchVersion("The specified version does not exist.")
    if not key:
        raise errors.BadArgument("the key is empty")
    if len(key.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise errors.BadArgument(f"the key is longer than {MAX_PATH} bytes")
    return Conditions(if_match=etag_list(etag)) if etag is not None else Conditions()


@op("DeleteObjects")
async def delete_objects(r: S3Request) -> Response:
    body = await read_document(r, required=True)
    quiet, items = _delete_list(body)
    outcomes: list[errors.DomainError | None] = [None] * len(items)
    batch: list[tuple[int, tuple[str, Conditions]]] = []
    for i, (key, etag, version) in enumerate(items):
        try:
            batch.append((i, (key, _delete_item(key, etag, version))))
        except errors.DomainError as exc:
            outcomes[i] = exc
    # One transaction for the batch; the bucket itself not being there fails
    # the whole request (NoSuchBucket), anything else only its key.
    done = await r.ctx.objects.delete_many(r.principal, r.package, [item for _, item in batch])
    for (i, _), outcome in zip(batch, done, strict=True):
        outcomes[i] = outcome
    fields: list[tuple[str, Value]] = []
    for (key, _, version), failure in zip(items, outcomes, strict=True):
        if failure is not None:
            entry: list[tuple[str, Value]] = [("Key", key)]
            if version is not None:
                entry.append(("VersionId", version))
            entry.extend([("Code", classify(failure)[0]), ("Message", failure.message)])
            fields.append(("Error", entry))
        elif not quiet:
            deleted: list[tuple[str, Value]] = [("Key", key)]
            if version is not None:
                deleted.append(("VersionId", version))
            fields.append(("Deleted", deleted))
    return xml("DeleteResult", fields)
