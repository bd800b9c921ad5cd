"""The replies of link sharing: one response type for pages, raw bytes
and errors, every one carrying the security headers below, and the one
table from core errors to pages (``domain_reply``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Send

from jointcloud import errors
from jointcloud.api.common.http import pieces
from jointcloud.api.share import pages

# A shared file must not run script in the service's origin, whatever its
# bytes: raw responses are sandboxed documents that may load nothing.
RAW_CSP = (
    "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; "
    "style-src 'unsafe-inline'; frame-ancestors 'self'"
)
# Pages: no script at all; previews from this origin; downloads allowed.
PAGE_CSP = (
    "sandbox allow-downloads allow-same-origin allow-popups "
    "allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation; "
    "default-src 'none'; img-src 'self'; media-src 'self'; frame-src 'self'; "
    "object-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),  # the access in the URL is a credential
    ("cross-origin-resource-policy", "same-origin"),
)


@dataclass
class Reply:
    """A response: status, headers, and a body (bytes or a stream)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    csp: str = RAW_CSP

    async def send(self, send: Send, head_only: bool) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        names = {k.lower() for k, _ in self.headers}
        if self.stream is None and "content-length" not in names and self.status not in (204, 304):
            headers.append((b"content-length", str(len(self.body)).encode()))
        headers.append((b"content-security-policy", self.csp.encode()))
        headers.extend((k.encode(), v.encode()) for k, v in SECURITY_HEADERS)
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        stream = self.stream
        if head_only or stream is None:
            if stream is not None:
                await _close(stream)
            body = b"" if head_only else self.body
            await send({"type": "http.response.body", "body": body})
            return
        try:
            async for chunk in stream:
                for piece in pieces(chunk):
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
        finally:
            await _close(stream)
        await send({"type": "http.response.body", "body": b""})


async def _close(stream: AsyncIterator[bytes]) -> None:
    aclose: Callable[[], Awaitable[Any]] | None = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def html_reply(status: int, text: str, extra: list[tuple[str, str]] | None = None) -> Reply:
    headers = [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")]
    return Reply(status, headers + (extra or []), text.encode(), csp=PAGE_CSP)


def error_reply(status: int, title: str, message: str) -> Reply:
    return html_reply(status, pages.error_page(status, title, message))


def domain_reply(exc: errors.DomainError) -> Reply:
    """The page of a core error (one table for the protocol)."""
    if isinstance(exc, errors.NotFound):
        return error_reply(404, "Not found", exc.message)
    if isinstance(exc, errors.Forbidden):
        # the access's window closed (or has not opened) since it was judged
        if "expired" in exc.message:
            return error_reply(410, "Expired", f"This link has expired ({exc.message}).")
        if "not valid before" in exc.message:
            return error_reply(403, "Not valid yet", f"This link is not valid yet ({exc.message}).")
        return error_reply(403, "Access denied", exc.message)
    if isinstance(exc, errors.Unauthorized):
        return error_reply(403, "Not valid", exc.message)
    if isinstance(exc, errors.PreconditionFailed):
        return error_reply(412, "Precondition failed", exc.message)
    if isinstance(exc, errors.BadArgument):
        return error_reply(400, "Bad request", exc.message)
    unavailable = errors.NotEnoughBlocks | errors.SpaceUnavailable | errors.MetadataUnavailable
    if isinstance(exc, unavailable):
        return error_reply(503, "Unavailable", exc.message)
    return error_reply(500, "Error", exc.message)
