"""What S3 carries in headers: an object's metadata and checksums in, the
same out (shared by PutObject, CopyObject, multipart and GetObject)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from jointcloud.api.common.http import http_date
from jointcloud.api.s3.errors import (
    AccessControlListNotSupported,
    EntityTooLargeS3,
    InvalidArgumentS3,
    InvalidBucketAclWithObjectOwnership,
    InvalidDigest,
    InvalidRedirectLocation,
    InvalidRequestS3,
    InvalidTag,
    NotImplementedOp,
    S3Error,
)
from jointcloud.api.s3.metatext import metadata_header, plain_header, stored_text
from jointcloud.api.s3.request import CHECKSUM_HEADERS, S3Request
from jointcloud.api.s3.xmlio import Value
from jointcloud.core.commands import tag_map
from jointcloud.core.models import ChecksumAlgorithm, ObjectInfo, ObjectMeta
from jointcloud.core.multipart import MAX_PART_NUMBER
from jointcloud.errors import BadArgument

CANNED = frozenset(
    {
        "private",
        "public-read",
        "public-read-write",
        "authenticated-read",
        "aws-exec-read",
        "bucket-owner-read",
        "bucket-owner-full-control",
        "log-delivery-write",
    }
)
GRANT_HEADERS = (
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
)
PUBLISH = (
    "public and shared ACLs are not supported: buckets and objects are private to their "
    "project; publish an object with link sharing (/s/<access>/<bucket>/<key>)"
)


def acl_refused(what: str) -> S3Error:
    """A public or shared ACL (``what`` names it), answered as AWS answers
    it on a bucket whose ACLs are disabled, with where to go instead."""
    return AccessControlListNotSupported(f"The bucket does not allow ACLs ({what}): {PUBLISH}")


def bucket_acl_refused(what: str) -> S3Error:
    """``acl_refused`` for CreateBucket: AWS answers a new bucket's public
    ACL with the code of its default ownership setting instead."""
    return InvalidBucketAclWithObjectOwnership(
        "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting "
        f"({what}): {PUBLISH}"
    )


def decimal(raw: str | None, digits: int) -> int | None:
    """``raw`` as a non-negative integer of at most ``digits`` ASCII digits,
    else None. ASCII only: ``str.isdigit`` takes '²', which ``int`` refuses;
    bounded: ``int`` refuses over 4,300 digits."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > digits:
        return None
    return int(raw)


def part_number(raw: str) -> int:
    """A ``partNumber`` (1 to 10,000, as S3)."""
    number = decimal(raw, 6)
    if number is None or not 1 <= number <= MAX_PART_NUMBER:
        raise InvalidArgumentS3(
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=raw[:16],
        )
    return number


# What leaves an object its owner's alone. The writer here is always the
# owner, so ``bucket-owner-full-control`` grants nothing more than
# ``private``: AWS takes it on buckets whose ACLs are disabled (every new
# bucket since 2023), and cross-account pipelines send it on every write.
PRIVATE_CANNED = frozenset({"private", "bucket-owner-full-control"})


def check_canned(
    value: str, argument: str = "x-amz-acl", refused: Callable[[str], S3Error] = acl_refused
) -> None:
    """A canned ACL: a private one passes, another is ``NotImplemented``."""
    canned = value.strip().lower()
    if canned not in CANNED:
        raise InvalidArgumentS3(
            f"the canned ACL {value[:40]!r} is not one of S3's",
            ArgumentName=argument,
            ArgumentValue=value[:64],
        )
    if canned not in PRIVATE_CANNED:
        raise refused(f"{argument}: {canned}")


GRANTS = (
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
)


def check_acl_header(r: S3Request, refused: Callable[[str], S3Error] = acl_refused) -> None:
    """``x-amz-acl`` on a write (PutObject, CreateBucket, copies, uploads):
    a private one or nothing; a public one is refused, not ignored. Explicit
    grants (``x-amz-grant-*``) are refused as Put*Acl refuses them."""
    value = r.header("x-amz-acl")
    if value is not None:
        check_canned(value, refused=refused)
    for grant in GRANTS:
        if r.header(grant) is not None:
            raise refused(f"{grant}: grants are not supported")


