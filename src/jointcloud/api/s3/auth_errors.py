"""The errors of S3 request authentication: SigV4 and SigV2 signatures,
``aws-chunked`` bodies, POST policies.

Every one is an :class:`S3AuthError`, which is also the matching domain
error, and carries ``s3_code``, the AWS error code to put in the XML. The
table of codes, their statuses and what raises them is in
:mod:`~jointcloud.api.s3.sigv4`'s docstring (which re-exports these names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from jointcloud.errors import (
    AccessDenied,
    BadArgument,
    BadDigest,
    DomainError,
    SignatureMismatch,
    Unauthorized,
)


class S3AuthError(DomainError):
    """An authentication failure with the AWS error code it answers as."""

    s3_code: ClassVar[str] = "AccessDenied"


class InvalidToken(S3AuthError, BadArgument):
    s3_code = "InvalidToken"


def check_no_session_token(token: str | None) -> None:
    """This server gives out no session credentials, so a session token
    (``x-amz-security-token``) can only be a stale or foreign one: AWS
    refuses a token it cannot use rather than ignore it."""
    if token:
        raise InvalidToken(
            "The provided token is malformed or otherwise invalid: these credentials "
            "take no session token (x-amz-security-token)"
        )


class AuthorizationHeaderMalformed(S3AuthError, BadArgument):
    s3_code = "AuthorizationHeaderMalformed"


class AuthorizationQueryParametersError(S3AuthError, BadArgument):
    s3_code = "AuthorizationQueryParametersError"


class InvalidArgument(S3AuthError, BadArgument):
    s3_code = "InvalidArgument"


class InvalidRequest(S3AuthError, BadArgument):
    s3_code = "InvalidRequest"


class SignatureDoesNotMatch(S3AuthError, SignatureMismatch):
    """A signature does not verify. ``string_to_sign`` and
    ``canonical_request`` (never secret) are what the server computed, which
    AWS echoes in the error XML to help a client debug."""

    s3_code = "SignatureDoesNotMatch"

    def __init__(
        self, message: str, *, string_to_sign: str = "", canonical_request: str = ""
    ) -> None:
        super().__init__(message)
        self.string_to_sign = string_to_sign
        self.canonical_request = canonical_request


class RequestTimeTooSkewed(S3AuthError, Unauthorized):
    s3_code = "RequestTimeTooSkewed"


class S3AccessDenied(S3AuthError, AccessDenied):
    """Plain ``AccessDenied`` (a missing date, a refused POST policy...)."""

    s3_code = "AccessDenied"


class ExpiredRequest(S3AccessDenied):
    """A presigned URL (or POST policy) past its expiry, or not valid yet."""


class HeadersNotSigned(S3AccessDenied):
    def __init__(self, message: str, *, headers: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.headers = tuple(headers)


class XAmzContentSHA256Mismatch(S3AuthError, BadDigest):
    s3_code = "XAmzContentSHA256Mismatch"


class IncompleteBody(S3AuthError, BadArgument):
    s3_code = "IncompleteBody"


class MalformedTrailer(S3AuthError, BadArgument):
    s3_code = "MalformedTrailerError"
