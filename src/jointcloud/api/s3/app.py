"""The S3-compatible endpoint: one ASGI app on its own listener (it needs the
whole URL space).

A request is addressed (path or virtual-host style), named (the S3
operation, from method, target and sub-resource), authenticated (SigV4,
SigV2, presigned) and handed to the handler registered for that name in
``OPS``. An operation without a handler answers ``501 NotImplemented``
naming it. Every error is S3 XML from the one table in ``errors.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from typing import Literal

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from jointcloud import errors
from jointcloud.api.common.observability import (
    HttpMetrics,
    Observability,
    current_request_id,
    new_request_id,
)
from jointcloud.api.common.xmltext import xml_safe
from jointcloud.api.s3.errors import (
    InvalidArgumentS3,
    MethodNotAllowed,
    NotImplementedOp,
    error_response,
)
from jointcloud.api.s3.request import S3Request, Target, authenticate, target_of
from jointcloud.api.s3.sigv4 import SignedRequest, SigningContext
from jointcloud.context import Context
from jointcloud.core.authz import Principal

log = structlog.get_logger(__name__)

PROTOCOL = "s3"
Handler = Callable[[S3Request], Awaitable[Response]]
OPS: dict[str, Handler] = {}


def op(name: str) -> Callable[[Handler], Handler]:
    """Register the handler of an S3 operation."""

    def register(handler: Handler) -> Handler:
        OPS[name] = handler
        return handler

    return register


# Sub-resources whose operations are not supported: the name in the 501.
_BUCKET_UNSUPPORTED = {
    "policy": "BucketPolicy",
    "lifecycle": "BucketLifecycleConfiguration",
    "website": "BucketWebsite",
    "encryption": "BucketEncryption",
    "logging": "BucketLogging",
    "notification": "BucketNotificationConfiguration",
    "replication": "BucketReplication",
    "requestPayment": "BucketRequestPayment",
    "object-lock": "ObjectLockConfiguration",
    "ownershipControls": "BucketOwnershipControls",
    "publicAccessBlock": "PublicAccessBlock",
    "accelerate": "BucketAccelerateConfiguration",
    "analytics": "BucketAnalyticsConfiguration",
    "intelligent-tiering": "BucketIntelligentTieringConfiguration",
    "inventory": "BucketInventoryConfiguration",
    "metrics": "BucketMetricsConfiguration",
    "metadataTable": "BucketMetadataTableConfiguration",
    "policyStatus": "BucketPolicyStatus",
}
_OBJECT_UNSUPPORTED = {
    "retention": "ObjectRetention",
    "legal-hold": "ObjectLegalHold",
    "torrent": "ObjectTorrent",
    "attributes": "ObjectAttributes",
}
# Operations whose name is not a verb and a resource.
_OBJECT_ACTIONS = {
    "restore": "RestoreObject",
    "select": "SelectObjectContent",
    "renameObject": "RenameObject",
}
_VERB = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Get", "POST": "Post"}
# Sub-resources a PUT or DELETE does not act on (beyond those it does): a
# request naming one is refused (405), as Swift's s3api refuses a method its
# sub-resource's controller lacks, not read as the plain operation (found by
# fuzzing, 2026-12-06: ``DELETE /bucket?versioning`` deleted the bucket, and
# ``PUT /key?uploadId=...`` without ``partNumber`` overwrote the object).
_NOT_FOR = {
    ("bucket", "PUT"): ("location", "versions", "uploads", "delete"),
    ("bucket", "DELETE"): ("location", "versioning", "versions", "uploads", "acl", "delete"),
    ("object", "PUT"): ("uploads",),
    ("object", "DELETE"): ("uploads", "acl"),
}


def _refuse_sub_resource(level: Literal["bucket", "object"], method: str, query: set[str]) -> None:
    for sub in _NOT_FOR.get((level, method), ()):
        if sub in query:
            where = "a bucket" if level == "bucket" else "an object"
            raise MethodNotAllowed(f"{method} is not allowed on {where} with ?{sub}")


def operation_name(method: str, target: Target, query: set[str], headers: Request) -> str:
    """The S3 operation a request asks for (AWS's names)."""
    if target.bucket is None:
        if method in ("GET", "HEAD"):
            return "ListBuckets"
        raise MethodNotAllowed(f"{method} is not allowed on the service")
    if method == "OPTIONS":
        return "PreflightCors"
    if target.key is None:
        for sub, name in _BUCKET_UNSUPPORTED.items():
            if sub in query:
                return _VERB.get(method, method.title()) + name
        _refuse_sub_resource("bucket", method, query)
        if method == "GET":
            for sub, name in (
                ("location", "GetBucketLocation"),
                ("versioning", "GetBucketVersioning"),
                ("versions", "ListObjectVersions"),
                ("tagging", "GetBucketTagging"),
                ("cors", "GetBucketCors"),
                ("uploads", "ListMultipartUploads"),
                ("acl", "GetBucketAcl"),
            ):
                if sub in query:
                    return name
            return "ListObjectsV2" if "list-type" in query else "ListObjects"
        if method == "HEAD":
            return "HeadBucket"
        if method == "PUT":
            for sub, name in (
                ("tagging", "PutBucketTagging"),
                ("cors", "PutBucketCors"),
                ("versioning", "PutBucketVersioning"),
                ("acl", "PutBucketAcl"),
            ):
                if sub in query:
                    return name
            return "CreateBucket"
        if method == "DELETE":
            for sub, name in (("tagging", "DeleteBucketTagging"), ("cors", "DeleteBucketCors")):
                if sub in query:
                    return name
            return "DeleteBucket"
        if method == "POST":
            return "DeleteObjects" if "delete" in query else "PostObject"
        raise MethodNotAllowed(f"{method} is not allowed on a bucket")
    for sub, name in _OBJECT_ACTIONS.items():
        if sub in query:
            return name
    if method in ("GET", "HEAD") and "attributes" in query:
        return "GetObjectAttributes"
    for sub, name in _OBJECT_UNSUPPORTED.items():
        if sub in query:
            return _VERB.get(method, method.title()) + name
    _refuse_sub_resource("object", method, query)
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        if "tagging" in query:
            return "GetObjectTagging"
        if "acl" in query:
            return "GetObjectAcl"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            copy = headers.headers.get("x-amz-copy-source")
            return "UploadPartCopy" if copy else "UploadPart"
        if "uploadId" in query:
            raise MethodNotAllowed("PUT with ?uploadId needs ?partNumber (UploadPart)")
        if "tagging" in query:
            return "PutObjectTagging"
        if "acl" in query:
            return "PutObjectAcl"
        return "CopyObject" if headers.headers.get("x-amz-copy-source") else "PutObject"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
    raise MethodNotAllowed(f"{method} is not allowed on an object")


# Operations answered before authentication (CORS preflight carries none).
UNAUTHENTICATED = frozenset({"PreflightCors", "PostObject"})
# Operations on one version of an object (``versionId``). Buckets here are
# unversioned: the only version is "null", and any other id is refused, not
# ignored (a review found DeleteObject with an old version's id deleting the
# live object, as a script pruning old versions would).
VERSIONED = frozenset(
    {
        "GetObject",
        "HeadObject",
        "DeleteObject",
        "GetObjectTagging",
        "PutObjectTagging",
        "DeleteObjectTagging",
        "GetObjectAcl",
        "PutObjectAcl",
        "GetObjectAttributes",
    }
)


def check_version(name: str, request: Request) -> None:
    """AWS's answer to a version id an unversioned bucket never issued."""
    if name in VERSIONED:
        version = request.query_params.get("versionId")
        if version is not None and version != "null":
            raise InvalidArgumentS3(
                "Invalid version id specified",
                ArgumentName="versionId",
                ArgumentValue=xml_safe(version[:256]),
            )


class _BodyWatch:
    """Whether the request body has been read to its end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.finished = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.finished = True
        return message


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    if length is not None:
        return length != "0"
    return "transfer-encoding" in request.headers


class S3App:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.domains = ctx.settings.s3_domains

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        body = _BodyWatch(receive)
        receive = body.receive
        request = Request(scope, receive)
        request_id = current_request_id() or new_request_id()
        target = target_of(
            scope.get("raw_path") or scope["path"].encode(),
            request.headers.get("host"),
            self.domains,
        )
        head = request.method == "HEAD"
        s3req: S3Request | None = None
        try:
            query = set(request.query_params.keys())
            name = operation_name(request.method, target, query, request)
            scope["jcs.operation"] = name
            signed = SignedRequest.from_asgi(
                request.method,
                scope.get("raw_path") or scope["path"].encode(),
                scope.get("query_string", b""),
                scope["headers"],
            )
            principal: Principal | None = None
            signing: SigningContext | None = None
            if name not in UNAUTHENTICATED:
                # As AWS: who asks is checked before what is asked.
                principal, signing = await authenticate(self.ctx, signed, target)
            handler = OPS.get(name)
            if handler is None:
                raise NotImplementedOp(f"the S3 operation {name} is not implemented here")
            check_version(name, request)
            s3req = S3Request(self.ctx, request, signed, target, principal, request_id, signing)
            response = await handler(s3req)
        except errors.DomainError as exc:
            response = error_response(
                exc,
                resource=target.resource,
                request_id=request_id,
                head=head,
                named=target.named(request.query_params.get("uploadId")),
            )
        except ClientDisconnect:
            return  # the client went away mid-body: nothing was committed
        except Exception as exc:  # a bug: answer S3's InternalError, log no request data
            log.exception("unhandled error", error_type=type(exc).__name__)
            response = error_response(
                errors.OperationFailed("We encountered an internal error. Please try again."),
                resource=target.resource,
                request_id=request_id,
                head=head,
            )
        if s3req is not None and "origin" in request.headers:
            from jointcloud.api.s3.ops_cors import cors_headers  # a request from a browser

            try:
                await cors_headers(s3req, response.headers)
            except Exception as exc:  # a bug: the answer goes without CORS headers
                log.exception("unhandled error in CORS headers", error_type=type(exc).__name__)
        response.headers.setdefault("x-amz-request-id", request_id)
        if not body.finished and _has_body(request):
            # Answered before the body was read (a refusal): a client that
            # sent "Expect: 100-continue" never sends it, and one that did
            # would have its next request read as the rest of this body.
            response.headers["connection"] = "close"
        await response(scope, receive, send)


def load_operations() -> None:
    """Import every ``ops_*`` module of this package: each registers its
    handlers in ``OPS`` (a new module needs no line here)."""
    import jointcloud.api.s3 as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("ops_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


def create_app(ctx: Context, metrics: HttpMetrics | None = None) -> Observability:
    load_operations()
    return Observability(S3App(ctx), protocol=PROTOCOL, metrics=metrics or HttpMetrics())
