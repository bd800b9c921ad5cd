"""The digests of a small S3 document (DeleteObjects, tagging, ACL, CORS,
CreateBucket bodies): every one sent is checked, header and trailer alike."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Mapping
from typing import Any, cast

import pytest

from jointcloud.api.s3.documents import verify_digests
from jointcloud.api.s3.errors import InvalidRequestS3
from jointcloud.api.s3.request import S3Request
from jointcloud.core.models import ChecksumAlgorithm
from jointcloud.errors import BadDigest

BODY = b"<Tagging><TagSet/></Tagging>"
GOOD_CRC = base64.b64encode(zlib.crc32(BODY).to_bytes(4, "big")).decode()
BAD_CRC = base64.b64encode(b"\0\0\0\0").decode()


class Sent:
    """What ``verify_digests`` reads of a request: headers and trailers."""

    def __init__(self, headers: Mapping[str, str], trailers: Mapping[str, str]) -> None:
        self.headers = {k.lower(): v for k, v in headers.items()}
        names = {f"x-amz-checksum-{a.value.lower()}": a for a in ChecksumAlgorithm}
        self.trailers = {names[name]: value for name, value in trailers.items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def trailing_checksums(self) -> Mapping[ChecksumAlgorithm, str]:
        return self.trailers


def check(headers: Mapping[str, str], trailers: Mapping[str, str], **kw: Any) -> None:
    verify_digests(cast(S3Request, Sent(headers, trailers)), BODY, **kw)


def test_matching_digests_pass() -> None:
    md5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()
    check({"Content-MD5": md5, "x-amz-checksum-crc32": GOOD_CRC}, {})
    check({}, {"x-amz-checksum-crc32": GOOD_CRC})
    check({"x-amz-checksum-crc32": GOOD_CRC}, {"x-amz-checksum-crc32": GOOD_CRC})
    check({}, {})


@pytest.mark.parametrize(
    ("headers", "trailers"),
    [
        ({"x-amz-checksum-crc32": BAD_CRC}, {}),
        ({}, {"x-amz-checksum-crc32": BAD_CRC}),
        # Both sent: a good trailer does not hide a bad header, nor the reverse.
        ({"x-amz-checksum-crc32": BAD_CRC}, {"x-amz-checksum-crc32": GOOD_CRC}),
        ({"x-amz-checksum-crc32": GOOD_CRC}, {"x-amz-checksum-crc32": BAD_CRC}),
        ({"Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()}, {}),
    ],
)
def test_every_digest_sent_is_checked(headers: dict[str, str], trailers: dict[str, str]) -> None:
    with pytest.raises(BadDigest):
        check(headers, trailers)


def test_delete_objects_requires_one() -> None:
    with pytest.raises(InvalidRequestS3, match="Content-MD5 OR x-amz-checksum"):
        check({}, {}, required=True)
    check({}, {"x-amz-checksum-crc32": GOOD_CRC}, required=True)
