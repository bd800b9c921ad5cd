"""Small request bodies (the XML documents of DeleteObjects, tagging, ACL,
CORS and CreateBucket), read whole, with the ``Content-MD5`` and
``x-amz-checksum-*`` (header or trailer) they carry verified."""

from __future__ import annotations

import hashlib

from jointcloud.api.s3.errors import InvalidRequestS3
from jointcloud.api.s3.headers import content_md5, supplied_checksums
from jointcloud.api.s3.request import S3Request
from jointcloud.api.s3.xmlio import MAX_XML
from jointcloud.core.commands import checksum_of
from jointcloud.errors import BadDigest


def verify_digests(r: S3Request, body: bytes, *, required: bool = False) -> None:
    """``BadDigest`` naming the algorithm when a digest sent does not match
    ``body``; ``required``: one must be sent (AWS's rule for DeleteObjects)."""
    md5 = content_md5(r)
    # A header and a trailer of one algorithm are both checked.
    given = [*supplied_checksums(r).items(), *r.trailing_checksums().items()]
    if required and md5 is None and not given:
        raise InvalidRequestS3(
            "Missing required header for this request: Content-MD5 OR x-amz-checksum-*"
        )
    if md5 is not None and hashlib.md5(body).hexdigest() != md5:
        raise BadDigest("The Content-MD5 you specified did not match what we received.")
    for algorithm, value in given:
        if checksum_of(algorithm, body) != value:
            raise BadDigest(
                f"The {algorithm.value} you specified did not match the calculated checksum."
            )


async def read_document(r: S3Request, limit: int = MAX_XML, *, required: bool = False) -> bytes:
    """The whole body (at most ``limit`` bytes), its digests verified."""
    body = await r.read_small(limit)
    verify_digests(r, body, required=required)
    return body
