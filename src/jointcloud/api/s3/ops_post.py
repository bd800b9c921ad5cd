"""PostObject: a browser-based upload (``multipart/form-data`` POST to the
bucket) signed with a policy.

The form is streamed (``api.formdata``): the fields before ``file`` are read
(at most ``MAX_PRE_DATA`` bytes in all), the policy and its signature are
checked with the secret of the access key id the form names (SigV4
``x-amz-credential`` or SigV2 ``AWSAccessKeyId``), then the file streams
into core with ``content-length-range`` enforced as it arrives: nothing is
stored when it is out of range. Fields after the file are ignored, as AWS
does. The upload is the principal's behind that access key id, so a
restricted grant is restricted here too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import quote, urlencode, urlsplit

from starlette.responses import Response

from jointcloud.api.formdata import PART_OVERHEAD, FormPart, StreamingForm, boundary_of, drain
from jointcloud.api.s3.app import op
from jointcloud.api.s3.errors import (
    EntityTooLargeS3,
    EntityTooSmallS3,
    InvalidArgumentS3,
    MaxPostPreDataLengthExceeded,
    NotImplementedOp,
    PreconditionFailedS3,
)
from jointcloud.api.s3.headers import (
    DEFAULT_CONTENT_TYPE,
    META_PREFIX,
    REDIRECT,
    SSE,
    check_canned,
    check_redirect,
    md5_hex,
)
from jointcloud.api.s3.metatext import form_text
from jointcloud.api.s3.ops_object import MAX_PUT
from jointcloud.api.s3.ops_tagging import parse_tagging
from jointcloud.api.s3.postpolicy import (
    CHECKSUM_FIELD,
    form_fields,
    parse_post_form,
    verify_post,
)
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.sigv4 import check_no_session_token
from jointcloud.api.s3.xmlio import render
from jointcloud.core.commands import MAX_TAGS, ObjectAddress, PutObject
from jointcloud.core.models import ChecksumAlgorithm, ObjectMeta
from jointcloud.core.paths import MAX_PATH
from jointcloud.errors import AccessDenied, BadArgument

MAX_PRE_DATA = 128 * 1024  # the fields before the file, in all (AWS allows 20 KB)
ENCLOSURE = "Bucket POST must be of the enclosure-type multipart/form-data"
NO_KEY = (
    "Bucket POST must contain a field named 'key'.  "
    "If it is specified, please check the order of the fields."
)
NO_FILE = "POST requires exactly one file upload per request."


async def _fields_then_file(
    parts: AsyncIterator[FormPart],
) -> tuple[list[tuple[str, str]], FormPart | None]:
    """The form fields before ``file`` (names as sent) and the file part;
    ``parts`` goes on after it (``_rest``)."""
    fields: list[tuple[str, str]] = []
    budget = MAX_PRE_DATA
    async for part in parts:
        if part.name.lower() == "file":
            return fields, part
        # Empty parts are not free: 400,000 of them (21 MB) were each kept,
        # 5.8 s of the event loop before any signature was looked at.
        budget -= PART_OVERHEAD
        if budget < 0:
            raise MaxPostPreDataLengthExceeded(
                "Your POST request fields preceeding the upload file was too large.",
                MaxPostPreDataLength=str(MAX_PRE_DATA),
            )
        raw = bytearray()
        async for chunk in part.chunks():
            raw += chunk
            if len(raw) > budget:
                raise MaxPostPreDataLengthExceeded(
                    "Your POST request fields preceeding the upload file was too large.",
                    MaxPostPreDataLength=str(MAX_PRE_DATA),
                )
        budget -= len(raw)
        try:
            fields.append((part.name, raw.decode("utf-8")))
        except UnicodeDecodeError:
            raise InvalidArgumentS3(
                f"the form field {part.name[:64]!r} is not UTF-8 text",
                ArgumentName=part.name[:64],
            ) from None
    return fields, None


async def _rest(parts: AsyncIterator[FormPart]) -> None:
    """What follows the file: fields AWS ignores (up to 64 KiB), then the
    form's end and the request body's (``StreamingForm``)."""
    await drain(parts)


async def _bounded(
    chunks: AsyncIterator[bytes],
    low: int,
    high: int,
    limited: bool,
    rest: Callable[[], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """The file's bytes, refused as soon as they pass ``high`` and at the end
    when short of ``low``. The last piece is held back until then, and until
    ``rest`` (the rest of the request body) has come: core never commits a
    file out of range, nor one whose request did not end."""
    size = 0
    held = b""
    async for piece in chunks:
        size += len(piece)
        if size > high:
            if limited:
                raise EntityTooLargeS3(
                    "Your proposed upload exceeds the maximum allowed size",
                    ProposedSize=str(size),
                    MaxSizeAllowed=str(high),
                )
            raise EntityTooLargeS3(
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=str(size),
                MaxSizeAllowed=str(MAX_PUT),
            )
        if held:
            yield held
        held = piece
    if size < low:
        raise EntityTooSmallS3(
            "Your proposed upload is smaller than the minimum allowed size",
            ProposedSize=str(size),
            MinSizeAllowed=str(low),
        )
    await rest()
    if held:
        yield held


def _meta(form: dict[str, str]) -> ObjectMeta:
    user = {
        name[len(META_PREFIX) :]: form_text(value)
        for name, value in form.items()
        if name.startswith(META_PREFIX)
    }

    def text(name: str) -> str | None:
        value = form.get(name)
        return None if value is None else form_text(value)

    tagging = form.get("tagging")
    redirect = form.get(REDIRECT)
    if redirect is not None:
        check_redirect(redirect)
    return ObjectMeta(
        content_type=text("content-type") or DEFAULT_CONTENT_TYPE,
        content_encoding=text("content-encoding"),
        cache_control=text("cache-control"),
        content_disposition=text("content-disposition"),
        expires=text("expires"),
        website_redirect_location=text(REDIRECT),
        user_metadata=user,
        tags=parse_tagging(tagging.encode(), MAX_TAGS, "object") if tagging else {},
    )


def _object_url(r: S3Request, key: str) -> str:
    url = r.request.url
    base = f"{url.scheme}://{r.header('host') or url.netloc}"
    path = f"/{quote(key, safe='/~')}"
    return base + (path if r.target.virtual_host else f"/{quote(r.bucket, safe='')}{path}")


def _redirect(value: str | None) -> str | None:
    """``success_action_redirect`` if it is a URL (else it is ignored)."""
    if not value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:  # "http://[x": not a URL, so ignored as any other
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    # It becomes a Location header: non-ASCII and controls percent-encoded.
    return quote(value, safe="!#$%&'()*+,/:;=?@[]~")


_ALGORITHMS = {f"{CHECKSUM_FIELD}{a.value.lower()}": a for a in ChecksumAlgorithm}


def _check_encryption(by_name: dict[str, str]) -> None:
    """As on the other writes (headers.check_encryption_headers): SSE-S3 is
    what every object gets; customer keys and KMS are refused, not ignored."""
    sse = by_name.get("x-amz-server-side-encryption")
    if sse is not None and sse != "AES256":
        raise NotImplementedOp(f"x-amz-server-side-encryption: {sse[:40]} is not supported")
    if any(name.startswith("x-amz-server-side-encryption-") for name in by_name):
        raise NotImplementedOp(
            "server-side encryption with customer or KMS keys is not supported: "
            "objects are encrypted with the server's keys"
        )


def _checksums(by_name: dict[str, str]) -> dict[ChecksumAlgorithm, str]:
    """``x-amz-checksum-<algorithm>`` fields: verified against the file."""
    out: dict[ChecksumAlgorithm, str] = {}
    for name, value in by_name.items():
        if not name.startswith(CHECKSUM_FIELD) or name == CHECKSUM_FIELD + "algorithm":
            continue
        algorithm = _ALGORITHMS.get(name)
        if algorithm is None:
            raise InvalidArgumentS3(f"unknown checksum field {name!r}", ArgumentName=name)
        out[algorithm] = value
    return out


@op("PostObject")
async def post_object(r: S3Request) -> Response:
    r.refuse_trailer("PostObject")
    try:
        boundary = boundary_of(r.header("content-type"))
    except BadArgument:
        raise PreconditionFailedS3(ENCLOSURE, Condition=ENCLOSURE) from None
    parts = StreamingForm(aiter(r.body()), boundary).parts()
    fields, file = await _fields_then_file(parts)
    by_name = form_fields(fields)
    if "key" not in by_name:
        raise InvalidArgumentS3(NO_KEY, ArgumentName="key")
    if file is None:
        raise InvalidArgumentS3(NO_FILE, ArgumentName="file", ArgumentValue="0")
    auth = parse_post_form(fields)
    if auth is None:
        raise AccessDenied("Anonymous access is not allowed: sign the POST form with a policy")
    check_no_session_token(auth.security_token)
    access = await r.ctx.access.resolve(auth.access_key_id)
    policy = verify_post(
        auth,
        access.secret_key,
        fields,
        bucket=r.bucket,
        now=datetime.now(UTC),
        filename=file.filename or "",
    )
    r.caller = access.principal  # the form's signer (CORS headers of the answer too)
    key = policy.key
    if "key" not in by_name or not key:
        raise InvalidArgumentS3(NO_KEY, ArgumentName="key")
    if len(key.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise InvalidArgumentS3("Your key is too long", ArgumentName="key")
    if "acl" in by_name:
        check_canned(by_name["acl"], "acl")
    _check_encryption(by_name)
    low, high = policy.content_length_range or (0, MAX_PUT)
    body = _bounded(
        file.chunks(),
        low,
        min(high, MAX_PUT),
        policy.content_length_range is not None,
        lambda: _rest(parts),
    )
    info = await r.ctx.objects.put(
        access.principal,
        PutObject(
            ObjectAddress(r.package, key),
            body,
            meta=_meta(by_name),
            content_md5=md5_hex(by_name.get("content-md5")),
            checksums=_checksums(by_name),
        ),
    )
    etag = f'"{info.etag}"'
    location = _object_url(r, key)
    redirect = _redirect(by_name.get("success_action_redirect") or by_name.get("redirect"))
    if redirect is not None:
        query = urlencode({"bucket": r.bucket, "key": key, "etag": etag})
        target = redirect + ("&" if urlsplit(redirect).query else "?") + query
        return Response(status_code=303, headers={"Location": target, "ETag": etag})
    headers = {"ETag": etag, "Location": location, **SSE}
    status = by_name.get("success_action_status", "").strip()
    if status == "201":
        document = render(
            "PostResponse",
            [("Location", location), ("Bucket", r.bucket), ("Key", key), ("ETag", etag)],
            namespace=False,
        )
        return Response(document, status_code=201, media_type="application/xml", headers=headers)
    return Response(status_code=200 if status == "200" else 204, headers=headers)