# Every object is encrypted at rest with AES-256-GCM under keys the server
# keeps (redundancy/cipher.py): S3's SSE-S3, which AWS applies by default
# and reports on every object response.
SSE = {"x-amz-server-side-encryption": "AES256"}
_SSE_C = "x-amz-server-side-encryption-customer-"
SSE_C_NOT_APPLICABLE = "The encryption parameters are not applicable to this object."


def check_encryption_headers(r: S3Request) -> None:
    """SSE-S3 (``AES256``) is what every object gets; SSE-KMS and SSE-C
    (customer keys) are refused, never ignored: a client would believe its
    data needs a key it does not. Malformed or conflicting headers are
    ``400 InvalidArgument`` first, as AWS answers them."""
    if r.header("x-amz-copy-source-" + _SSE_C + "algorithm") is not None:
        raise InvalidRequestS3(SSE_C_NOT_APPLICABLE)
    sse = r.header("x-amz-server-side-encryption")
    kms_key = r.header("x-amz-server-side-encryption-aws-kms-key-id")
    customer = [r.header(_SSE_C + suffix) for suffix in ("algorithm", "key", "key-md5")]
    if any(v is not None for v in customer):
        _check_customer_key(sse, *customer)
        raise NotImplementedOp(
            "server-side encryption with customer keys (SSE-C) is not supported: "
            "objects are encrypted with the server's keys"
        )
    if kms_key is not None and not (sse or "").startswith("aws:kms"):
        raise InvalidArgumentS3(
            "x-amz-server-side-encryption-aws-kms-key-id needs "
            "x-amz-server-side-encryption: aws:kms",
            ArgumentName="x-amz-server-side-encryption",
        )
    if sse is not None and sse != "AES256":
        if sse.startswith("aws:kms"):
            raise NotImplementedOp(
                f"x-amz-server-side-encryption: {sse[:40]}: KMS keys are not supported"
            )
        raise InvalidArgumentS3(
            "The encryption method specified is not supported",
            ArgumentName="x-amz-server-side-encryption",
            ArgumentValue=sse[:64],
        )


def _check_customer_key(
    sse: str | None, algorithm: str | None, key: str | None, key_md5: str | None
) -> None:
    def bad(message: str) -> S3Error:
        return InvalidArgumentS3(message, ArgumentName=_SSE_C + "algorithm")

    if sse is not None:
        raise bad(
            "Server Side Encryption with Customer provided key is incompatible with "
            "the encryption method specified"
        )
    if algorithm is None or key is None:
        raise bad(
            "Requests specifying Server Side Encryption with Customer provided keys "
            "must provide an appropriate secret key and algorithm"
        )
    if algorithm != "AES256":
        raise bad("The encryption algorithm specified is not supported")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise bad("The secret key was invalid for the specified algorithm")
    if key_md5 is not None and base64.b64encode(hashlib.md5(raw).digest()).decode() != key_md5:
        raise bad("The calculated MD5 hash of the key did not match the hash that was provided")


def check_read_encryption_headers(r: S3Request) -> bool:
    """A read names no encryption: objects are SSE-S3, whose reads need no
    header. True if it names SSE-C parameters, which do not apply to any
    object here: the caller refuses them once the object is found (AWS: 400
    for an object, but 404 where there is none)."""
    if r.header("x-amz-server-side-encryption") is not None:
        raise InvalidArgumentS3(
            "x-amz-server-side-encryption is not a header of reads",
            ArgumentName="x-amz-server-side-encryption",
        )
    return r.header(_SSE_C + "algorithm") is not None or r.header(_SSE_C + "key") is not None


# Object Lock: no bucket has it (its configuration is answered 501).
OBJECT_LOCK = (
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
)


def check_object_lock_headers(r: S3Request) -> None:
    """A write that asks to lock its object is refused as AWS refuses it on
    a bucket without Object Lock, never stored unlocked: a client would
    believe it cannot be deleted."""
    if any(r.header(name) is not None for name in OBJECT_LOCK):
        raise InvalidRequestS3("Bucket is missing ObjectLockConfiguration")


META_PREFIX = "x-amz-meta-"
DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what AWS stores when none is sent


