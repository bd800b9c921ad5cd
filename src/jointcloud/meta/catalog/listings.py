"""A package's visible objects in path order, in three shapes: whole rows,
JCS entries, S3 listing rows (``rows.to_object``, ``to_entry``, ``to_listed``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import ListedObject, ObjectEntry, ObjectInfo
from jointcloud.meta import tables as t
from jointcloud.meta.catalog._shared import visible
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import to_entry, to_listed, to_object
from jointcloud.turns import PIECE, map_in_turns


async def list_objects(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    after: str | None,
    limit: int,
    inclusive: bool = False,
) -> list[ObjectInfo]:
    """Visible objects under ``prefix`` past ``after`` (or from it:
    ``inclusive``), in byte order of path (read on the driver's connection
    where it can be, driver.py)."""
    rows = await _listing_rows(conn, package_id, prefix, after, limit, inclusive, "whole")
    return await map_in_turns(to_object, rows)


async def list_entries(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    after: str | None,
    limit: int,
    inclusive: bool = False,
) -> list[ObjectEntry]:
    """``list_objects`` with what a JCS listing shows (eight columns)."""
    rows = await _listing_rows(conn, package_id, prefix, after, limit, inclusive, "entry")
    return await map_in_turns(to_entry, rows)


async def list_listed(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    after: str | None,
    limit: int,
    inclusive: bool = False,
) -> list[ListedObject]:
    """``list_objects`` with only what a listing shows (five columns)."""
    rows = await _listing_rows(conn, package_id, prefix, after, limit, inclusive, "listed")
    return await map_in_turns(to_listed, rows)


async def _listing_rows(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    after: str | None,
    limit: int,
    inclusive: bool,
    shape: _Shape,
) -> Sequence[Any]:
    mode: _After = None if after is None else ("from" if inclusive else "past")
    params: dict[str, Any] = {"package_id": package_id, "limit": limit}
    if prefix:
        params.update(low=prefix, high=prefix + "\U0010ffff")
    if after is not None:
        params["after"] = after
    return await _listing(bool(prefix), mode, shape).rows(conn, params, piece=PIECE)


_After = Literal["from", "past"] | None
# What each listing reads of a row: all of it (``rows.to_object``), a JCS
# entry (``rows.to_entry``) or an S3 listing's (``rows.to_listed``).
_Shape = Literal["whole", "entry", "listed"]
ENTRY_COLUMNS = (
    t.objects.c.id,
    t.objects.c.package_id,
    t.objects.c.path,
    t.objects.c.size,
    t.objects.c.file_hash,
    t.objects.c.redundancy,
    t.objects.c.created_at,
    t.objects.c.updated_at,
)
LISTED_COLUMNS = (
    t.objects.c.path,
    t.objects.c.size,
    t.objects.c.etag,
    t.objects.c.updated_at,
    t.objects.c.checksums,
)
_COLUMNS: dict[_Shape, Any] = {
    "whole": (t.objects,),
    "entry": ENTRY_COLUMNS,
    "listed": LISTED_COLUMNS,
}


@functools.cache
def _listing(prefixed: bool, after: _After, shape: _Shape) -> DriverQuery:
    """One listing statement per shape, built once."""
    path = t.objects.c.path
    q = select(*_COLUMNS[shape]).where(visible, t.objects.c.package_id == bindparam("package_id"))
    if prefixed:
        # A byte-wise range scan instead of LIKE: no escaping, uses the index.
        q = q.where(path >= bindparam("low"), path < bindparam("high"))
    if after == "from":
        q = q.where(path >= bindparam("after"))
    elif after == "past":
        q = q.where(path > bindparam("after"))
    return DriverQuery(q.order_by(path).limit(bindparam("limit")))
