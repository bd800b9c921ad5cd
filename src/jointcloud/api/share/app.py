"""Link sharing (DESIGN §6a): the service the gateway's share URLs point to.

- ``/s/<access>/<bucket>/<key>``: a page with the object's name, size, type,
  a preview (image, video, audio, PDF, text) and a download button (hidden
  when the access may not read);
- ``/raw/<access>/<bucket>/<key>``: the bytes, with ``Range`` (one, or several
  as ``multipart/byteranges``, overlapping ones merged),
  ``If-None-Match``/``If-Modified-Since`` (304), ``If-Match``/
  ``If-Unmodified-Since`` (412), ``If-Range``, and ``?download`` for an
  attachment; edge's flags choose bytes or page on either kind
  (``?download``, ``?wrap``, ``?view``: ``query_flag``);
- a key ending in ``/`` (or none) lists that prefix, with breadcrumbs, or
  shows its ``index.html`` (``?list`` lists anyway); ``?download-kind=zip``
  streams a zip of the prefix (capped: ``zipstream.MAX_FILES`` /
  ``MAX_BYTES``);
- ``/<access>/<bucket>%2F<key>``, the form the seed's ``/shareUrl`` returns,
  redirects (308, as edge) to ``/s/...``;
- ``/s/<access>/`` lists the buckets the access reaches.

``<access>`` is the access key id of a public auth-service record or a whole
grant (``access.open_access``). Nothing served here can run script in the
service's origin: HTML, SVG, XML and other active types are served as
``text/plain`` (or as an attachment), and every response carries
``X-Content-Type-Options: nosniff`` and a ``Content-Security-Policy`` with
``sandbox``; pages are script-free and escape every name.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import structlog
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from jointcloud import errors
from jointcloud.api.common.http import (
    Gone,
    etag_list,
    http_date,
    parse_conditions,
    parse_http_date,
    unless_gone,
)
from jointcloud.api.common.observability import HttpMetrics, Observability
from jointcloud.api.share import pages, zipstream
from jointcloud.api.share.access import Refused, Shared, is_access, open_access
from jointcloud.api.share.ranges import (
    boundary,
    coalesce,
    disposition,
    header_safe,
    is_active,
    parse_ranges,
    preview_kind,
    served_type,
    stored_type,
)
from jointcloud.api.share.replies import (
    PAGE_CSP,
    Reply,
    domain_reply,
    error_reply,
    html_reply,
)
from jointcloud.context import Context
from jointcloud.core.authz import Operation
from jointcloud.core.commands import (
    NO_CONDITIONS,
    ByteRange,
    Conditions,
    GetObject,
    ListObjects,
    ObjectAddress,
    PackageRef,
)
from jointcloud.core.models import ObjectInfo

log = structlog.get_logger(__name__)

PROTOCOL = "share"
PAGE_PREFIX = "/s"
RAW_PREFIX = "/raw"
TEXT_PREVIEW = 64 * 1024
PAGE_SIZE = 1000
INDEX = "index.html"
METHODS = ("GET", "HEAD")


def handles(path: str) -> bool:
    """Whether a request path belongs to link sharing: ``/s/...``,
    ``/raw/...`` and the legacy ``/<access>/<bucket>%2F<key>`` (its first
    segment an access key id or a whole grant)."""
    for prefix in (PAGE_PREFIX, RAW_PREFIX):
        if path == prefix or path.startswith(prefix + "/"):
            return True
    first = path.lstrip("/").split("/", 1)[0]
    return bool(first) and is_access(first)


# --- the request --------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kind: str  # "s" (pages) or "raw"
    access: str
    bucket: str  # "" : none named
    key: str


def parse_target(path: str) -> Target | None:
    """``/s|raw/<access>[/<bucket>[/<key>]]`` (``path`` percent-decoded)."""
    parts = path.split("/", 4)  # "", kind, access, bucket, key
    if len(parts) < 3 or parts[1] not in ("s", "raw") or not parts[2]:
        return None
    bucket = parts[3] if len(parts) > 3 else ""
    key = parts[4] if len(parts) > 4 else ""
    return Target(parts[1], parts[2], bucket, key)


def query_flag(request: Request, name: str, default: bool) -> bool:
    """edge's ``queryFlagLookup``: absent → ``default``; ``?flag`` or
    ``?flag=`` → true; ``no``, ``false``, ``0``, ``off`` (any case) → false;
    anything else → true. The first value counts."""
    values = request.query_params.getlist(name)
    if not values:
        return default
    return values[0] == "" or values[0].lower() not in ("no", "false", "0", "off")


def _etag(info: ObjectInfo) -> str:
    return f'"{info.etag}"'


def _object_headers(info: ObjectInfo) -> list[tuple[str, str]]:
    headers = [
        ("etag", _etag(info)),
        ("last-modified", http_date(info.update_time)),
        ("accept-ranges", "bytes"),
        ("cache-control", header_safe(info.meta.cache_control) or "private, no-cache"),
    ]
    encoding = header_safe(info.meta.content_encoding)
    if encoding and encoding != "identity":
        headers.append(("content-encoding", encoding))
    return headers


def _range_applies(request: Request, info: ObjectInfo) -> bool:
    """``If-Range``: the range only if the client's copy is current."""
    value = request.headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        tags = etag_list(value) or ()
        return not value.startswith("W/") and info.etag in tags
    # A date holds only if it is the Last-Modified exactly (RFC 9110
    # §13.1.5; Go's ServeContent compares the seconds): a later one may be
    # of another version whose stamp a clock step put after this one.
    date = parse_http_date(value)
    return date is not None and info.update_time.replace(microsecond=0) == date