def object_meta(r: S3Request, *, tags: bool = True) -> ObjectMeta:
    """Content headers, ``x-amz-meta-*`` and ``x-amz-tagging`` of a write
    (whose ``x-amz-acl`` must be private)."""
    check_acl_header(r)
    check_encryption_headers(r)
    check_object_lock_headers(r)

    def text(name: str) -> str | None:
        raw = r.header(name)
        return None if raw is None else stored_text(raw)

    encoding = text("content-encoding")
    if encoding is not None:
        # aws-chunked describes the transfer, not the object (AWS drops it).
        kept = [e.strip() for e in encoding.split(",") if e.strip().lower() != "aws-chunked"]
        encoding = ", ".join(kept) or None
    user: dict[str, str] = {}
    for name, value in r.header_items():
        if name.startswith(META_PREFIX):
            key, given = name[len(META_PREFIX) :], stored_text(value)
            # Repeated, the values join with commas, as AWS (and HTTP) joins
            # them; the last one alone was kept (found by review).
            user[key] = f"{user[key]},{given}" if key in user else given
    return ObjectMeta(
        content_type=text("content-type") or DEFAULT_CONTENT_TYPE,
        content_encoding=encoding,
        cache_control=text("cache-control"),
        content_disposition=text("content-disposition"),
        expires=text("expires"),
        content_language=text("content-language"),
        website_redirect_location=website_redirect(r.header(REDIRECT)),
        user_metadata=user,
        tags=tagging_header(r.header("x-amz-tagging")) if tags else {},
    )


REDIRECT = "x-amz-website-redirect-location"
_REDIRECT_PREFIXES = ("/", "http://", "https://")


def website_redirect(value: str | None) -> str | None:
    """``x-amz-website-redirect-location``: kept with the object (S3 keeps
    it whether or not the bucket is a website); AWS takes a path of the
    bucket or an absolute http(s) URL, nothing else."""
    if value is None:
        return None
    check_redirect(value)
    return stored_text(value)


def check_redirect(value: str) -> None:
    if not value.startswith(_REDIRECT_PREFIXES):
        raise InvalidRedirectLocation(
            "The website redirect location must have a prefix of 'http://' or 'https://' or '/'."
        )


def tagging_header(value: str | None) -> dict[str, str]:
    """``x-amz-tagging: k1=v1&k2=v2`` (URL-encoded)."""
    if not value:
        return {}
    try:
        # Lenient as AWS: a bare ``k`` is the tag k with an empty value.
        pairs = [
            (unquote_plus(k, errors="strict"), unquote_plus(v, errors="strict"))
            for k, _, v in (item.partition("=") for item in value.split("&") if item)
        ]
        return tag_map(pairs)
    except UnicodeDecodeError:
        raise InvalidTag("x-amz-tagging must be a URL-encoded query string of tags") from None
    except BadArgument as exc:
        raise InvalidTag(exc.message) from None


def content_md5(r: S3Request) -> str | None:
    """``Content-MD5`` (base64 of 16 bytes) as hex, for core to verify."""
    return md5_hex(r.header("content-md5"))


def md5_hex(value: str | None) -> str | None:
    """A ``Content-MD5`` value (base64 of 16 bytes) as hex."""
    if value is None:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise InvalidDigest("The Content-MD5 you specified is not valid.")
    return raw.hex()


def supplied_checksums(r: S3Request) -> dict[ChecksumAlgorithm, str]:
    """``x-amz-checksum-<algorithm>`` values sent with the request."""
    found = {
        algorithm: value.strip()
        for name, algorithm in CHECKSUM_HEADERS.items()
        if (value := r.header(name)) is not None
    }
    if len(found) > 1:
        raise InvalidArgumentS3("Expecting a single x-amz-checksum- header")
    return found


def announced_algorithm(r: S3Request) -> ChecksumAlgorithm | None:
    """``x-amz-checksum-algorithm`` / ``x-amz-sdk-checksum-algorithm``."""
    value = r.header("x-amz-checksum-algorithm") or r.header("x-amz-sdk-checksum-algorithm")
    if value is None:
        return None
    try:
        return ChecksumAlgorithm(value.strip().upper())
    except ValueError:
        raise InvalidArgumentS3(
            f"Invalid checksum algorithm {value[:32]!r}; one of "
            + ", ".join(a.value for a in ChecksumAlgorithm)
        ) from None


