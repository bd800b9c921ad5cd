"""Domain error tree.

Every layer raises these; each protocol maps them to its wire format in one
table (e.g. ``api/jcs/errors.py``). Messages are written for the user and must
never contain secrets.
"""

from __future__ import annotations

from datetime import datetime


class DomainError(Exception):
    """Base of every error the service reports to a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadArgument(DomainError):
    """A missing or invalid input; the message names the field.

    Core names a field in neutral words (``root path``, ``max keys``); raised
    through :meth:`about`, the error keeps the field apart from the problem so
    a protocol can say the field in its own spelling (``rootPath``,
    ``max-keys``) in its one error table."""

    def __init__(self, message: str, *, field: str | None = None, problem: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem

    @classmethod
    def about(cls, field: str, problem: str) -> BadArgument:
        return cls(f"{field} {problem}", field=field, problem=problem)

    def renamed(self, names: dict[str, str]) -> str:
        """The message with the field said as ``names`` spells it."""
        if self.field is None or self.field not in names:
            return self.message
        return f"{names[self.field]} {self.problem}"


class Unauthorized(DomainError):
    """No credentials, or credentials that do not verify."""


class Forbidden(DomainError):
    """Authenticated, but not allowed to do this."""


class NotFound(DomainError):
    """The named thing does not exist (or belongs to someone else).
    ``name``: what the caller named it by (a package name, an object path,
    an upload id), where a protocol says it in a field of its own."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class AlreadyExists(DomainError):
    """The name or path is already taken."""


class DuplicateEntry(AlreadyExists):
    """The database refused a second row with the same unique key (two
    concurrent creates of one name); services re-raise it naming the thing."""


class TaskNotFound(NotFound):
    """Unknown task id."""


class UnknownAccessKey(Unauthorized):
    """An access key id (S3 credentials) that is malformed or was never
    issued here (S3: InvalidAccessKeyId)."""


class SignatureMismatch(Unauthorized):
    """A request signature (or presigned URL) does not verify."""


class AccessDenied(Forbidden):
    """A principal's scope or caveats refuse the operation; says which."""


class OutboundRefused(Forbidden):
    """A URL a caller chose for this server to call reaches a network the
    operator has not opened (loopback, private, link-local, metadata)."""


class OutOfScope(AccessDenied):
    """The credentials' scope (project, packages, path prefixes) does not
    reach the thing; where the thing was named by id, protocols say "not
    found" instead, so an id tells nothing about what exists."""


class BucketNotFound(NotFound):
    """No such JCS bucket (project) for this principal."""


class PackageNotFound(NotFound):
    """No such package (the S3 bucket)."""


class ObjectNotFound(NotFound):
    """No object at that path or id."""


class UploadNotFound(NotFound):
    """No multipart upload with that id (finished, aborted or never begun)."""


class PartNotFound(NotFound):
    """A completion names a part that was never uploaded."""


class SpaceNotFound(NotFound):
    """No such user space."""


class PreconditionFailed(DomainError):
    """An If-Match / If-None-Match / If-(Un)Modified-Since condition is false."""


class NotModified(DomainError):
    """A conditional read whose condition says the client's copy is current.
    ``etag`` and ``update_time`` are the object's: HTTP's 304 repeats its
    validators (RFC 9110 §15.4.5)."""

    def __init__(
        self, message: str, *, etag: str | None = None, update_time: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.etag = etag
        self.update_time = update_time


class BadDigest(BadArgument):
    """A checksum or Content-MD5 the client supplied does not match the bytes
    received (nothing was stored); the message names the algorithm."""


class PayloadMismatch(BadDigest):
    """The SHA-256 the client declared for the whole payload (a signed
    payload hash) does not match the bytes received (nothing was stored)."""


class ChecksumTypeMismatch(BadArgument):
    """A part's checksum of another algorithm than its multipart upload's
    (nothing was stored)."""


class CopyTooLarge(BadArgument):
    """A copy that would have to read more than S3's CopyObject limit (to
    compute a checksum its source does not have)."""


class PartChecksumMissing(BadArgument):
    """A completion of an upload whose checksum is made of its parts'
    (COMPOSITE) that does not list a part's checksum."""


class MetadataTooLarge(BadArgument):
    """User metadata beyond its size limit (2 KiB, as S3)."""


class InvalidRange(BadArgument):
    """A byte range that does not overlap the object; ``size`` is the
    object's, which HTTP protocols echo (``Content-Range: bytes */size``)."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class EntityTooSmall(BadArgument):
    """A multipart part (other than the last) below the minimum size."""


class EntityTooLarge(BadArgument):
    """A body or part above the maximum size."""


class InvalidPart(BadArgument):
    """A completion part whose ETag does not match the uploaded part."""


class InvalidPartOrder(BadArgument):
    """A completion part list that is not in ascending part-number order."""


class QuotaExceeded(DomainError):
    """The write would take the user beyond a quota."""


class OperationFailed(DomainError):
    """Anything else, with a message a user can act on."""


class MetadataUnavailable(OperationFailed):
    """The metadata database cannot be used now (out of reach, silent, its
    disk full or failing); the request may be tried again later."""


class MetadataOutOfReach(MetadataUnavailable):
    """``MetadataUnavailable`` where trying again at once would wait as
    long again: the server cannot be reached or did not answer in time,
    another process holds the write lock past its bound."""


class ServerBusy(OperationFailed):
    """This process is at its bound of one kind of concurrent work (the
    gateway facade's outbound calls, its Argon2id runs); the request may be
    tried again in a few seconds. The message names the work."""


class Conflict(OperationFailed):
    """The request conflicts with the state of the user's data (a bucket that
    is not empty, a space that still holds blocks, a destination in the way);
    the message says what to change first."""


class NotEmpty(Conflict):
    """A container (bucket, package, space) that must be emptied first."""


class SpaceTestFailed(OperationFailed):
    """A user space failed its test; the message names the step."""


class InsufficientSpaces(OperationFailed):
    """Fewer usable user spaces than a redundancy policy needs."""


class NotEnoughBlocks(OperationFailed):
    """A read found fewer intact blocks than it needs."""

    def __init__(self, message: str, found: int, needed: int) -> None:
        super().__init__(message)
        self.found = found
        self.needed = needed


class SpaceError(OperationFailed):
    """A storage backend failed; raised at the ``spaces`` boundary."""


class SpaceUnavailable(SpaceError):
    """The backend cannot be reached (network, permissions, outage)."""


class SpaceMoved(SpaceError):
    """A user space's storage or root path changed (or the space went)
    after a writer read where it is: the writer places its blocks again,
    on the space as it is now."""


class SpaceRefused(SpaceError):
    """The operator's rules forbid this space (a local path outside the allowed
    roots, an endpoint on a private network...); the message names the rule."""


class SpaceAuthError(SpaceError):
    """The backend rejected the credentials."""


class BlockNotFound(SpaceError):
    """The key does not exist in the space."""


class BlockCorrupt(SpaceError):
    """Stored bytes failed their integrity check."""
