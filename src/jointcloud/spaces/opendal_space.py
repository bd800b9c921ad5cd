"""A space on any service Apache OpenDAL supports (S3, OSS, OBS, COS, Azure Blob, GCS...).

Why by hand: OpenDAL is the only binding with native OSS/OBS/COS (DESIGN §7), but
its errors, short-read behaviour and writer semantics differ from the ``Space``
contract, so this adapter pins them down:

* errors become domain errors here. Messages name the operation, the key, the
  error kind and what happened from a fixed vocabulary: the HTTP status, a
  well-known service error code, a local network cause (refused, timed out...).
  OpenDAL's own text carries the remote response body and headers (a remote
  endpoint could be any HTTP service, issue 8), so none of it is ever echoed;
  secret option values are redacted as well;
* a bucket or account name that OpenDAL splices into the host name
  (``<bucket>.<endpoint host>``) must be made of host-name characters, or the
  name could move the connection to another host (``x@127.0.0.1#``);
* a read whose range runs past the end returns the short tail (OpenDAL raises);
* a read the cloud answered with a body of another length than the range
  asked (an HTML error page with status 200, a whole object for a range,
  bytes added or missing) is ``BlockCorrupt``: those are not the key's
  bytes, and no outage either (a body cut off mid-stream is, and stays
  ``SpaceUnavailable``);
* ``abort`` drops the writer *without* closing it, because closing publishes the
  object (and would clobber an older version of the key). Parts of an unfinished
  multipart upload are left to the bucket's lifecycle rule, as the binding
  exposes no abort.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import opendal

from jointcloud.errors import (
    BadArgument,
    BlockCorrupt,
    BlockNotFound,
    OperationFailed,
    SpaceAuthError,
    SpaceError,
    SpaceUnavailable,
)
from jointcloud.spaces.base import Capabilities, Entry, check_key

# Option names whose values are credentials: never shown, redacted from messages.
SECRET_OPTIONS = frozenset(
    {
        "access_key_id",
        "secret_access_key",
        "access_key_secret",
        "secret_id",
        "secret_key",
        "account_key",
        "sas_token",
        "security_token",
        "session_token",
        "credential",
        "token",
        "password",
        "encryption_key",
    }
)
_SHOWN_OPTIONS = frozenset({"bucket", "container", "account_name", "endpoint", "region"})
_AUTH_KINDS = ("PermissionDenied", "ConfigInvalid")

# The HTTP status OpenDAL saw: its context line "response: Parts { status: 403, ...".
# The last one counts: an echoed body comes before OpenDAL's own context.
_STATUS = re.compile(r"^\s*response: Parts \{ status: ([1-5][0-9][0-9])\b", re.MULTILINE)
# "S3Error { code: "NoSuchBucket", message: ...": only codes from this list are shown.
_SERVICE_CODE = re.compile(r'=> [A-Za-z0-9]{1,16}Error \{ code: "([A-Za-z0-9.]{1,64})"')
KNOWN_CODES = frozenset(
    {
        "AccessDenied",
        "AccountIsDisabled",
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationHeaderMalformed",
        "BlobNotFound",
        "ContainerNotFound",
        "EntityTooLarge",
        "ExpiredToken",
        "InternalError",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidRange",
        "InvalidRequest",
        "InvalidToken",
        "NoSuchBucket",
        "NoSuchKey",
        "NoSuchUpload",
        "PermanentRedirect",
        "QuotaExceeded",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SignatureDoesNotMatch",
        "SlowDown",
    }
)
_NO_BUCKET = frozenset({"NoSuchBucket", "ContainerNotFound"})
# OpenDAL's own check of a ranged read's body against the range asked, on the
# first line of its message (no remote text there), and its counts.
_WRONG_LENGTH = re.compile(
    r"^Unexpected \(permanent\) at\s*=> reader got too (much|little) data\s*$"
)
_EXPECT = re.compile(r"^\s*expect: ([0-9]{1,20})\s*$", re.MULTILINE)
_ACTUAL = re.compile(r"^\s*actual: ([0-9]{1,20})\s*$", re.MULTILINE)
# Why no response came (the OS, the HTTP client, OpenDAL itself), first match
# wins; only the fixed phrase is shown. Every needle holds a space, so that a
# URL or a key name in OpenDAL's context lines cannot match it.
_CAUSES = (
    ("timeout reached", "timed out"),
    ("timed out", "timed out"),
    ("connection refused", "connection refused"),
    ("dns error", "host not found"),
    ("failed to lookup address", "host not found"),
    ("peer certificate", "TLS handshake failed"),
    ("certificate verify", "TLS handshake failed"),
    ("corrupt message", "TLS handshake failed"),
    ("tls handshake", "TLS handshake failed"),
    ("connection reset", "connection reset"),
    ("network is unreachable", "network unreachable"),
    ("no route to host", "network unreachable"),
    ("broken pipe", "connection closed"),
    ("connection closed", "connection closed"),
    ("request url is invalid", "invalid request URL"),
    ("endpoint is invalid", "invalid endpoint"),
    ("building http request", "invalid request"),
    ("signing http request", "cannot sign the request"),
    ("error sending request", "request not sent"),
    ("send http request", "request not sent"),
)
# What OpenDAL splices in front of the endpoint's host name.
_HOST_LABELS = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
_ACCOUNT = re.compile(r"[A-Za-z0-9]{1,64}")


# What OpenDAL trims from both ends of every path before it uses it: Rust's
# ``str::trim``, the Unicode White_Space characters (not Python's isspace,
# which adds U+001C-U+001F). Inner components keep theirs ("a /b" stays).
_TRIMMED = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def check_cloud_key(key: str) -> str:
    """``check_key``, and no white space at either end of the key: OpenDAL
    would trim it and reach another key (``report `` written over
    ``report``, ``k `` read as ``k``: found by review, 2026-12-06)."""
    check_key(key)
    if key[0] in _TRIMMED or key[-1] in _TRIMMED:
        trimmed = key.strip("".join(_TRIMMED))
        raise BadArgument(
            f"storage key {key!r} begins or ends with white space, which the cloud "
            f"client library trims from every path: it would reach the key "
            f"{trimmed!r} instead; rename the file to copy it"
        )
    return key


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0:
        raise BadArgument(f"read offset must be >= 0, got {offset}")
    if length is not None and length < 0:
        raise BadArgument(f"read length must be >= 0, got {length}")


def _kind(exc: BaseException) -> str:
    """OpenDAL's error kind: the class name, or the first word of the text (the
    file API raises plain ``OSError("NotFound (permanent) at ...")``)."""
    name = type(exc).__name__
    if type(exc).__module__.startswith("opendal") and name != "Error":
        return name
    words = str(exc).split(maxsplit=1)
    return words[0] if words else name


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the response behind ``exc``, if OpenDAL got one."""
    found = _STATUS.findall(str(exc))
    return int(found[-1]) if found else None