@dataclass(frozen=True)
class BodyChecks:
    """What a body upload (PutObject, UploadPart) verifies and computes."""

    given: dict[ChecksumAlgorithm, str]  # values in headers
    compute: frozenset[ChecksumAlgorithm]  # announced, or coming in the trailer
    trailing: bool  # values come after the body


def body_checks(r: S3Request, limit: int) -> BodyChecks:
    """Refuse a body declared larger than ``limit`` (before reading it) and
    say which checksums to verify and compute."""
    raw = r.header("x-amz-decoded-content-length") or r.header("content-length")
    size = decimal(raw, 19)
    if size is not None and size > limit:
        raise EntityTooLargeS3(
            "Your proposed upload exceeds the maximum allowed size",
            ProposedSize=str(size),
            MaxSizeAllowed=str(limit),
        )
    given = supplied_checksums(r)
    trailing = r.trailer_algorithms()
    announced = announced_algorithm(r)
    compute = set(trailing)
    if announced is not None and announced not in given:
        compute.add(announced)
    return BodyChecks(given, frozenset(compute), bool(trailing))


def checksum_headers(checksums: Mapping[ChecksumAlgorithm, str]) -> dict[str, str]:
    return {f"x-amz-checksum-{a.value.lower()}": v for a, v in checksums.items()}


def checksum_type(checksums: Mapping[ChecksumAlgorithm, str]) -> str:
    """COMPOSITE for a checksum of the parts' checksums (``…-N``), else
    FULL_OBJECT (of every byte)."""
    return "COMPOSITE" if any("-" in v for v in checksums.values()) else "FULL_OBJECT"


def object_checksum_headers(checksums: Mapping[ChecksumAlgorithm, str]) -> dict[str, str]:
    """An object's checksums and their type (a part's have none)."""
    out = checksum_headers(checksums)
    if out:
        out["x-amz-checksum-type"] = checksum_type(checksums)
    return out


def part_checksum_headers(
    part: Mapping[ChecksumAlgorithm, str], whole: Mapping[ChecksumAlgorithm, str]
) -> dict[str, str]:
    """A part's own checksums, with the type of the object's (a part of a
    COMPOSITE object is read as one)."""
    out = checksum_headers(part)
    if out and whole:
        out["x-amz-checksum-type"] = checksum_type(whole)
    return out


def checksum_fields(checksums: Mapping[ChecksumAlgorithm, str]) -> list[tuple[str, Value]]:
    """``Checksum<ALGORITHM>`` elements (and their type) of a result."""
    fields: list[tuple[str, Value]] = [
        (f"Checksum{a.value}", v) for a, v in sorted(checksums.items())
    ]
    if fields:
        fields.append(("ChecksumType", checksum_type(checksums)))
    return fields


def object_headers(info: ObjectInfo, *, checksums: bool) -> dict[str, str]:
    """The headers GetObject and HeadObject answer with (without lengths)."""
    meta = info.meta
    # what a POST form stored may be any text (metatext.py)
    out = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": http_date(info.update_time),
        "Accept-Ranges": "bytes",
        "Content-Type": plain_header(meta.content_type or DEFAULT_CONTENT_TYPE),
        **SSE,
    }
    for header, value in (
        ("Content-Encoding", meta.content_encoding),
        ("Cache-Control", meta.cache_control),
        ("Content-Disposition", meta.content_disposition),
        ("Expires", meta.expires),
        ("Content-Language", meta.content_language),
        (REDIRECT, meta.website_redirect_location),
    ):
        if value is not None:
            out[header] = plain_header(value)
    for name, value in meta.user_metadata.items():
        out[META_PREFIX + name] = metadata_header(value)
    if meta.tags:
        out["x-amz-tagging-count"] = str(len(meta.tags))
    if checksums:
        out.update(object_checksum_headers(info.checksums))
    return out


# GetObject's response-* overrides (signed requests only, as AWS).
OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
