"""The gateway facade of seed 003 (DESIGN §6a): the seed's root paths on the
main listener, each an S3 call to the ``Endpoint`` header's URL with the
``AccessKeyId``/``SecretKey`` headers (any S3 service), or a key, grant,
credentials or share-link call that needs no such headers.

``create_app(ctx)`` is the ASGI app; ``PATHS`` the paths it serves (the host
sends those here). Parameters, answers and errors: ``params``, ``envelope``
and ``s3client``; streaming uploads: ``upload``; docs/gateway.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import structlog
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from jointcloud.api.common.connection import RequestLine
from jointcloud.api.common.http import (
    ClientEnds,
    Gone,
    client_ends,
    http_date,
    unless_gone,
)
from jointcloud.api.common.observability import HttpMetrics, Observability
from jointcloud.api.gateway import credentials as cred
from jointcloud.api.gateway import listing
from jointcloud.api.gateway import upload as up
from jointcloud.api.gateway.envelope import FAILED, GatewayError, answer, failure, success
from jointcloud.api.gateway.params import Body, Params, query_wants_xml, read_body, wants_xml
from jointcloud.api.gateway.s3client import S3, ClientCache, normalize_endpoint
from jointcloud.context import Context
from jointcloud.core.outbound import OutboundGuard
from jointcloud.errors import DomainError, ServerBusy
from jointcloud.keys.caveats import Permission

log = structlog.get_logger(__name__)
T = TypeVar("T")

PROTOCOL = "gateway"
AUTH_HEADERS = ("AccessKeyId", "SecretKey", "Endpoint")
DOWNLOAD_PIECE = 1024 * 1024
DELETE_BATCH = 1000  # keys per DeleteObjects request (S3's limit)
MAX_LIST_KEYS = 100_000
RETRY_AFTER = "2"  # seconds, with a "busy" answer
# A client that sent its EOF may only have half-closed to read its answer,
# or may be gone: its call gets this long, then gives its slot back.
HALF_CLOSED_GRACE = 5.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The seed's messages of success.
MSG_OK = "success"
MSG_CREATED = "创建成功"
MSG_DELETED = "删除成功"
MSG_UPLOADED = "上传成功"
MSG_COPIED = "复制成功"
MSG_MOVED = "移动成功"


def gone(ends: ClientEnds | None) -> str:
    """The answer to a call whose client went away (``unless_gone``)."""
    if ends is not None and ends.eof.is_set() and not ends.lost.is_set():
        # Read if the client only half-closed.
        return (
            "the client closed its side of the connection before the answer; "
            f"the call was given up after {HALF_CLOSED_GRACE:g} s (the server "
            "cannot tell a half-closed client from one that left)"
        )
    return "the client went away before the answer"  # for the log and metrics


async def watched(request: Request, work: Awaitable[T], *, body_read: bool = True) -> T:
    """``work``, cancelled when its client is gone (``Gone``): at once when
    the connection is lost, ``HALF_CLOSED_GRACE`` after the client's EOF.
    Without ``body_read``, ``receive`` is the body's: only the listener's
    ``ClientEnds`` tell."""
    receive = request.receive if body_read else None
    ends = client_ends(request.scope)
    return await unless_gone(receive, work, ends=ends, grace=HALF_CLOSED_GRACE)


def millis(value: Any) -> int:
    """A datetime (botocore's) as milliseconds since the epoch."""
    if not isinstance(value, datetime):
        return 0
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int((value - _EPOCH) // timedelta(milliseconds=1))


@dataclass
class Call:
    request: Request
    body: Body
    clients: ClientCache
    outbound: OutboundGuard

    @property
    def params(self) -> Params:
        return self.body.params

    @property
    def xml(self) -> bool:
        return self.params.xml()

    def ok(self, msg: str = MSG_OK, data: Any = None) -> Response:
        return success(msg, data, xml=self.xml)

    async def s3(self) -> S3:
        headers = self.request.headers
        missing = [h for h in AUTH_HEADERS if not headers.get(h, "").strip()]
        if missing:
            raise GatewayError("missing request header(s): " + ", ".join(missing))
        endpoint = normalize_endpoint(headers["Endpoint"])
        await self.outbound.check(endpoint, "header Endpoint")
        return await self.clients.get(
            endpoint, headers["AccessKeyId"].strip(), headers["SecretKey"].strip()
        )


def caller_of(request: Request) -> tuple[str, str]:
    """The endpoint and access key id of an authenticated call (``Call.s3``
    checked them)."""
    headers = request.headers
    return normalize_endpoint(headers["Endpoint"]), headers["AccessKeyId"].strip()


Handler = Callable[[Call, S3 | None], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    handler: Handler
    methods: frozenset[str]
    auth: bool = True
    takes_file: bool = False


# --- keys, grants, credentials, share links (no auth headers) ---------------

_ALLOW = {
    "allow_download": Permission.READ,
    "allow_upload": Permission.WRITE,
    "allow_list": Permission.LIST,
    "allow_delete": Permission.DELETE,
}


async def create_restrict_key(c: Call, _: S3 | None) -> Response:
    p = c.params
    buckets = p.texts("buckets")
    key = cred.parse_key(p.text("api_key"), "api_key")
    allow = [perm for name, perm in _ALLOW.items() if p.boolean(name)]
    restricted = cred.restrict(
        key, allow, cred.bucket_paths(buckets), p.millis("not_before"), p.millis("not_after")
    )
    return c.ok(MSG_OK, cred.serialize(restricted))


async def create_access_grant(c: Call, _: S3 | None) -> Response:
    p = c.params
    grant = await cred.access_grant(
        c.outbound,
        p.text("satellite_node_url"),
        p.text("restrict_key"),
        p.text("password"),
        p.optional_text("project_id"),
    )
    return c.ok(MSG_OK, grant)


async def create_credentials(c: Call, _: S3 | None) -> Response:
    p = c.params
    made = await cred.register(
        c.outbound, p.text("auth_service"), p.text("access_grant"), public=p.boolean("public")
    )
    return c.ok(MSG_OK, made)


async def share_url(c: Call, _: S3 | None) -> Response:
    p = c.params
    bucket, key = p.text("bucket"), p.text("key")
    satellite, auth_service = p.text("satellite_node_url"), p.text("auth_service")
    base_url = p.text("base_url").strip().rstrip("/")
    api_key = p.text("api_key").strip()
    password, project_id = p.text("password"), p.optional_text("project_id")
    restricted = cred.restrict(
        cred.parse_key(api_key, "api_key"),
        (Permission.READ, Permission.LIST),
        [cred.object_path(bucket, key)],
        p.millis("not_before"),
        p.millis("not_after"),
    )
    restricted_text = cred.serialize(restricted)
    # The project is looked up with the caller's own key: the restricted
    # one is refused until its not_before, and the link is made now.
    grant = await cred.access_grant(
        c.outbound, satellite, restricted_text, password, project_id, info_key=api_key
    )
    made = await cred.register(c.outbound, auth_service, grant, public=True)
    return c.ok(MSG_OK, f"{base_url}/{cred.share_path(made['access_key_id'], bucket, key)}")


# --- buckets -------------------------------------------------------------------


def _s3(s3: S3 | None) -> S3:
    assert s3 is not None  # every handler below is an auth endpoint
    return s3


async def create_bucket(c: Call, s3: S3 | None) -> Response:
    await _s3(s3).call("create_bucket", Bucket=c.params.text("bucket"))
    return c.ok(MSG_CREATED)


async def delete_bucket(c: Call, s3: S3 | None) -> Response:
    await _s3(s3).call("delete_bucket", Bucket=c.params.text("bucket"))
    return c.ok(MSG_DELETED)


async def list_buckets(c: Call, s3: S3 | None) -> Response:
    listed = await _s3(s3).call("list_buckets")
    data = [
        {"bucket": b["Name"], "created": millis(b.get("CreationDate"))}
        for b in listed.get("Buckets", [])
    ]
    return c.ok(MSG_OK, data)


async def head_bucket(c: Call, s3: S3 | None) -> Response:
    await _s3(s3).call("head_bucket", Bucket=c.params.text("bucket"))
    return c.ok(MSG_OK)


async def list_objects(c: Call, s3: S3 | None) -> Response:
    p = c.params
    bucket = p.text("bucket")
    prefix = p.optional_text("prefix") or ""
    delimiter = p.optional_text("delimiter") or ""
    max_keys = p.integer("max_keys", default=1000, low=1, high=MAX_LIST_KEYS)
    args: dict[str, Any] = {"Bucket": bucket}
    if prefix:
        args["Prefix"] = prefix
    if delimiter:
        args["Delimiter"] = delimiter

    def take(page: Any) -> list[dict[str, Any]]:
        prefixes = [
            {"key": cp["Prefix"], "size": 0, "kind": "PRE"} for cp in page.get("CommonPrefixes", [])
        ]
        objects = [
            {"key": o["Key"], "size": int(o.get("Size", 0)), "kind": "OBJ"}
            for o in page.get("Contents", [])
        ]
        return prefixes + objects

    method = "list_objects_v2"
    listed = await listing.pages(_s3(s3), method, take, limit=max_keys, **args)
    items = listing.answer_of(method, listed)
    # Prefixes first over the whole answer, as documented: each page's were
    # put before its own objects only, so past one page (1,000 entries) a
    # prefix came between objects (found by review).
    return c.ok(
        MSG_OK, [i for i in items if i["kind"] == "PRE"] + [i for i in items if i["kind"] != "PRE"]
    )


# --- objects -------------------------------------------------------------------


def _declared(c: Call) -> int | None:
    declared = c.request.headers.get("content-length")
    return int(declared) if declared and declared.isdigit() else None


def _before_file(c: Call, *names: str) -> None:
    """Required fields of an upload, which must precede the file part."""
    for name in names:
        if not c.params.has(name) and c.body.file is not None:
            raise GatewayError(
                f"missing required parameter {name} (in a multipart form the fields "
                "come before the file part, or go in the query string)"
            )


async def upload_object(c: Call, s3: S3 | None) -> Response:
    p = c.params
    _before_file(c, "bucket", "key")
    bucket, key = p.text("bucket"), p.text("key")
    part = c.body.file
    if part is None:
        raise GatewayError("missing required parameter file (a multipart form file part)")
    part_size = up.part_size_for(_declared(c))
    ctype = part.content_type if part.content_type != "application/octet-stream" else None
    # Before the file is read (up to 9 parts, spooled past 8 MiB each).
    await watched(c.request, _s3(s3).vouch("get_bucket_location", Bucket=bucket), body_read=False)
    await up.upload_object(
        _s3(s3),
        bucket,
        key,
        up.PartReader(part.chunks()),
        content_type=ctype,
        part_size=part_size,
        # The rest of the form (small, capped) is read before the object is
        # committed: a bad tail must not leave an object behind a failure.
        before_commit=c.body.finish,
    )
    return c.ok(MSG_UPLOADED)


async def download_object(c: Call, s3: S3 | None) -> Response:
    p = c.params
    bucket, key = p.text("bucket"), p.text("key")
    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    ranged = c.request.headers.get("range")
    if ranged:
        args["Range"] = ranged
    got = await _s3(s3).call("get_object", **args)
    stream = got["Body"]
    name = key.rstrip("/").rsplit("/", 1)[-1] or "download"
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
    }
    if got.get("ContentLength") is not None:
        headers["Content-Length"] = str(got["ContentLength"])
    if got.get("ETag"):
        headers["ETag"] = got["ETag"]
    if isinstance(got.get("LastModified"), datetime):
        headers["Last-Modified"] = http_date(got["LastModified"])
    status = 200
    if got.get("ContentRange"):
        headers["Content-Range"] = got["ContentRange"]
        status = 206

    async def pieces() -> AsyncIterator[bytes]:
        try:
            while True:
                piece = await _s3(s3).read(stream, DOWNLOAD_PIECE)
                if not piece:
                    break
                yield piece
        finally:
            await asyncio.to_thread(stream.close)

    return StreamingResponse(
        pieces(), status_code=status, media_type="application/octet-stream", headers=headers
    )


def _copy_args(p: Params) -> tuple[str, str, str, str]:
    return (
        p.text("source_bucket"),
        p.text("source_key"),
        p.text("destination_bucket"),
        p.text("destination_key"),
    )


# S3 copies at most 5 GiB in one CopyObject; larger objects are copied in
# parts (UploadPartCopy), which boto3's managed ``copy`` does.
TOO_LARGE_TO_COPY = "larger than the maximum allowable size for a copy source"


async def _copy(s3: S3, sb: str, sk: str, db: str, dk: str) -> None:
    source = {"Bucket": sb, "Key": sk}
    try:
        await s3.call("copy_object", Bucket=db, Key=dk, CopySource=source)
    except GatewayError as exc:
        if TOO_LARGE_TO_COPY not in exc.message:
            raise
        await s3.call("copy", CopySource=source, Bucket=db, Key=dk)


async def copy_object(c: Call, s3: S3 | None) -> Response:
    sb, sk, db, dk = _copy_args(c.params)
    await _copy(_s3(s3), sb, sk, db, dk)
    return c.ok(MSG_COPIED)


async def move_object(c: Call, s3: S3 | None) -> Response:
    sb, sk, db, dk = _copy_args(c.params)
    if (sb, sk) == (db, dk):  # S3 refuses a copy onto itself; the move is a no-op
        await _s3(s3).call("head_object", Bucket=sb, Key=sk)
        return c.ok(MSG_MOVED)
    await _copy(_s3(s3), sb, sk, db, dk)
    try:
        await _s3(s3).call("delete_object", Bucket=sb, Key=sk)
    except GatewayError as exc:
        # S3 has no move: the copy stands, and the caller must be told so
        # (a key that may write but not delete gets here).
        raise GatewayError(
            f"the object was copied to {db}/{dk}, but the source {sb}/{sk} was not "
            f"deleted: {exc.message}"
        ) from None
    return c.ok(MSG_MOVED)


async def delete_object(c: Call, s3: S3 | None) -> Response:
    p = c.params
    await _s3(s3).call("delete_object", Bucket=p.text("bucket"), Key=p.text("key"))
    return c.ok(MSG_DELETED)


async def delete_objects(c: Call, s3: S3 | None) -> Response:
    p = c.params
    bucket = p.text("bucket")
    keys = list(dict.fromkeys(p.texts("keys")))
    failed: list[str] = []
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        done = await _s3(s3).call(
            "delete_objects",
            Bucket=bucket,
            Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
        )
        failed.extend(
            f"{e.get('Key')} ({e.get('Code')}: {e.get('Message', '')})"
            for e in done.get("Errors", [])
        )
    if failed:
        raise GatewayError(
            f"operation error S3: DeleteObjects, {len(failed)} of {len(keys)} keys not deleted: "
            + "; ".join(failed)
        )
    return c.ok(MSG_DELETED)


async def head_object(c: Call, s3: S3 | None) -> Response:
    p = c.params
    head = await _s3(s3).call("head_object", Bucket=p.text("bucket"), Key=p.text("key"))
    data = {
        "etag": head.get("ETag", ""),
        "content_length": int(head.get("ContentLength", 0)),
        "last_modified": millis(head.get("LastModified")),
    }
    return c.ok(MSG_OK, data)


def _tag_text(value: Any, what: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str | int):  # not a float: 1e400 would be stored as "inf"
        return str(value)
    raise GatewayError(f"invalid parameter tags: {what} must be a string")


async def put_object_tagging(c: Call, s3: S3 | None) -> Response:
    p = c.params
    bucket, key = p.text("bucket"), p.text("key")
    tags = []
    for tag in p.objects("tags"):
        name = tag.get("key")
        if not isinstance(name, str) or not name:
            raise GatewayError("invalid parameter tags: every tag needs a key (a string)")
        tags.append({"Key": name, "Value": _tag_text(tag.get("value"), "tags/value")})
    await _s3(s3).call("put_object_tagging", Bucket=bucket, Key=key, Tagging={"TagSet": tags})
    return c.ok(MSG_OK)


async def get_object_tagging(c: Call, s3: S3 | None) -> Response:
    p = c.params
    got = await _s3(s3).call("get_object_tagging", Bucket=p.text("bucket"), Key=p.text("key"))
    data = [{"key": t["Key"], "value": t.get("Value", "")} for t in got.get("TagSet", [])]
    return c.ok(MSG_OK, data)


async def delete_object_tagging(c: Call, s3: S3 | None) -> Response:
    p = c.params
    await _s3(s3).call("delete_object_tagging", Bucket=p.text("bucket"), Key=p.text("key"))
    return c.ok(MSG_DELETED)


# --- multipart -----------------------------------------------------------------


async def create_multipart_upload(c: Call, s3: S3 | None) -> Response:
    p = c.params
    made = await _s3(s3).call("create_multipart_upload", Bucket=p.text("bucket"), Key=p.text("key"))
    return c.ok(MSG_OK, {"upload_id": made["UploadId"]})


def _part_number(value: Any) -> int:
    p = Params()
    p.add("part_number", value)
    return p.integer("part_number", low=1, high=up.MAX_PARTS)


async def upload_part(c: Call, s3: S3 | None) -> Response:
    p = c.params
    part = c.body.file
    if part is None:
        await c.body.finish()
        if p.has("parts"):  # the seed prints /uploadPart for the completion
            return await complete_multipart_upload(c, s3)
        raise GatewayError("missing required parameter file (a multipart form file part)")
    _before_file(c, "bucket", "key", "upload_id", "part_number")
    bucket, key, upload_id = p.text("bucket"), p.text("key"), p.text("upload_id")
    number = p.integer("part_number", low=1, high=up.MAX_PARTS)
    up.check_part_declared(_declared(c))
    # Before the part is spooled: the credentials and the upload are good.
    vouch = _s3(s3).vouch("list_parts", Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=1)
    await watched(c.request, vouch, body_read=False)
    etag = await up.upload_part(
        _s3(s3), bucket, key, upload_id, number, up.PartReader(part.chunks())
    )
    await c.body.finish()
    return c.ok(MSG_UPLOADED, {"etag": etag})


async def complete_multipart_upload(c: Call, s3: S3 | None) -> Response:
    p = c.params
    bucket, key, upload_id = p.text("bucket"), p.text("key"), p.text("upload_id")
    parts: list[dict[str, Any]] = []
    for item in p.objects("parts"):
        etag = item.get("etag")
        if not isinstance(etag, str) or not etag:
            raise GatewayError("invalid parameter parts: every part needs an etag (a string)")
        parts.append({"PartNumber": _part_number(item.get("part_number")), "ETag": etag})
    parts.sort(key=lambda part: int(part["PartNumber"]))
    done = await _s3(s3).call(
        "complete_multipart_upload",
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},
    )
    return c.ok(MSG_OK, {"etag": done.get("ETag", "")})


async def abort_multipart_upload(c: Call, s3: S3 | None) -> Response:
    p = c.params
    await _s3(s3).call(
        "abort_multipart_upload",
        Bucket=p.text("bucket"),
        Key=p.text("key"),
        UploadId=p.text("upload_id"),
    )
    return c.ok(MSG_OK)


async def list_multipart_uploads(c: Call, s3: S3 | None) -> Response:
    def take(page: Any) -> list[dict[str, Any]]:
        return [
            {"initiated": millis(u.get("Initiated")), "key": u["Key"], "upload_id": u["UploadId"]}
            for u in page.get("Uploads", [])
        ]

    method = "list_multipart_uploads"
    listed = await listing.pages(
        _s3(s3), method, take, limit=listing.MAX_ITEMS, Bucket=c.params.text("bucket")
    )
    return c.ok(MSG_OK, listing.answer_of(method, listed))


async def list_parts(c: Call, s3: S3 | None) -> Response:
    p = c.params

    def take(page: Any) -> list[dict[str, Any]]:
        return [
            {
                "part_number": int(part["PartNumber"]),
                "size": int(part.get("Size", 0)),
                "etag": part.get("ETag", ""),
            }
            for part in page.get("Parts", [])
        ]

    method = "list_parts"
    where = {"Bucket": p.text("bucket"), "Key": p.text("key"), "UploadId": p.text("upload_id")}
    listed = await listing.pages(_s3(s3), method, take, limit=listing.MAX_ITEMS, **where)
    return c.ok(MSG_OK, listing.answer_of(method, listed))


# --- the table -----------------------------------------------------------------

_POST = frozenset({"POST"})
_READ = frozenset({"POST", "GET"})  # read-only calls may also be GET with a query
_DELETE = frozenset({"DELETE", "POST"})  # not every client sends a body with DELETE

ENDPOINTS: Mapping[str, Endpoint] = {
    "/createRestrictKey": Endpoint(create_restrict_key, _POST, auth=False),
    "/createAccessGrant": Endpoint(create_access_grant, _POST, auth=False),
    "/createCredentials": Endpoint(create_credentials, _POST, auth=False),
    "/shareUrl": Endpoint(share_url, _POST, auth=False),
    "/createBucket": Endpoint(create_bucket, _POST),
    "/deleteBucket": Endpoint(delete_bucket, _DELETE),
    "/listBuckets": Endpoint(list_buckets, _READ),
    "/headBucket": Endpoint(head_bucket, _READ),
    "/listObjects": Endpoint(list_objects, _READ),
    "/uploadObject": Endpoint(upload_object, _POST, takes_file=True),
    "/downloadObject": Endpoint(download_object, _READ),
    "/copyObject": Endpoint(copy_object, _POST),
    "/deleteObject": Endpoint(delete_object, _DELETE),
    "/deleteObjects": Endpoint(delete_objects, _DELETE),
    "/moveObject": Endpoint(move_object, _POST),
    "/headObject": Endpoint(head_object, _READ),
    "/putObjectTagging": Endpoint(put_object_tagging, _POST),
    "/getObjectTagging": Endpoint(get_object_tagging, _READ),
    "/deleteObjectTagging": Endpoint(delete_object_tagging, _DELETE),
    "/createMultipartUpload": Endpoint(create_multipart_upload, _POST),
    "/uploadPart": Endpoint(upload_part, _POST, takes_file=True),
    "/completeMultipartUpload": Endpoint(complete_multipart_upload, _POST),
    "/abortMultipartUpload": Endpoint(abort_multipart_upload, _POST),
    "/listMultipartUploads": Endpoint(list_multipart_uploads, _READ),
    "/listParts": Endpoint(list_parts, _READ),
}

PATHS: frozenset[str] = frozenset(ENDPOINTS)


def create_app(
    ctx: Context, metrics: HttpMetrics | None = None, *, clients: ClientCache | None = None
) -> Observability:
    """The facade's ASGI app: a client of the services it is pointed at, which
    ``ctx.outbound`` vets before each call; ``clients`` replaces the client
    cache (tests watch the calls through it)."""
    cache = clients or ClientCache()
    outbound = ctx.outbound
    uploads = up.Admission(ctx.settings.gateway_max_uploads)

    async def serve(request: Request) -> Response:
        endpoint = ENDPOINTS[request.url.path]
        xml = wants_xml(request)
        if request.method not in endpoint.methods:
            return not_allowed(request)
        try:
            body = await read_body(request, takes_file=endpoint.takes_file)
            call = Call(request, body, cache, outbound)
            xml = call.xml
            s3 = await call.s3() if endpoint.auth else None
            if endpoint.takes_file:  # the handler reads the body: it sees the client leave
                with uploads.take(*caller_of(request)):  # before the file is read
                    return await endpoint.handler(call, s3)
            # The body is in: a client that leaves ends the call (found by
            # review, 2026-12-06: calls to a silent service ran on for nobody),
            # and so does one that sent its EOF, after a grace (found by
            # review: closed connections held every slot for 75 s).
            return await watched(request, endpoint.handler(call, s3))
        except GatewayError as exc:
            return failure(exc.message, xml=xml)
        except ServerBusy as exc:  # the envelope's 503: the caller may try again shortly
            return answer(FAILED, exc.message, xml=xml, headers={"Retry-After": RETRY_AFTER})
        except DomainError as exc:
            return failure(exc.message, xml=xml)
        except Gone:
            return failure(gone(client_ends(request.scope)), xml=xml)
        except ClientDisconnect:  # gone mid-body: nothing was stored, nobody reads this
            return failure("the client disconnected before the request was read", xml=xml)
        except Exception as exc:  # no request data in the log: it may hold keys
            log.error("gateway: unexpected error", path=request.url.path, error=type(exc).__name__)
            return failure(f"internal error ({type(exc).__name__})", xml=xml)

    async def refused_method(request: Request, exc: Exception) -> Response:
        # Methods no route takes (OPTIONS, TRACE, made-up ones): Starlette's
        # own answer was plain text, with an Allow of the routes' methods.
        return not_allowed(request)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    app = Starlette(
        routes=[Route(path, serve, methods=methods) for path in ENDPOINTS],
        exception_handlers={405: refused_method},
    )
    return Observability(app, protocol=PROTOCOL, metrics=metrics or HttpMetrics())


def not_allowed(request: Request) -> Response:
    """``405`` in the envelope, with the endpoint's own methods in ``Allow``."""
    return _not_allowed(request.method, request.url.path, xml=wants_xml(request))


def unknown_method(line: RequestLine) -> Response | None:
    """The main listener's answer to a request whose method its HTTP parser
    does not know (``BREW``; ``api/common/connection.py``): on the facade's
    paths the same ``405`` as for any method a path does not take; ``None``
    on others."""
    if line.path not in ENDPOINTS:
        return None
    return _not_allowed(line.method, line.path, xml=query_wants_xml(QueryParams(line.query)))


def _not_allowed(method: str, path: str, *, xml: bool) -> Response:
    allowed = ", ".join(sorted(ENDPOINTS[path].methods))
    return answer(
        -1,
        f"method {method[:20]} not allowed on {path} (use {allowed})",
        xml=xml,
        status=405,
        headers={"Allow": allowed},
    )