def service_code(exc: BaseException) -> str | None:
    """The service's error code (``NoSuchBucket``...), only if it is a known one."""
    first = str(exc).split("\n", 1)[0]
    match = _SERVICE_CODE.search(first)
    return match.group(1) if match and match.group(1) in KNOWN_CODES else None


def _cause(exc: BaseException) -> str | None:
    """Why there was no response (None when there was one: after a response,
    OpenDAL's message is the remote body)."""
    if http_status(exc) is not None:
        return None
    text = str(exc).lower()
    return next((phrase for needle, phrase in _CAUSES if needle in text), None)


def _wrong_length(exc: BaseException) -> str | None:
    """How the body of a ranged read differed from the range asked, if
    OpenDAL found that it did (the cloud answered, with other bytes)."""
    text = str(exc)
    match = _WRONG_LENGTH.match(text.split("\n", 1)[0])
    if match is None:
        return None
    expect, actual = _EXPECT.search(text), _ACTUAL.search(text)
    if expect is None or actual is None:
        return f"too {match.group(1)} data"
    return f"{actual.group(1)} bytes for a range of {expect.group(1)}"


def _no_bucket(exc: BaseException) -> bool:
    return service_code(exc) in _NO_BUCKET


def _to_str(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_host_parts(scheme: str, opts: dict[str, str]) -> None:
    """Names OpenDAL puts into the host of its URLs must be host-name labels."""
    bucket = opts.get("bucket")
    in_host = scheme in ("oss", "cos") or (
        scheme == "s3" and opts.get("enable_virtual_host_style") == "true"
    )
    if in_host and bucket is not None and not _HOST_LABELS.fullmatch(bucket):
        raise BadArgument(
            f"bucket {bucket[:80]!r} is not a valid {scheme} bucket name: "
            "letters, digits, '.', '-' and '_' only"
        )
    account = opts.get("account_name")
    if scheme == "azblob" and account is not None and not _ACCOUNT.fullmatch(account):
        raise BadArgument(
            f"account name {account[:80]!r} is not a valid Azure storage account name: "
            "letters and digits only"
        )


class OpenDALWriter:
    def __init__(self, space: OpenDALSpace, key: str, file: Any) -> None:
        self._space = space
        self._key = key
        self._file: Any = file
        # Bytes it may hold unsent once a write returned (``BlockWriter``):
        # a part being filled and ``concurrent`` parts in flight.
        self.held = space._write_chunk * (space._write_concurrency + 1)

    def _open_file(self) -> Any:
        if self._file is None:
            raise OperationFailed(f"writer for {self._key!r} is already finished")
        return self._file

    async def write(self, data: bytes) -> None:
        file = self._open_file()
        try:
            await file.write(bytes(data) if not isinstance(data, bytes) else data)
        except Exception as exc:
            self._file = None  # unusable now; dropping it never publishes
            raise self._space._translate(exc, "write", self._key, writing=True) from None

    async def commit(self) -> None:
        file = self._open_file()
        self._file = None
        try:
            await file.close()
        except Exception as exc:
            raise self._space._translate(exc, "write", self._key, writing=True) from None

    async def abort(self) -> None:
        self._file = None


class OpenDALSpace:
    """A space over ``opendal.AsyncOperator(scheme, root=root, **options)``."""

    def __init__(
        self,
        scheme: str,
        root: str = "/",
        *,
        timeout: float = 60.0,
        io_timeout: float = 30.0,
        write_chunk: int = 8 << 20,
        write_concurrency: int = 2,
        **options: object,
    ) -> None:
        self.scheme = scheme
        self.root = "/" + root.strip("/")
        self._write_chunk = write_chunk
        self._write_concurrency = write_concurrency
        opts = {k: _to_str(v) for k, v in options.items() if v is not None}
        _check_host_parts(scheme, opts)
        self._secrets = tuple(v for k, v in opts.items() if k in SECRET_OPTIONS and len(v) >= 4)
        self._public = {k: v for k, v in opts.items() if k in _SHOWN_OPTIONS}
        try:
            op = opendal.AsyncOperator(scheme, root=self.root, **opts)
        except Exception as exc:
            raise BadArgument(
                f"invalid {scheme} storage configuration: {self._redact(exc)}"
            ) from None
        self._op = op.layer(opendal.layers.TimeoutLayer(timeout=timeout, io_timeout=io_timeout))
        cap = op.capability()
        self.capabilities = Capabilities(
            range_read=bool(cap.read),
            native_multipart=bool(cap.write_can_multi),
            server_side_copy=False,
            listing=bool(cap.list),
        )

    def __repr__(self) -> str:
        shown = "".join(f", {k}={v!r}" for k, v in sorted(self._public.items()))
        return f"OpenDALSpace({self.scheme!r}, root={self.root!r}{shown})"

    def _redact(self, exc: BaseException) -> str:
        """OpenDAL's text, for errors building the operator (no remote text
        there: nothing was sent yet)."""
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        text = lines[0] if lines else type(exc).__name__
        if "Source:" in lines:  # e.g. "tcp connect error: Connection refused"
            i = lines.index("Source:")
            if i + 1 < len(lines):
                text += f" ({lines[i + 1]})"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:400]

    def _translate(
        self, exc: BaseException, op: str, key: str | None, *, writing: bool = False
    ) -> SpaceError:
        """A domain error naming the operation, the key, the error kind, the
        HTTP status and a cause from a fixed vocabulary: never the remote text."""
        kind = _kind(exc)
        if not re.fullmatch(r"[A-Za-z]{1,40}", kind):
            kind = "Unexpected"
        place = self._public.get("bucket") or self._public.get("container") or ""
        where = f"{self.scheme} space {(place + self.root).rstrip('/') or '/'!r}"
        what = f"{op} {key!r}" if key is not None else op
        status, code, cause = http_status(exc), service_code(exc), _cause(exc)
        signing = status is None and "signing http request" in str(exc)
        parts = [kind]
        if status is not None:
            parts.append(f"HTTP status {status}")
        if code is not None:
            parts.append(code)
        if cause is not None:
            parts.append(cause)
        detail = ", ".join(parts)
        for secret in self._secrets:
            detail = detail.replace(secret, "***")
        if kind == "NotFound" and not writing and not _no_bucket(exc):
            return BlockNotFound(f"key {key!r} not found in {where}")
        wrong = None if writing else _wrong_length(exc)
        if wrong is not None:
            return BlockCorrupt(f"{where} answered {what} with a body of {wrong}")
        if kind in _AUTH_KINDS or signing:
            return SpaceAuthError(f"{where} rejected {what}: {detail}")
        return SpaceUnavailable(f"{where} failed on {what}: {detail}")

    # -- writing -----------------------------------------------------------

    async def open_writer(self, key: str) -> OpenDALWriter:
        check_cloud_key(key)
        try:
            file = await self._op.open(
                key, "wb", chunk=self._write_chunk, concurrent=self._write_concurrency
            )
        except Exception as exc:
            raise self._translate(exc, "write", key, writing=True) from None
        return OpenDALWriter(self, key, file)

    async def put(self, key: str, data: bytes) -> None:
        check_cloud_key(key)
        try:
            await self._op.write(key, bytes(data))
        except Exception as exc:
            raise self._translate(exc, "write", key, writing=True) from None

    # -- reading -----------------------------------------------------------

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        check_cloud_key(key)
        _check_range(offset, length)
        if length == 0:
            await self.stat(key)
            return b""
        try:
            if length is None:
                return bytes(await self._op.read(key, offset=offset))
            return bytes(await self._op.read(key, offset=offset, size=length))
        except Exception as exc:
            kind = _kind(exc)
            if kind not in ("RangeNotSatisfied", "Unexpected"):
                raise self._translate(exc, "read", key) from None
            first = exc
        # The range may run past the end (OpenDAL refuses short reads): clip it.
        try:
            size = (await self.stat(key)).size
        except BlockNotFound:
            raise
        except SpaceError:
            raise self._translate(first, "read", key) from None
        end = size if length is None else min(size, offset + length)
        if offset >= end:
            return b""
        if length is not None and offset + length <= size:
            raise self._translate(first, "read", key) from None  # a real failure
        try:
            return bytes(await self._op.read(key, offset=offset, size=end - offset))
        except Exception as exc:
            raise self._translate(exc, "read", key) from None

    async def read_stream(
        self, key: str, offset: int = 0, length: int | None = None, chunk: int = 4 << 20
    ) -> AsyncIterator[bytes]:
        check_cloud_key(key)
        _check_range(offset, length)
        size = (await self.stat(key)).size
        end = size if length is None else min(size, offset + length)
        if offset >= end:
            return
        try:
            file = await self._op.open(key, "rb", offset=offset, size=end - offset)
        except Exception as exc:
            raise self._translate(exc, "read", key) from None
        try:
            while True:
                try:
                    data = await file.read(chunk)
                except Exception as exc:
                    raise self._translate(exc, "read", key) from None
                if not data:
                    return
                yield bytes(data)
        finally:
            with contextlib.suppress(Exception):  # a reader's close has nothing to flush
                await file.close()

    async def stat(self, key: str) -> Entry:
        check_cloud_key(key)
        try:
            meta = await self._op.stat(key)
        except Exception as exc:
            raise self._translate(exc, "stat", key) from None
        if meta.is_dir:
            raise BlockNotFound(f"key {key!r} not found in {self.scheme} space {self.root!r}")
        modified = meta.last_modified
        return Entry(
            key=key,
            size=int(meta.content_length),
            mtime=modified.timestamp() if modified is not None else 0.0,
        )

    async def delete(self, key: str) -> None:
        check_cloud_key(key)
        try:
            await self._op.delete(key)
        except Exception as exc:
            if _kind(exc) == "NotFound" and not _no_bucket(exc):
                return
            raise self._translate(exc, "delete", key, writing=True) from None

    async def list(self, prefix: str = "") -> AsyncIterator[Entry]:
        rel = prefix.strip("/")
        if rel:
            check_cloud_key(rel)
            rel += "/"
        try:
            lister = await self._op.list(rel, recursive=True)
            async for item in lister:
                path: str = item.path
                if path.endswith("/"):
                    continue
                meta = item.metadata
                modified = meta.last_modified
                yield Entry(
                    key=path,
                    size=int(meta.content_length),
                    mtime=modified.timestamp() if modified is not None else 0.0,
                )
        except Exception as exc:
            if isinstance(exc, SpaceError):
                raise
            if _kind(exc) == "NotFound" and not _no_bucket(exc):
                return  # the prefix does not exist (file-system-like services)
            raise self._translate(exc, "list", rel or "/", writing=True) from None

    async def keep_alive(self, key: str) -> None:
        return None  # an unfinished write leaves nothing to sweep here

    async def sweep_incomplete(
        self, older_than: float, prefix: str = "", skip: tuple[str, ...] = ()
    ) -> int:
        # An aborted writer leaves at most an unfinished multipart upload, which
        # the binding cannot list; a bucket lifecycle rule is what removes those.
        return 0

    async def flush(self) -> None:
        return None  # every commit is durable already

    async def close(self) -> None:
        return None
