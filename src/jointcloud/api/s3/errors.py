"""S3 errors: the ONE table from domain errors to AWS error codes and HTTP
statuses, and the error XML (``Code``, ``Message``, ``Resource``,
``RequestId`` and the extra elements AWS adds for some codes).

Errors only S3 has (an unsupported operation, malformed XML, a bucket name
AWS would refuse) are :class:`S3Error` with their code; authentication
errors of ``sigv4``/``sigv2``/``chunked``/``postpolicy`` carry ``s3_code``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from starlette.responses import Response

from jointcloud import errors
from jointcloud.api.common.connection import Problem
from jointcloud.api.common.http import http_date
from jointcloud.api.common.xmltext import xml_safe
from jointcloud.api.s3.sigv4 import S3AuthError, SignatureDoesNotMatch
from jointcloud.api.s3.xmlio import MalformedXMLError, Value, render

# Status of each code the auth modules raise (sigv4.py's table).
AUTH_STATUS = {
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "InvalidArgument": 400,
    "InvalidRequest": 400,
    "SignatureDoesNotMatch": 403,
    "RequestTimeTooSkewed": 403,
    "AccessDenied": 403,
    "XAmzContentSHA256Mismatch": 400,
    "IncompleteBody": 400,
    "MalformedTrailerError": 400,
    "InvalidPolicyDocument": 400,
    "InvalidToken": 400,
}


class S3Error(errors.DomainError):
    """An error only S3 has, with its code and status."""

    code: ClassVar[str] = "InvalidRequest"
    status: ClassVar[int] = 400

    def __init__(self, message: str, **extra: str) -> None:
        super().__init__(message)
        self.extra = extra


def s3_error(code: str, status: int) -> type[S3Error]:
    return type(code, (S3Error,), {"code": code, "status": status})


NotImplementedOp = s3_error("NotImplemented", 501)
# A public or shared ACL: AWS's answer on a bucket whose ACLs are disabled
# (every new bucket since 2023). Not 501: clients retry a 5xx (s3cmd sent
# the whole body five times over 45 s, then hid the message).
AccessControlListNotSupported = s3_error("AccessControlListNotSupported", 400)
# ... and on CreateBucket, where AWS names the bucket's ownership setting.
InvalidBucketAclWithObjectOwnership = s3_error("InvalidBucketAclWithObjectOwnership", 400)
SlowDown = s3_error("SlowDown", 503)  # the process is at its limit of connections
MethodNotAllowed = s3_error("MethodNotAllowed", 405)
MalformedXML = s3_error("MalformedXML", 400)  # see also xmlio.MalformedXMLError
InvalidBucketName = s3_error("InvalidBucketName", 400)
InvalidBucketNamespace = s3_error("InvalidBucketNamespace", 400)
MissingContentLength = s3_error("MissingContentLength", 411)
RequestHeaderSectionTooLarge = s3_error("RequestHeaderSectionTooLarge", 400)
RequestTimeout = s3_error("RequestTimeout", 400)
InvalidDigest = s3_error("InvalidDigest", 400)
InvalidTag = s3_error("InvalidTag", 400)
KeyTooLong = s3_error("KeyTooLongError", 400)
InvalidArgumentS3 = s3_error("InvalidArgument", 400)
NoSuchCORSConfiguration = s3_error("NoSuchCORSConfiguration", 404)
NoSuchTagSet = s3_error("NoSuchTagSet", 404)
EntityTooLargeS3 = s3_error("EntityTooLarge", 400)
InvalidRequestS3 = s3_error("InvalidRequest", 400)
InvalidPartS3 = s3_error("InvalidPart", 400)
InvalidURI = s3_error("InvalidURI", 400)
AccessForbidden = s3_error("AccessForbidden", 403)  # a CORS preflight refused
BadRequest = s3_error("BadRequest", 400)
MalformedACLError = s3_error("MalformedACLError", 400)
UnexpectedContent = s3_error("UnexpectedContent", 400)
MaxPostPreDataLengthExceeded = s3_error("MaxPostPreDataLengthExceeded", 400)
EntityTooSmallS3 = s3_error("EntityTooSmall", 400)
PreconditionFailedS3 = s3_error("PreconditionFailed", 412)
NoSuchVersion = s3_error("NoSuchVersion", 404)
InvalidRedirectLocation = s3_error("InvalidRedirectLocation", 400)

# Domain errors, most specific first: (class, code, status).
TABLE: list[tuple[type[errors.DomainError], str, int]] = [
    (errors.PackageNotFound, "NoSuchBucket", 404),
    (errors.BucketNotFound, "NoSuchBucket", 404),
    (errors.ObjectNotFound, "NoSuchKey", 404),
    (errors.UploadNotFound, "NoSuchUpload", 404),
    (errors.PartNotFound, "InvalidPart", 400),
    (errors.NotEmpty, "BucketNotEmpty", 409),
    (errors.AlreadyExists, "BucketAlreadyOwnedByYou", 409),
    (errors.PreconditionFailed, "PreconditionFailed", 412),
    (errors.InvalidRange, "InvalidRange", 416),
    (errors.EntityTooSmall, "EntityTooSmall", 400),
    (errors.EntityTooLarge, "EntityTooLarge", 400),
    (errors.InvalidPartOrder, "InvalidPartOrder", 400),
    (errors.InvalidPart, "InvalidPart", 400),
    (errors.PayloadMismatch, "XAmzContentSHA256Mismatch", 400),
    (errors.BadDigest, "BadDigest", 400),
    (errors.ChecksumTypeMismatch, "InvalidRequest", 400),
    (errors.PartChecksumMissing, "InvalidRequest", 400),
    (errors.CopyTooLarge, "InvalidRequest", 400),
    (errors.MetadataTooLarge, "MetadataTooLarge", 400),
    (errors.BadArgument, "InvalidArgument", 400),
    (errors.SignatureMismatch, "SignatureDoesNotMatch", 403),
    (errors.UnknownAccessKey, "InvalidAccessKeyId", 403),
    (errors.Unauthorized, "AccessDenied", 403),
    (errors.QuotaExceeded, "QuotaExceeded", 403),
    (errors.Forbidden, "AccessDenied", 403),
    (errors.NotFound, "NoSuchKey", 404),
    (errors.Conflict, "OperationAborted", 409),
    (errors.SpaceTestFailed, "ServiceUnavailable", 503),
    (errors.InsufficientSpaces, "ServiceUnavailable", 503),
    (errors.NotEnoughBlocks, "ServiceUnavailable", 503),
    (errors.SpaceError, "ServiceUnavailable", 503),
    (errors.MetadataUnavailable, "ServiceUnavailable", 503),
    (errors.ServerBusy, "SlowDown", 503),
    (errors.OperationFailed, "InternalError", 500),
]


# AWS's own words for what does not exist, and the element naming it.
# Clients show the message (the AWS CLI prints it; its own tests match
# it), so it is AWS's, not ours; the element says which one.
MISSING = {
    "NoSuchBucket": ("The specified bucket does not exist", "BucketName"),
    "NoSuchKey": ("The specified key does not exist.", "Key"),
    "NoSuchUpload": (
        "The specified upload does not exist. The upload ID may be invalid, "
        "or the upload may have been aborted or completed.",
        "UploadId",
    ),
}
# AWS's words for a refusal whose domain message speaks of packages, which
# an S3 client knows as buckets (the gateway's seed shows this text).
AWS_WORDS = {"BucketNotEmpty": "The bucket you tried to delete is not empty"}


def classify(exc: errors.DomainError) -> tuple[str, int]:
    if isinstance(exc, MalformedXMLError):
        return "MalformedXML", 400
    if isinstance(exc, S3Error):
        return exc.code, exc.status
    if isinstance(exc, S3AuthError):
        return exc.s3_code, AUTH_STATUS.get(exc.s3_code, 400)
    for cls, code, status in TABLE:
        if isinstance(exc, cls):
            return code, status
    return "InternalError", 500


def _readable(text: str) -> str:
    """``text`` as XML can carry it: a path that was not UTF-8 holds lone
    surrogates, and one may hold controls (refused, but echoed)."""
    return xml_safe(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def malformed_request(request_id: str, problem: Problem) -> Response:
    """What AWS answers a request refused before it reached the app
    (``api/common/connection.py``): one its HTTP parser cannot read (a body longer
    than its Content-Length runs into the next request, a bad chunk size, a
    bad header line), a head too large, a head that did not arrive in time;
    and a connection over the process's limit, which AWS's SDKs retry."""
    exc: errors.DomainError
    if problem == "head_too_large":
        exc = RequestHeaderSectionTooLarge(
            "Your request header section exceeds the maximum allowed size."
        )
    elif problem == "too_many_connections":
        exc = SlowDown("Please reduce your request rate.")
    elif problem == "head_timeout":
        exc = RequestTimeout(
            "Your socket connection to the server was not read from or written to "
            "within the timeout period: the request's head did not arrive in time."
        )
    else:
        exc = BadRequest("An error occurred when parsing the HTTP request.")
    return error_response(exc, resource="", request_id=request_id)


def error_response(
    exc: errors.DomainError,
    *,
    resource: str,
    request_id: str,
    head: bool = False,
    named: Mapping[str, str | None] | None = None,
) -> Response:
    """The XML error AWS would send (no body for HEAD, as AWS). ``named``:
    the request's bucket, key and upload id by AWS's element names, for a
    "no such" error whose domain error does not say what it was named by."""
    if isinstance(exc, errors.NotModified):
        headers = {"x-amz-request-id": request_id}
        if exc.etag is not None:
            headers["ETag"] = f'"{exc.etag}"'
        if exc.update_time is not None:
            headers["Last-Modified"] = http_date(exc.update_time)
        return Response(status_code=304, headers=headers)
    code, status = classify(exc)
    message, extra = exc.message, None
    if code in MISSING and not isinstance(exc, S3Error):
        message, element = MISSING[code]
        name = exc.name if isinstance(exc, errors.NotFound) else None
        name = name if name is not None else (named or {}).get(element)
        extra = None if name is None else (element, name)
    elif code in AWS_WORDS and not isinstance(exc, S3Error):
        message = AWS_WORDS[code]
    fields: list[tuple[str, Value]] = [
        ("Code", code),
        ("Message", xml_safe(message)),
        ("Resource", _readable(resource)),
        ("RequestId", request_id),
    ]
    if isinstance(exc, S3Error):
        fields.extend((name, xml_safe(value)) for name, value in exc.extra.items())
    if extra is not None:
        fields.append((extra[0], _readable(extra[1])))
    if isinstance(exc, SignatureDoesNotMatch):
        fields.append(("StringToSign", exc.string_to_sign))
        fields.append(("CanonicalRequest", exc.canonical_request))
    headers = {"x-amz-request-id": request_id}
    if isinstance(exc, errors.InvalidRange):
        fields.append(("ActualObjectSize", str(exc.size)))
        headers["Content-Range"] = f"bytes */{exc.size}"
    body = b"" if head else render("Error", fields, namespace=False)
    return Response(body, status_code=status, media_type="application/xml", headers=headers)
