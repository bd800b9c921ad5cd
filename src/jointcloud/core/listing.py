"""Listing pages: objects under a prefix in path order, those sharing a
part up to a delimiter rolled up into common prefixes, and the opaque
tokens that resume a listing where a page ended. Shared by every
protocol's listing (``ObjectService.list``, ``list_brief``,
``list_by_path``)."""

from __future__ import annotations

import asyncio
import base64
import bisect
import builtins
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from jointcloud.core.authz import (
    Operation,
    Principal,
    allows,
    authorize,
    path_prefixes,
    visible,
)
from jointcloud.core.buckets import PackageService
from jointcloud.core.commands import ListObjects, PackageRef
from jointcloud.core.models import ListedObject, ObjectEntry, ObjectInfo, Package
from jointcloud.core.paths import check_cursor, key_prefix, object_path, path_prefix
from jointcloud.errors import BadArgument
from jointcloud.meta import catalog
from jointcloud.meta.db import Database
from jointcloud.turns import turn

MAX_KEYS = 1000


@dataclass(frozen=True)
class Listing:
    common_prefixes: list[str]
    objects: list[ObjectInfo]
    next_token: str | None


@dataclass(frozen=True)
class EntryListing:
    """A JCS listing page: each object as ``ObjectEntry``."""

    common_prefixes: list[str]
    objects: list[ObjectEntry]
    next_token: str | None


@dataclass(frozen=True)
class BriefListing:
    """A listing page with only what a listing shows of each object."""

    common_prefixes: list[str]
    objects: list[ListedObject]
    next_token: str | None


E = TypeVar("E", ObjectInfo, ObjectEntry, ListedObject)
# (conn, package id, prefix, after, limit, inclusive) -> one batch, in path order
Fetch = Callable[[Any, int, str, "str | None", int, bool], Awaitable[list[E]]]


# Longer than any token this service issues (a 1,024-byte path, every byte
# a JSON escape, in base64): refused before it is decoded.
MAX_TOKEN = 16384