class ShareApp:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        method = request.method
        if method not in METHODS:
            scope["jcs.operation"] = "share.other"
            reply = error_reply(405, "Method not allowed", "Share links answer GET and HEAD.")
            reply.headers.append(("allow", ", ".join(METHODS)))
        else:
            try:
                reply = await self.dispatch(scope, request)
            except Refused as exc:
                reply = error_reply(exc.status, exc.title, exc.message)
            except errors.DomainError as exc:
                reply = domain_reply(exc)
        head_only = method == "HEAD"
        if reply.stream is None or head_only:
            await reply.send(send, head_only=head_only)
            return
        # A stream goes on only while its client is there: uvicorn drops what
        # is sent to a closed connection without a word, and the rest of a
        # download or a zip (up to 10 GiB) was read and decrypted for nobody,
        # as often as anyone cared to open a link and leave (found by review).
        # ``receive`` says ``http.disconnect`` then; a half-close is no leaving.
        with contextlib.suppress(Gone):
            await unless_gone(receive, reply.send(send, head_only=False))

    async def dispatch(self, scope: Scope, request: Request) -> Reply:
        path: str = scope["path"]
        target = parse_target(path)
        if target is None:
            scope["jcs.operation"] = "share.legacy"
            return self.legacy(request)
        # A link refused before its operation is known is counted as such
        # (it was counted "unmatched", as a path no route takes; found by review).
        scope["jcs.operation"] = "share.open"
        shared = await open_access(self.ctx, target.access)
        query = request.query_params
        if not target.bucket:
            scope["jcs.operation"] = "share.buckets"
            if target.key:  # "/s/<access>//a/b": an empty bucket name
                return error_reply(404, "Not found", "The bucket's name in this address is empty.")
            return await self.buckets(shared, target)
        if query.get("download-kind") == "zip":
            scope["jcs.operation"] = "share.zip"
            return await self.zip(shared, target)
        # edge's flags: ?download gives the bytes as an attachment, ?wrap the
        # page, ?view (or ?wrap=no) the bytes inline, whatever the URL's kind
        download = query_flag(request, "download", False)
        wrap = query_flag(request, "wrap", not query_flag(request, "view", target.kind == "raw"))
        if not target.key or target.key.endswith("/"):
            if target.kind == "raw" and not wrap:
                scope["jcs.operation"] = "share.raw"
                return await self.raw(shared, target, request, attachment=download)
            scope["jcs.operation"] = "share.list"
            return await self.listing(shared, target, request)
        if download or not wrap:
            scope["jcs.operation"] = "share.raw"
            return await self.raw(shared, target, request, attachment=download)
        scope["jcs.operation"] = "share.page"
        return await self.page(shared, target)

    # --- legacy ---------------------------------------------------------------

    def legacy(self, request: Request) -> Reply:
        """``/<access>/<bucket>%2F<key>`` → ``/s/<access>/<bucket>/<key>``."""
        path: str = request.scope["path"]
        access, _, rest = path.lstrip("/").partition("/")
        if not is_access(access):
            return error_reply(404, "Not found", "No share link at this address.")
        if not rest:
            location = pages.url_path("s", access) + "/"
        elif "/" not in rest:  # a bucket alone: its listing
            location = pages.url_path("s", access, rest) + "/"
        else:
            location = pages.url_path("s", access, rest)
        query = request.scope.get("query_string", b"").decode("latin-1")
        if query:
            location += "?" + query
        # 308, as edge's linksharing answers its backwards-compatible links
        return Reply(308, [("location", location), ("cache-control", "no-store")], csp=PAGE_CSP)

    # --- raw ------------------------------------------------------------------

    def _address(self, target: Target, key: str | None = None) -> ObjectAddress:
        return ObjectAddress(PackageRef.by_name(target.bucket), target.key if key is None else key)

    async def raw(
        self, shared: Shared, target: Target, request: Request, *, attachment: bool
    ) -> Reply:
        if not target.key or target.key.endswith("/"):
            return error_reply(404, "Not a file", "A raw link names a file; this names a folder.")
        principal = shared.principal
        address = self._address(target)
        conditions = parse_conditions(request.headers.get)
        ranges = parse_ranges(request.headers.get("range"))
        try:
            info = await self.ctx.objects.head(principal, address, conditions)
        except errors.NotModified:
            return await self._not_modified(shared, address)
        if ranges is not None and not _range_applies(request, info):
            ranges = None
        headers = _object_headers(info)
        stored = stored_type(info)
        content_type = served_type(stored)
        name = target.key.rsplit("/", 1)[-1]
        if attachment:
            headers.append(("content-disposition", disposition("attachment", name)))
        else:
            headers.append(("content-disposition", disposition("inline", name)))
        if ranges is not None and len(ranges) > 1 and info.size == 0:
            ranges = None
        spans = None if ranges is None else coalesce(ranges, info.size)
        if spans is None:
            return await self._whole(shared, address, info, headers, content_type)
        if not spans:
            refused = error_reply(
                416,
                "Range not satisfiable",
                f"No range asked for starts inside this file of {info.size} bytes.",
            )
            # the page's own headers: not the object's encoding or disposition
            refused.headers.append(("content-range", f"bytes */{info.size}"))
            return refused
        if len(spans) == 1:
            offset, length = spans[0]
            download = await self.ctx.objects.get(
                principal,
                GetObject(
                    address,
                    ByteRange(offset, offset + length - 1),
                    Conditions(if_match=(info.etag,)),
                ),
            )
            return Reply(
                206,
                [
                    *headers,
                    ("content-type", content_type),
                    ("content-length", str(download.length)),
                    (
                        "content-range",
                        f"bytes {download.offset}-{download.offset + download.length - 1}"
                        f"/{info.size}",
                    ),
                ],
                stream=download.body,
            )
        return self._multipart(shared, address, info, headers, content_type, spans)

    async def _not_modified(self, shared: Shared, address: ObjectAddress) -> Reply:
        info = await self.ctx.objects.head(shared.principal, address, NO_CONDITIONS)
        keep = [
            h for h in _object_headers(info) if h[0] in ("etag", "last-modified", "cache-control")
        ]
        return Reply(304, keep)

    async def _whole(
        self,
        shared: Shared,
        address: ObjectAddress,
        info: ObjectInfo,
        headers: list[tuple[str, str]],
        content_type: str,
    ) -> Reply:
        download = await self.ctx.objects.get(
            shared.principal, GetObject(address, None, Conditions(if_match=(info.etag,)))
        )
        return Reply(
            200,
            [*headers, ("content-type", content_type), ("content-length", str(download.length))],
            stream=download.body,
        )

    def _multipart(
        self,
        shared: Shared,
        address: ObjectAddress,
        info: ObjectInfo,
        headers: list[tuple[str, str]],
        content_type: str,
        spans: list[tuple[int, int]],
    ) -> Reply:
        mark = boundary()
        heads = [
            (
                f"\r\n--{mark}\r\ncontent-type: {content_type}\r\n"
                f"content-range: bytes {off}-{off + n - 1}/{info.size}\r\n\r\n"
            ).encode()
            for off, n in spans
        ]
        tail = f"\r\n--{mark}--\r\n".encode()
        total = sum(len(h) + n for h, (_, n) in zip(heads, spans, strict=True)) + len(tail)
        objects = self.ctx.objects
        principal = shared.principal

        async def body() -> AsyncIterator[bytes]:
            for head, (off, n) in zip(heads, spans, strict=True):
                yield head
                part = await objects.get(
                    principal,
                    GetObject(
                        address, ByteRange(off, off + n - 1), Conditions(if_match=(info.etag,))
                    ),
                )
                async for chunk in part.body:
                    yield chunk
            yield tail

        return Reply(
            206,
            [
                *headers,
                ("content-type", f"multipart/byteranges; boundary={mark}"),
                ("content-length", str(total)),
            ],
            stream=body(),
        )

    # --- pages ----------------------------------------------------------------

    async def _find(self, shared: Shared, target: Target, key: str) -> ObjectInfo | None:
        """The object at ``key``: read with ``head`` where the access may
        read, else found by listing (a list-only access sees names and
        sizes, never bytes). None: no such object (or none it may see)."""
        principal = shared.principal
        if shared.allows(Operation.READ, target.bucket, key):
            try:
                return await self.ctx.objects.head(principal, self._address(target, key))
            except errors.ObjectNotFound:
                return None
        if not shared.allows(Operation.LIST, target.bucket, key):
            return None
        listing = await self.ctx.objects.list(
            principal, ListObjects(PackageRef.by_name(target.bucket), prefix=key, max_keys=1)
        )
        found = listing.objects[0] if listing.objects else None
        return found if found is not None and found.path == key else None

    async def page(self, shared: Shared, target: Target) -> Reply:
        key = target.key
        can_read = shared.allows(Operation.READ, target.bucket, key)
        can_list = shared.allows(Operation.LIST, target.bucket, key)
        if not can_read and not can_list:
            return error_reply(403, "Access denied", "This link does not reach this file.")
        info = await self._find(shared, target, key)
        if info is None:
            # a folder named without its trailing slash
            if can_list and await self._has_children(shared, target, key + "/"):
                return Reply(
                    303,  # as edge (and S3 websites) send a prefix to its listing
                    [("location", pages.url_path("s", target.access, target.bucket, key) + "/")],
                    csp=PAGE_CSP,
                )
            return error_reply(
                404, "Not found", f"There is no file {target.bucket}/{key} behind this link."
            )
        return await self._object_page(shared, target, info, can_read)

    async def _has_children(self, shared: Shared, target: Target, prefix: str) -> bool:
        try:
            listing = await self.ctx.objects.list(
                shared.principal,
                ListObjects(
                    PackageRef.by_name(target.bucket), prefix=prefix, delimiter="/", max_keys=1
                ),
            )
        except errors.DomainError:
            return False
        return bool(listing.objects or listing.common_prefixes)

    async def _object_page(
        self, shared: Shared, target: Target, info: ObjectInfo, can_read: bool
    ) -> Reply:
        content_type = stored_type(info)
        # active types are previewed as escaped text, whatever else they
        # claim to be (a list of types may start with an image's)
        kind = "text" if is_active(content_type) else preview_kind(content_type)
        text = None
        truncated = False
        if can_read and kind == "text" and info.size > 0:
            download = await self.ctx.objects.get(
                shared.principal,
                GetObject(
                    self._address(target, info.path),
                    ByteRange(0, TEXT_PREVIEW - 1),
                    Conditions(if_match=(info.etag,)),
                ),
            )
            data = b"".join([chunk async for chunk in download.body])
            text = data.decode("utf-8", errors="replace")
            truncated = info.size > TEXT_PREVIEW
        view = pages.ObjectView(
            access=target.access,
            bucket=target.bucket,
            path=info.path,
            size=info.size,
            content_type=content_type,
            modified=info.update_time,
            etag=info.etag,
            can_read=can_read,
            preview=kind,
            text=text,
            truncated=truncated,
            expires=shared.not_after,
        )
        return html_reply(200, pages.object_page(view))

    # --- listings -------------------------------------------------------------

    async def listing(self, shared: Shared, target: Target, request: Request) -> Reply:
        prefix = target.key
        if not shared.allows(Operation.LIST, target.bucket, prefix):
            return error_reply(
                403, "Access denied", "This link does not allow listing this folder."
            )
        principal = shared.principal
        package = PackageRef.by_name(target.bucket)
        query = request.query_params
        if "list" not in query and "cursor" not in query:
            index = await self._find(shared, target, prefix + INDEX)
            if index is not None:
                can_read = shared.allows(Operation.READ, target.bucket, index.path)
                return await self._object_page(shared, target, index, can_read)
        listing = await self.ctx.objects.list(
            principal,
            ListObjects(
                package,
                prefix=prefix,
                delimiter="/",
                continuation=query.get("cursor") or None,
                max_keys=PAGE_SIZE,
            ),
        )
        if prefix and "cursor" not in query and not (listing.objects or listing.common_prefixes):
            return error_reply(
                404, "Not found", f"There is no folder {target.bucket}/{prefix} behind this link."
            )
        can_read = shared.allows(Operation.READ, target.bucket, prefix)
        entries: list[pages.Entry] = []
        for common in listing.common_prefixes:
            entries.append(
                pages.Entry(
                    common[len(prefix) :],
                    pages.url_path("s", target.access, target.bucket, common),
                    None,
                )
            )
        for obj in listing.objects:
            if obj.path == prefix:  # the folder's own marker (``a/``): the folder itself
                continue
            readable = shared.allows(Operation.READ, target.bucket, obj.path)
            entries.append(
                pages.Entry(
                    obj.path[len(prefix) :],
                    pages.url_path("s", target.access, target.bucket, obj.path),
                    obj.size,
                    obj.update_time,
                    pages.url_path("raw", target.access, target.bucket, obj.path)
                    if readable
                    else None,
                )
            )
        # "/s/<access>/<bucket>/" at the root: ``url_path`` of an empty
        # prefix would end in "//" (an empty key segment)
        here = (
            pages.url_path("s", target.access, target.bucket, prefix)
            if prefix
            else pages.url_path("s", target.access, target.bucket) + "/"
        )
        next_href = (
            f"{here}?cursor={quote(listing.next_token, safe='')}" if listing.next_token else None
        )
        readable = can_read or any(e.raw for e in entries)
        zip_href = (
            f"{here}?download-kind=zip"
            if readable and shared.allows(Operation.READ, target.bucket, None)
            else None
        )
        view = pages.ListingView(
            target.access,
            target.bucket,
            prefix,
            entries,
            next_href,
            zip_href,
            # "Listing only" is said of a link that forbids reads, not of a
            # level above the prefix it may read (the package's root of a
            # link to "2024/holiday/").
            readable or shared.allows(Operation.READ, target.bucket, None),
            shared.not_after,
        )
        return html_reply(200, pages.listing_page(view))

    async def buckets(self, shared: Shared, target: Target) -> Reply:
        principal = shared.principal
        if principal.project_id is None:
            return error_reply(404, "Not found", "This link names no bucket.")
        packages = await self.ctx.packages.list(principal, principal.project_id)
        return html_reply(200, pages.buckets_page(target.access, [p.name for p in packages]))

    # --- zip ------------------------------------------------------------------

    async def zip(self, shared: Shared, target: Target) -> Reply:
        prefix = target.key
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if not shared.allows(Operation.LIST, target.bucket, prefix):
            return error_reply(
                403, "Access denied", "This link does not allow listing this folder."
            )
        # (an access limited to some paths inside the prefix zips those)
        if not shared.allows(Operation.READ, target.bucket, None):
            return error_reply(403, "Access denied", "This link does not allow downloading files.")
        principal = shared.principal
        package = PackageRef.by_name(target.bucket)
        max_files, max_bytes = zipstream.MAX_FILES, zipstream.MAX_BYTES
        found: list[ObjectInfo] = []
        token: str | None = None
        more = False
        started = time.monotonic()
        listed = False  # anything under the prefix, its folder marker too
        while True:
            listing = await self.ctx.objects.list(
                principal,
                ListObjects(package, prefix=prefix, continuation=token, max_keys=PAGE_SIZE),
            )
            listed = listed or bool(listing.objects)
            found.extend(
                o
                for o in listing.objects
                if zipstream.entry_name(o.path, prefix) is not None
                and shared.allows(Operation.READ, target.bucket, o.path)
            )
            token = listing.next_token
            if token is None:
                break
            if len(found) > max_files:
                more = True
                break
        if prefix and not listed:
            return error_reply(
                404, "Not found", f"There is no file under {target.bucket}/{prefix} to download."
            )
        plan = zipstream.plan(found, more=more, max_files=max_files, max_bytes=max_bytes)
        log.debug(
            "share zip",
            files=len(plan.objects),
            capped=plan.capped,
            listed_in=round(time.monotonic() - started, 3),
        )
        objects = self.ctx.objects

        async def open_object(info: ObjectInfo) -> AsyncIterator[bytes] | None:
            try:
                download = await objects.get(
                    principal,
                    GetObject(
                        ObjectAddress(package, info.path), None, Conditions(if_match=(info.etag,))
                    ),
                )
            except (errors.NotFound, errors.Forbidden, errors.PreconditionFailed):
                return None
            return download.body

        name = (prefix.rstrip("/").rsplit("/", 1)[-1] if prefix else target.bucket) + ".zip"
        headers = [
            ("content-type", "application/zip"),
            ("content-disposition", disposition("attachment", name)),
            ("cache-control", "no-store"),
        ]
        if plan.capped:
            headers.append(
                (
                    "x-share-zip-truncated",
                    f"{plan.reason}; {len(plan.objects)} files in this zip",
                )
            )
        return Reply(200, headers, stream=zipstream.stream(plan, prefix, open_object))


def create_app(ctx: Context, metrics: HttpMetrics | None = None) -> Observability:
    """The link-sharing app over ``ctx`` (mount it where ``handles`` says)."""
    return Observability(ShareApp(ctx), protocol=PROTOCOL, metrics=metrics or HttpMetrics())


__all__ = ["PROTOCOL", "create_app", "handles"]
