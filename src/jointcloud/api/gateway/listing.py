"""Listings from the S3 service a caller names, page by page, bounded.

Found by review (2026-12-06, seventh session): ``/listObjects`` looped while
it had fewer keys than asked, so a service answering empty pages marked
truncated kept it going for ever; ``/listMultipartUploads`` and
``/listParts`` kept every page of botocore's paginator (10-20 MiB/s). Now
one request reads at most ``MAX_PAGES`` pages and ``limit`` items, within
``LIST_SECONDS``, and stops on a page that makes no progress: truncated
with no next marker, or with the markers it was asked with.

The seed's answers are bare lists, with no marker to go on from: a listing
cut short answers what it gathered (as a ``max_keys`` cut does), and one
that gathered nothing answers an error naming why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jointcloud.api.gateway.envelope import GatewayError
from jointcloud.api.gateway.s3client import S3

T = TypeVar("T")

MAX_PAGES = 100
MAX_ITEMS = 10_000  # uploads or parts in one answer (S3 has at most 10,000 parts)
PAGE = 1000  # items asked for per page: S3's most
LIST_SECONDS = 300.0  # the pages of one request, together

# Per operation: the parameter of a page's size, and (request marker, the
# answer's next marker) pairs.
PAGING: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "list_objects_v2": ("MaxKeys", (("ContinuationToken", "NextContinuationToken"),)),
    "list_multipart_uploads": (
        "MaxUploads",
        (("KeyMarker", "NextKeyMarker"), ("UploadIdMarker", "NextUploadIdMarker")),
    ),
    "list_parts": ("MaxParts", (("PartNumberMarker", "NextPartNumberMarker"),)),
}
OPERATIONS = {
    "list_objects_v2": "ListObjectsV2",
    "list_multipart_uploads": "ListMultipartUploads",
    "list_parts": "ListParts",
}


@dataclass
class Listed(Generic[T]):
    items: list[T]
    stopped: str = ""  # why the listing ended before the service said so


async def pages(
    s3: S3, method: str, take: Callable[[Any], Iterable[T]], *, limit: int, **kwargs: Any
) -> Listed[T]:
    """Up to ``limit`` items of ``method``'s listing, ``take`` giving a
    page's items."""
    size_arg, markers = PAGING[method]
    args = dict(kwargs)
    sent: tuple[Any, ...] = ()
    out: list[T] = []
    loop = asyncio.get_running_loop()
    ends = loop.time() + LIST_SECONDS
    for _ in range(MAX_PAGES):
        args[size_arg] = min(PAGE, limit - len(out))
        page = await s3.call(method, **args)
        out.extend(take(page))
        if len(out) >= limit:
            return Listed(out[:limit])
        if not page.get("IsTruncated"):
            return Listed(out)
        following = tuple(page.get(answer) for _, answer in markers)
        if not any(following):
            return Listed(out, "a page said the listing goes on but gave no marker to go on from")
        if following == sent:
            return Listed(out, "a page gave back the marker it was asked with")
        if loop.time() > ends:
            return Listed(out, f"the pages took over {LIST_SECONDS:.0f} s")
        args.update({ask: value for (ask, _), value in zip(markers, following, strict=True)})
        sent = following
    return Listed(out, f"the facade reads at most {MAX_PAGES} pages for one request")


def answer_of(method: str, listed: Listed[T]) -> list[T]:
    """What a request answers: the items, or an error when a listing cut
    short gathered none (an empty list would say there are none)."""
    if listed.stopped and not listed.items:
        raise GatewayError(
            f"operation error S3: {OPERATIONS[method]}, the listing made no progress: "
            f"{listed.stopped}"
        )
    return listed.items