def encode_opaque(data: dict[str, object]) -> str:
    """A continuation token: JSON in URL-safe base64, without padding."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_opaque(token: str, field: str, max_length: int = MAX_TOKEN) -> dict[str, Any]:
    """What ``encode_opaque`` made; anything else (too long, not base64, not
    a JSON object, JSON nested past the decoder's depth) is ``field``'s bad
    argument."""
    try:
        if len(token) > max_length:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict):
            raise ValueError
    except (ValueError, TypeError, RecursionError) as exc:
        raise not_issued(field) from exc
    return data


def not_issued(field: str) -> BadArgument:
    return BadArgument.about(field, "is not a token this service issued")


def encode_token(after: str, inclusive: bool) -> str:
    return encode_opaque({"a": after, "i": inclusive})


def decode_token(token: str, field: str) -> tuple[str, bool]:
    data = decode_opaque(token, field)
    after, inclusive = data.get("a"), data.get("i")
    if not isinstance(after, str) or not isinstance(inclusive, bool):
        raise not_issued(field)
    try:
        check_cursor(after, field)  # a crafted cursor no stored path could hold
    except BadArgument as exc:
        raise not_issued(field) from exc
    return after, inclusive


def past(common: str) -> tuple[str, bool]:
    """Where a listing resumes after a common prefix: the least string above
    every path that begins with it (its last character + 1, inclusive)."""
    last = ord(common[-1])
    if last >= 0x10FFFF:
        return common + "\U0010ffff", False
    # No key holds a surrogate (paths.check_chars): U+D7FF is followed by U+E000.
    following = 0xE000 if last == 0xD7FF else last + 1
    return common[:-1] + chr(following), True


HIDDEN_BATCH = 256
# Rows read at once just past a common prefix: what follows may be more rows
# under it (passed over, unshown) as well as the next entries. A page of
# common prefixes read a full page of rows for each of them, 500,000 rows
# for one page of 1,000 (found by review): it now reads this many.
ROLLUP_BATCH = 32
# Reads of one page between turns of the event loop (``turns``): each read
# of many rows takes turns within itself, but a page of 1,000 common
# prefixes is some 1,000 reads of up to ROLLUP_BATCH rows.
TURN_QUERIES = 8


def skip_to(
    regions: list[str], after: str | None, inclusive: bool
) -> tuple[str | None, bool] | None:
    """Where a listing that may show only paths beginning with one of
    ``regions`` (sorted, none inside another) goes on from ``after``: the
    start of the next region when ``after`` lies before it, ``after``
    itself when it lies in one, None when every region is behind it. Rows
    in between would all be hidden: a link to one object made a listing
    of its package read every row before it (found by review)."""
    for region in regions:
        end, _ = past(region)
        if after is not None and end <= after:
            continue  # behind the cursor
        if after is None or after < region:
            return region, True
        return after, inclusive
    return None


def in_region(regions: list[str], path: str) -> bool:
    """Whether ``path`` begins with one of ``regions`` (sorted, none inside
    another: only the greatest one not above ``path`` can)."""
    at = bisect.bisect_right(regions, path)
    return at > 0 and path.startswith(regions[at - 1])


async def scan(
    conn: Any,
    principal: Principal | None,
    pkg: Package,
    prefix: str,
    delimiter: str | None,
    after: str | None,
    inclusive: bool,
    max_keys: int,
    fetch: Fetch[E],
) -> tuple[list[str], list[E], str | None]:
    """One page of a listing in the read snapshot ``conn``; ``principal``
    with caveats filters what is shown (None: show everything)."""
    restricted = principal if principal is not None and principal.caveats else None
    regions = None if restricted is None else path_prefixes(restricted, pkg.name)
    objs: list[E] = []
    prefixes: list[str] = []
    batch: Sequence[E] = ()
    rolled: str | None = None  # the common prefix whose rows are passed over
    small = False  # the last batch ended among the rows of a common prefix
    queries = 0
    while len(objs) + len(prefixes) < max_keys:
        if regions is not None:
            ahead = skip_to(regions, after, inclusive)
            if ahead is None:
                return prefixes, objs, None  # nothing it may see lies ahead
            after, inclusive = ahead
        room = max_keys - len(objs) - len(prefixes)
        # One row more than fits: it answers "is there more?" at the end.
        # A key's caveats may hide most rows of a wide scan (a link to one
        # object, a page asking for one row): read them in larger batches
        # than the page has room for, or each query would pass two.
        want = room + 1 if restricted is None else max(room + 1, HIDDEN_BATCH)
        if small:
            # Past a common prefix the next rows may all lie under it: a
            # small batch, so that each common prefix costs few rows read.
            want = min(want, ROLLUP_BATCH)
        if queries and queries % TURN_QUERIES == 0:
            await turn()  # a page of common prefixes is many small reads
        queries += 1
        batch = await fetch(conn, pkg.package_id, prefix, after, want, inclusive)
        if not batch:
            return prefixes, objs, None
        rolled = None
        if delimiter is None and restricted is None:
            # Every row is shown as it comes (no common prefix, no caveat):
            # a listing of 1,000 keys spent 6 % of its CPU in the loop below.
            taken = batch[: max_keys - len(objs) - len(prefixes)]
            objs.extend(taken)
            if taken:
                after, inclusive = taken[-1].path, False
            small = False
            continue
        for obj in batch:
            if len(objs) + len(prefixes) == max_keys:
                break
            if rolled is not None and obj.path.startswith(rolled):
                continue  # under the common prefix: already answered
            if regions is not None and not in_region(regions, obj.path):
                # Past the key's region: skip_to goes on at its next one.
                # Taken, such a row made a common prefix that nothing the
                # key may see lies under (found by a model test).
                after, inclusive = obj.path, True
                break
            rolled = None
            rest = obj.path[len(prefix) :]
            if delimiter is not None and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if restricted is None or allows(
                    restricted,
                    Operation.LIST,
                    project_id=pkg.bucket_id,
                    package=pkg.name,
                    path=common,
                ):
                    prefixes.append(common)
                # Everything under ``common`` is skipped: the rows of this
                # batch under it here, those beyond it by the next query.
                after, inclusive = past(common)
                rolled = common
                continue
            if restricted is None or visible(restricted, pkg.name, obj.path):
                objs.append(obj)
            after, inclusive = obj.path, False
        small = rolled is not None
    last = batch[-1].path
    if after is not None and (last > after or (inclusive and last == after)):
        more: Sequence[E] = batch  # a fetched row lies past the page
    else:
        more = await fetch(conn, pkg.package_id, prefix, after, 1, inclusive)
    next_token = encode_token(after, inclusive) if more and after is not None else None
    return prefixes, objs, next_token


# Listings of one user read at once in one process; the others wait their
# turn. With listings suspending between pieces (``turns``), a turn of the
# event loop holds a piece of each listing in progress: a cap per user keeps
# one user's many clients from filling every turn (docs/decisions.md,
# "Listings in pieces"). SQLite reads on the loop's thread, so a second
# listing would only take turns with the first; PostgreSQL's reads wait on
# its server, and a second listing fills that wait.
DatabaseKind = Literal["sqlite", "postgresql"]
LISTINGS_PER_USER: dict[DatabaseKind, int] = {"sqlite": 1, "postgresql": 2}


class PerUserGate:
    """At most ``per_user`` holders per user at once; the rest wait, in order."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._gates: dict[int, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def held(self, user_id: int) -> AsyncIterator[None]:
        gate, users = self._gates.get(user_id) or (asyncio.Semaphore(self.per_user), 0)
        self._gates[user_id] = (gate, users + 1)
        try:
            async with gate:
                yield
        finally:
            gate, users = self._gates[user_id]
            if users == 1:
                del self._gates[user_id]
            else:
                self._gates[user_id] = (gate, users - 1)


class ObjectListings:
    """The listings of ``ObjectService``: S3's and the JCS ones."""

    def __init__(self, db: Database, packages: PackageService) -> None:
        self.db = db
        self.packages = packages
        self.gate = PerUserGate(LISTINGS_PER_USER["sqlite" if db.is_sqlite else "postgresql"])

    async def list(self, principal: Principal, cmd: ListObjects) -> Listing:
        """Objects under ``cmd.prefix`` in path order, those sharing a part up
        to ``cmd.delimiter`` rolled up into common prefixes; a key restricted
        to some paths sees only what its caveats reach."""
        return Listing(*await self._page(principal, cmd, catalog.list_objects))

    async def list_brief(self, principal: Principal, cmd: ListObjects) -> BriefListing:
        """``list`` showing only path, size, ETag, update time and checksums
        of each object (S3's listings): several times cheaper per object."""
        return BriefListing(*await self._page(principal, cmd, catalog.list_listed))

    async def _page(
        self, principal: Principal, cmd: ListObjects, fetch: Fetch[E]
    ) -> tuple[builtins.list[str], builtins.list[E], str | None]:
        prefix = key_prefix(cmd.prefix)
        if cmd.max_keys < 0:
            raise BadArgument("max_keys must not be negative")
        pkg = await self.packages.resolve(principal, cmd.package, Operation.LIST, prefix or "")
        if prefix is None:
            return [], [], None  # no key begins with it
        after: str | None = cmd.start_after
        inclusive = False
        if after is not None and cmd.after_prefix:
            after, inclusive = past(after)
        if cmd.continuation:
            after, inclusive = decode_token(cmd.continuation, "continuation")
        if cmd.max_keys == 0:
            return [], [], None
        async with self.gate.held(principal.user_id), self.db.read() as conn:
            return await scan(
                conn,
                principal,
                pkg,
                prefix,
                cmd.delimiter or None,
                after,
                inclusive,
                min(cmd.max_keys, MAX_KEYS),
                fetch,
            )

    async def list_by_path(
        self,
        principal: Principal,
        package_id: int,
        path: str,
        *,
        is_prefix: bool,
        no_recursive: bool,
        token: str | None = None,
        max_keys: int = MAX_KEYS,
    ) -> EntryListing:
        """JCS: one object (``is_prefix`` false) or a page of those under a
        prefix; a key restricted to some paths sees only what they reach."""
        pkg = await self.packages.resolve(principal, PackageRef.by_id(package_id), Operation.LIST)
        if not 1 <= max_keys <= MAX_KEYS:
            raise BadArgument.about("max keys", f"must be between 1 and {MAX_KEYS}")

        def may_list(at: str) -> None:
            authorize(
                principal, Operation.LIST, project_id=pkg.bucket_id, package=pkg.name, path=at
            )

        if not is_prefix:
            exact = object_path(path)
            may_list(exact)
            async with self.db.read() as conn:
                one = await catalog.get_object_by_path(conn, package_id, exact)
            if one is None or not visible(principal, pkg.name, one.path):
                return EntryListing([], [], None)
            return EntryListing([], [ObjectEntry.of(one)], None)
        prefix = path_prefix(path)
        may_list(prefix)
        after, inclusive = decode_token(token, "continuation token") if token else (None, False)
        delimiter = "/" if no_recursive else None
        async with self.gate.held(principal.user_id), self.db.read() as conn:
            return EntryListing(
                *await scan(
                    conn,
                    principal,
                    pkg,
                    prefix,
                    delimiter,
                    after,
                    inclusive,
                    max_keys,
                    catalog.list_entries,
                )
            )

    async def package_objects(
        self, principal: Principal, package_id: int
    ) -> builtins.list[ObjectInfo]:
        pkg = await self.packages.get(principal, package_id, Operation.LIST)
        out: builtins.list[ObjectInfo] = []
        async with self.gate.held(principal.user_id), self.db.read() as conn:
            after: str | None = None
            while batch := await catalog.list_objects(conn, package_id, "", after, 1000):
                out += [o for o in batch if visible(principal, pkg.name, o.path)]
                after = batch[-1].path
        return out
