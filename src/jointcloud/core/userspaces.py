"""User spaces: the storage backends a user brings, and the pool of open ones.

Credentials are sealed with the master key before they touch the database,
opened only to build a backend, and shown to users masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jointcloud.core.authz import Principal, require_account
from jointcloud.core.models import SpaceState, UserSpace
from jointcloud.core.paths import entity_name
from jointcloud.core.transfer.tasks import spaces_of
from jointcloud.errors import (
    AlreadyExists,
    BadArgument,
    BlockNotFound,
    Conflict,
    DomainError,
    DuplicateEntry,
    SpaceAuthError,
    SpaceError,
    SpaceNotFound,
    SpaceRefused,
    SpaceTestFailed,
)
from jointcloud.keys.master import MasterKey
from jointcloud.meta import accounts, jobs, spacestate, strays, transfers
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.spaces.base import Space
from jointcloud.spaces.registry import (
    check_remote,
    check_root_path,
    open_checked,
    validate_storage,
)
from jointcloud.spaces.rules import SpaceRules, check_disjoint, check_local, resolve_local

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from jointcloud.core.blockdeletes import BlockDeletes

DEFAULT_ROOT = "jcs"


class Keep(Enum):
    """A field of :class:`SpaceChanges` left as it is (``None`` is a value:
    no credential, the default root path)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True)
class SpaceChanges:
    """What an update changes; every field not given is kept. Values are
    still unchecked user input (a protocol only spells the fields)."""

    name: object = KEEP
    storage: object = KEEP
    credential: object = KEEP
    root_path: object = KEEP
    state: object = KEEP


_SECRET_FIELDS = {"secretAccessKey", "accountKey", "json"}


def mask_credential(cred: dict[str, Any] | None) -> dict[str, Any] | None:
    """Never hand a secret back: keep the type and a hint of the key id only."""
    if cred is None:
        return None
    out: dict[str, Any] = {}
    for key, value in cred.items():
        if key == "type":
            out[key] = value
        elif key in _SECRET_FIELDS or not isinstance(value, str):
            out[key] = "********"
        else:
            out[key] = value[:4] + "****" if len(value) > 8 else "****"
    return out


def _root_path(raw: object) -> str:
    """The root path to record: the default when none is given, otherwise
    what every open accepts (``check_root_path``)."""
    return DEFAULT_ROOT if raw is None else check_root_path(raw)


# Where a space keeps its blocks and how it is reached: storage, root path,
# sealed credential.
Location = tuple[dict[str, Any], str, bytes | None]


def _location(space: UserSpace) -> Location:
    """What an update of a space's storage, credential or root path changes.
    Compared as values: every upload compares one per space it writes to,
    twice, and a sorted JSON text of them held the GIL 2 % of the time
    under 1 MiB uploads (py-spy, 2026-12-07). The storage is copied, so a
    record changed later cannot change what the pool holds."""
    return (dict(space.storage), space.root_path, space.sealed_credential)


def _pinned(recorded: str, rules: SpaceRules) -> Path:
    """Where a Local space recorded at ``recorded`` (resolved when it was
    recorded) is, if it is still there: a path that now resolves elsewhere
    had part of it replaced by a link, and its space is refused. Else a
    user who can replace his own older space's directory by a link to a
    newer space's reached that space's files (found by review)."""
    path = check_local(recorded, rules)
    if str(path) != recorded:
        raise SpaceRefused(
            f"local space path {recorded!r} now leads to {str(path)!r}: part of it was "
            "replaced by a link since the space was recorded, and a space never follows "
            "its directory elsewhere"
        )
    return path


class SpacePool:
    """Open backends by user-space id, cached; rebuilt after an update.

    Callers bring the records they read, and a record read before a move
    names the old location. The pool knows where each space it opened is
    (and where a move made here put it); a record naming another location
    is settled by the database (one read, only then). So the cache is never
    set back to an older location: a stale record arriving after a move
    would send every later read and write of the space there."""

    def __init__(self, db: Database, master: MasterKey, rules: SpaceRules) -> None:
        self._db = db
        self._master = master
        self.rules = rules
        self._open: dict[int, Space] = {}
        self._where: dict[int, Location] = {}
        # One lock per space while someone holds or awaits it, then gone:
        # a plain dict kept the lock of every space ever opened, deleted
        # ones too (found by a soak's review). Dropping a deleted space's
        # lock by hand instead could let a ``get`` still waiting on it and
        # a new one open the space at once, the first backend never closed.
        self._opening: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.records: dict[int, UserSpace] = {}

    def credential(self, space: UserSpace) -> dict[str, Any] | None:
        if space.sealed_credential is None:
            return None
        raw = self._master.open_secret(space.sealed_credential, f"space:{space.user_space_id}")
        value: dict[str, Any] = json.loads(raw)
        return value

    def seal(self, space_id: int, credential: dict[str, Any] | None) -> bytes | None:
        if credential is None:
            return None
        return self._master.seal_secret(json.dumps(credential).encode(), f"space:{space_id}")

    async def get(self, space: UserSpace) -> Space:
        """The backend of ``space`` where the database says it is now."""
        sid, here = space.user_space_id, _location(space)
        opened = self._open.get(sid)
        if opened is not None and self._where.get(sid) == here:
            self.records[sid] = space
            return opened
        async with self._opening.setdefault(sid, asyncio.Lock()):
            known = self._where.get(sid)
            if known is not None and known != here:
                # One of the two was read before a move: the database decides.
                async with self._db.read() as conn:
                    current = await accounts.get_space(conn, sid)
                if current is None:
                    await self.forget(sid)
                    raise SpaceNotFound(f"user space {sid} no longer exists")
                space, here = current, _location(current)
            opened = self._open.get(sid)
            if opened is not None and known != here:
                del self._open[sid]
                await opened.close()
                opened = None
            if opened is None:
                opened = await self.open(space, space.root_path)
                self._open[sid] = opened
            self._where[sid] = here
            self.records[sid] = space
            return opened

    def note(self, space: UserSpace) -> None:
        """Take a record's state and latency (read preference), unless it
        names another location than the pool knows (``get`` settles that)."""
        known = self._where.get(space.user_space_id)
        if known is None or known == _location(space):
            self.records[space.user_space_id] = space

    async def moved(self, space: UserSpace) -> None:
        """An update moved ``space`` or changed its credential (its record
        as committed): that is known before the old backend goes, so no
        record read before the update opens the old one again."""
        sid = space.user_space_id
        # Under the space's lock: a ``get`` that read the database before the
        # update committed must not set the old location back after this.
        async with self._opening.setdefault(sid, asyncio.Lock()):
            self._where[sid] = _location(space)
            self.records[sid] = space
            await self.reopen(sid)

    async def open(self, space: UserSpace, root_path: str, *, durable: bool = True) -> Space:
        """A fresh backend for ``space`` under the operator's rules (its Local
        directory confined and shared with no other space, its endpoint not
        internal); the caller closes it. A Local directory must exist: it is
        made when the space is recorded (``prepare``), never again."""
        if space.storage.get("type") == "Local":
            await self.check_disjoint(space.storage, space.user_space_id)
        try:
            return await open_checked(
                space.storage, self.credential(space), root_path, rules=self.rules, durable=durable
            )
        except BadArgument as exc:
            # A row stored before a rule that now refuses it (an OBS space
            # without a credential, a GCS credential that is no
            # service-account key...): a refused space, which reads, uploads
            # and the health probe route around as any space that cannot be
            # opened, not the caller's bad argument.
            raise SpaceRefused(
                f"user space {space.user_space_id} is refused: {exc.message}"
            ) from None

    async def open_new(
        self, storage: dict[str, Any], credential: dict[str, Any] | None, root_path: str
    ) -> Space:
        """A backend for a space being recorded, moved or tested: a Local
        directory is made here (and only here); a failure is the test's
        'connect' step. The caller closes it."""
        try:
            return await open_checked(storage, credential, root_path, rules=self.rules, create=True)
        except SpaceError as exc:
            raise _connect_failed(exc) from exc

    async def prepare(self, storage: dict[str, Any], root_path: str) -> None:
        """Make a Local space's directory as it is recorded or moved (refused,
        naming why, when it cannot be made); other kinds need nothing."""
        if storage.get("type") == "Local":
            await (await self.open_new(storage, None, root_path)).close()

    async def open_tree(self, space: UserSpace) -> Space:
        """The space at its storage root (for transfers of user files), not
        cached: the caller closes it. A Local space's own directory (its
        root path) must be there too: a disk unmounted from under its mount
        point leaves the storage root behind, empty, on the file system
        beneath, where transfers would read nothing and write the user's
        files."""
        if space.storage.get("type") == "Local" and space.root_path:
            await (await self.open(space, space.root_path, durable=False)).close()
        return await self.open(space, "", durable=False)

    async def check_disjoint(
        self,
        storage: dict[str, Any],
        space_id: int | None,
        *,
        admit: bool = False,
        conn: AsyncConnection | None = None,
    ) -> None:
        """A Local space's directory may neither contain nor lie inside the
        directory of any other space, whoever owns it (checked again at every
        open: rows written before this rule existed are refused too).

        ``admit``: the path is being recorded (create, update, test), so it
        must keep clear of every usable space, newer ones included. ``conn``:
        the recording transaction, which sees the spaces recorded before it."""
        path = _pinned(storage["path"], self.rules)
        if conn is not None:
            every = await spacestate.list_all(conn)
        else:
            async with self._db.read() as reader:
                every = await spacestate.list_all(reader)
        # A new or moved space must keep clear of every usable one; of two
        # existing rows that overlap (written before this rule), the older one
        # keeps working. An update is not "older": moving an old space over a
        # newer one would take the newer one's files and shut it out.
        # Rows the rules refuse anyway cannot be opened and so cannot harm.
        others: dict[int, Path] = {}
        for s in every:
            if s.user_space_id == space_id or s.storage.get("type") != "Local":
                continue
            if not admit and space_id is not None and s.user_space_id > space_id:
                continue
            other = self._usable_path(s)
            if other is not None:
                others[s.user_space_id] = other
        check_disjoint(path, others)

    def _usable_path(self, space: UserSpace) -> Path | None:
        try:
            return _pinned(space.storage["path"], self.rules)
        except (SpaceRefused, KeyError, TypeError):
            return None

    async def get_by_id(self, space_id: int) -> Space:
        record = self.records.get(space_id)
        if record is None:
            async with self._db.read() as conn:
                record = await accounts.get_space(conn, space_id)
            if record is None:
                raise SpaceNotFound(f"user space {space_id} no longer exists")
        return await self.get(record)

    def preference(self, space_id: int) -> tuple[int, float]:
        """Sort key for reads: healthy first, then by measured latency."""
        rec = self.records.get(space_id)
        if rec is None:
            return (1, float("inf"))
        latency = rec.latency_ms if rec.latency_ms is not None else float("inf")
        return (0 if rec.state == SpaceState.NORMAL else 1, latency)

    async def forget(self, space_id: int) -> None:
        """The space is gone (deleted): nothing of it is kept."""
        self.records.pop(space_id, None)
        self._where.pop(space_id, None)
        await self.reopen(space_id)

    async def reopen(self, space_id: int) -> None:
        """Drop the open backend (a failed test, a stale connection): the
        next ``get`` opens a new one. Where the space is stays known."""
        old = self._open.pop(space_id, None)
        if old is not None:
            await old.close()

    async def close(self) -> None:
        for sid in list(self._open):
            await self.forget(sid)


def _holds_blocks(space_id: int) -> Conflict:
    return Conflict(f"user space {space_id} holds blocks: its storage and root path cannot change")


def _still_holds(space_id: int, n: int | None) -> Conflict:
    held = "blocks" if n is None else f"{n} block{'s' if n != 1 else ''}"
    return Conflict(f"user space {space_id} still holds {held}; drain it before deleting")


async def _no_open_transfer(conn: AsyncConnection, space: UserSpace, what: str) -> None:
    """A transfer run reads or writes a space's files through the backend it
    opened at its start, to its end: deleted (and its directory taken by
    another space, anyone's) or moved, the run would go on writing where
    the space was. Refused until the run ends or is cancelled."""
    for task_id, spec in await transfers.open_run_specs(conn, space.user_id):
        if space.user_space_id in spaces_of(spec):
            raise Conflict(
                f"user space {space.user_space_id} is used by transfer task {task_id}, "
                f"whose run has not ended: {what} until it ends or is cancelled"
            )


def _connect_failed(exc: SpaceError) -> SpaceTestFailed:
    """Opening the backend (e.g. creating a Local directory) is the 'connect' step."""
    return SpaceTestFailed(f"user space test failed at step 'connect': {exc.message}")


# (offset, length) of the probe object read back as a range.
PROBE_RANGE = (100, 500)


async def probe(space: Space) -> float:
    """Connect, write, read back and delete a probe object; name the failing step."""
    key = f".jcs-probe/{secrets.token_hex(8)}"
    payload = secrets.token_bytes(1024)
    started = time.perf_counter()
    step = "connect"
    try:
        with contextlib.suppress(BlockNotFound):
            await space.stat(key)
        step = "write"
        await space.put(key, payload)
        step = "read"
        if await space.read(key) != payload:
            raise SpaceTestFailed("probe object read back different bytes")
        # And a range of it, as every block read is: a cloud that fails or
        # mangles ranged GETs only would pass a whole read (found by review).
        if (
            await space.read(key, PROBE_RANGE[0], PROBE_RANGE[1])
            != payload[PROBE_RANGE[0] : PROBE_RANGE[0] + PROBE_RANGE[1]]
        ):
            raise SpaceTestFailed("probe object read back different bytes in a range")
        step = "delete"
        await space.delete(key)
    except SpaceAuthError as exc:
        raise SpaceTestFailed(f"user space test failed at step 'auth': {exc.message}") from exc
    except DomainError as exc:
        raise SpaceTestFailed(f"user space test failed at step '{step}': {exc.message}") from exc
    return (time.perf_counter() - started) * 1000


# How many of its owed block deletes a space's delete carries out first;
# the rest are forgotten with it (a space whose cloud failed for long may
# owe many, and the delete is one request).
PAID_AT_DELETE = 1000
# ... in batches of this many after a first one alone (as GC pays them), up
# to this long in all: the request waits for them.
PAID_BATCH = 100
PAY_SECONDS = 15.0


class UserSpaceService:
    def __init__(self, db: Database, pool: SpacePool, deletes: BlockDeletes) -> None:
        self.db = db
        self.pool = pool
        self.deletes = deletes

    def masked_credential(self, space: UserSpace) -> dict[str, Any] | None:
        return mask_credential(self.pool.credential(space))

    async def get(self, principal: Principal, space_id: int) -> UserSpace:
        require_account(principal)
        async with self.db.read() as conn:
            space = await accounts.get_space(conn, space_id)
        if space is None or space.user_id != principal.user_id:
            raise SpaceNotFound(f"user space {space_id} not found")
        return space

    async def list(self, principal: Principal) -> list[UserSpace]:
        require_account(principal)
        async with self.db.read() as conn:
            return await accounts.list_spaces(conn, principal.user_id)

    async def create(
        self,
        principal: Principal,
        name: object,
        storage: object,
        credential: object = None,
        root_path: object = None,
    ) -> UserSpace:
        require_account(principal)
        user_id = principal.user_id
        name = entity_name(name, "name")
        storage_d, cred_d = self._check(storage, credential)
        root = _root_path(root_path)
        await self._admit(storage_d, None)
        await self.pool.prepare(storage_d, root)
        try:
            async with self.db.write() as conn:
                await self._admit_again(storage_d, None, conn)
                if await accounts.get_space_by_name(conn, user_id, name) is not None:
                    raise AlreadyExists(f"user space named {name!r} already exists")
                space = await accounts.create_space(conn, user_id, name, storage_d, None, root)
                sealed = self.pool.seal(space.user_space_id, cred_d)
                if sealed is not None:
                    await accounts.update_space(conn, space.user_space_id, credential=sealed)
        except DuplicateEntry as exc:  # a concurrent create of the same name
            raise AlreadyExists(f"user space named {name!r} already exists") from exc
        return await self.get(principal, space.user_space_id)

    async def _admit(self, storage: dict[str, Any], space_id: int | None) -> None:
        """The operator's rules, checked before a space is recorded or tested:
        a refusal is the user's bad argument, naming the rule."""
        try:
            kind = storage.get("type")
            if kind == "Local":
                await self.pool.check_disjoint(storage, space_id, admit=True)
            elif kind == "Memory" and not self.pool.rules.memory:
                raise SpaceRefused(
                    "storage.type Memory is for tests; this server does not allow it"
                )
            await check_remote(storage, self.pool.rules)
        except SpaceRefused as exc:
            raise BadArgument(exc.message) from None

    async def _admit_again(
        self, storage: dict[str, Any], space_id: int | None, conn: AsyncConnection
    ) -> None:
        """A Local directory checked once more in the transaction that records
        it, under a lock all such transactions take: two concurrent creates
        of overlapping directories could each pass ``_admit`` alone."""
        if storage.get("type") != "Local":
            return
        await spacestate.lock_local_admissions(conn)
        try:
            await self.pool.check_disjoint(storage, space_id, admit=True, conn=conn)
        except SpaceRefused as exc:
            raise BadArgument(exc.message) from None

    @staticmethod
    def _check(storage: object, credential: object) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if not isinstance(storage, dict):
            raise BadArgument("storage must be an object with a 'type'")
        if credential is not None and not isinstance(credential, dict):
            raise BadArgument("credential must be an object with a 'type'")
        validate_storage(storage, credential)
        if storage.get("type") == "Local":
            # Recorded resolved: a space whose path then resolves elsewhere
            # (a link put in place of part of it) is refused (check_disjoint).
            try:
                storage = {**storage, "path": str(resolve_local(storage["path"]))}
            except SpaceRefused as exc:
                raise BadArgument(exc.message) from None
        return storage, credential

    async def update(self, principal: Principal, space_id: int, changes: SpaceChanges) -> UserSpace:
        space = await self.get(principal, space_id)
        user_id = principal.user_id
        values: dict[str, Any] = {}
        if changes.name is not KEEP:
            values["name"] = entity_name(changes.name, "name")
        new_location = changes.storage is not KEEP or changes.credential is not KEEP
        if new_location:
            storage = space.storage if changes.storage is KEEP else changes.storage
            credential = (
                self.pool.credential(space) if changes.credential is KEEP else changes.credential
            )
            storage, credential = self._check(storage, credential)
            if changes.storage is not KEEP:
                await self._admit(storage, space_id)
                values["storage"] = storage
            values["credential"] = self.pool.seal(space_id, credential)
        if changes.root_path is not KEEP:
            values["root_path"] = _root_path(changes.root_path)
        moves_data = changes.storage is not KEEP or changes.root_path is not KEEP
        if moves_data:
            # Moved (allowed only while it holds no block): its new directory,
            # made only once the move is known to be allowed. Made before the
            # refusal, a space whose disk was unmounted got its directory back
            # on the file system beneath from a refused update (the same root
            # path again), and the next probe found it Normal.
            async with self.db.read() as conn:
                held = await accounts.holds_blocks(conn, space_id)
                if "storage" in values:
                    await _no_open_transfer(conn, space, "its storage cannot change")
            if held:
                raise _holds_blocks(space_id)
            await self.pool.prepare(
                values.get("storage", space.storage), values.get("root_path", space.root_path)
            )
        if changes.state is not KEEP:
            if changes.state not in (SpaceState.NORMAL, SpaceState.DRAINING):
                raise BadArgument.about(
                    "state", "must be 'Normal' or 'Draining' (health checks set 'Unavailable')"
                )
            values["state"] = SpaceState(str(changes.state))
        relocates = new_location or moves_data
        async with self.db.write() as conn:
            # The row first, in every update (then the admissions' lock):
            # one order, or a move and a credential change deadlock. A move
            # waits here for every intent placing blocks on the space (it
            # holds the location it checked), so the count sees its blocks.
            await spacestate.lock_space(conn, space_id, moving=moves_data)
            current = await accounts.get_space(conn, space_id)
            if current is None:
                raise SpaceNotFound(f"user space {space_id} not found")
            if relocates and _location(current) != _location(space):
                # What was checked and prepared above was built on the space
                # as read before another update: it would put that back.
                raise Conflict(
                    f"user space {space_id} was changed by another request meanwhile; "
                    "read it again and retry"
                )
            if moves_data and await accounts.holds_blocks(conn, space_id):
                raise _holds_blocks(space_id)
            if "storage" in values:
                await _no_open_transfer(conn, current, "its storage cannot change")
            if "storage" in values:
                await self._admit_again(values["storage"], space_id, conn)
            if "name" in values:
                other = await accounts.get_space_by_name(conn, user_id, values["name"])
                if other is not None and other.user_space_id != space_id:
                    raise AlreadyExists(f"user space named {values['name']!r} already exists")
            await accounts.update_space(conn, space_id, **values)
            if moves_data:
                # Blocks it owed a delete are at the old location, which is
                # no longer reached through this space: forgotten, not
                # "deleted" at the new one (found by review).
                await strays.forget(conn, space_id)
            if values.get("state") == SpaceState.DRAINING:
                await jobs.wake(conn, "drain", now())
            updated = await accounts.get_space(conn, space_id)
        if updated is not None:
            if relocates:
                await self.pool.moved(updated)
            else:
                self.pool.note(updated)
        return await self.get(principal, space_id)

    async def drain(self, principal: Principal, space_id: int) -> UserSpace:
        """Mark a space for removal: placement skips it and the drain job moves
        its blocks to the owner's other spaces; then it can be deleted."""
        return await self.update(principal, space_id, SpaceChanges(state=SpaceState.DRAINING))

    async def delete(self, principal: Principal, space_id: int) -> None:
        space = await self.get(principal, space_id)
        # Counted in a snapshot, outside the write lock: a refused delete of
        # a space of a million blocks counted them all under it, holding
        # every writer (a review of jobs with a large backlog). Under the
        # lock, whether one is left (blocks placed meanwhile) is enough.
        async with self.db.read() as conn:
            n = await accounts.count_blocks_in_space(conn, space_id)
        if n:
            raise _still_holds(space_id, n)
        await self._pay_debts(space_id)
        async with self.db.write() as conn:
            await spacestate.lock_space(conn, space_id)
            if await accounts.get_space(conn, space_id) is None:
                # A concurrent delete was first (PostgreSQL): this one
                # waited for it and would delete nothing, yet answer OK.
                raise SpaceNotFound(f"user space {space_id} not found")
            if await accounts.holds_blocks(conn, space_id):
                raise _still_holds(space_id, None)
            await _no_open_transfer(conn, space, "it cannot be deleted")
            await accounts.delete_space(conn, space_id)
        await self.pool.forget(space_id)

    async def _pay_debts(self, space_id: int) -> None:
        """Delete the blocks the space still owes a delete while it is ours
        to reach: its delete forgets what is left. A drain commits a block's
        move before it deletes the old copy, and a delete of the drained
        space in between left that copy in the user's storage for good
        (found by a review of the tests' races). Each block's debt was
        written with the commit that let the block go, so once the space is
        seen to hold no block, every debt it has is visible. A delete that
        fails or hangs is forgotten anyway: as GC, the first batch that
        fails ends the paying (one block first: a space whose deletes fail,
        slowly or not, is asked one; 1,000 of a throttled cloud's 4 s
        failures, 16 at a time, held the request over four minutes), and
        so does ``PAY_SECONDS``."""
        every = now() + timedelta(days=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PAY_SECONDS):
                await self.deletes.pay(space_id, every, PAID_BATCH, limit=PAID_AT_DELETE)

    async def test_existing(self, principal: Principal, space_id: int) -> float:
        space = await self.get(principal, space_id)
        try:
            try:
                backend = await self.pool.get(space)
            except SpaceError as exc:
                raise _connect_failed(exc) from exc
            latency = await probe(backend)
        except DomainError:
            # A space that fails its test leaves placement until a test
            # passes; its backend is opened afresh next time.
            await self._swap_state(space_id, SpaceState.NORMAL, SpaceState.UNAVAILABLE)
            await self.pool.reopen(space_id)
            raise
        async with self.db.write() as conn:
            await spacestate.record_latency(conn, space_id, latency)
        await self._swap_state(space_id, SpaceState.UNAVAILABLE, SpaceState.NORMAL)
        return latency

    async def _swap_state(self, space_id: int, expected: SpaceState, new: SpaceState) -> None:
        """Only from the state the test judged: a drain the owner asked for
        while the probe ran stays (as the health job does)."""
        async with self.db.write() as conn:
            await spacestate.swap_state(conn, space_id, (expected,), new)
            updated = await accounts.get_space(conn, space_id)
        if updated is not None:
            self.pool.note(updated)

    async def test_config(
        self, principal: Principal, storage: object, credential: object, root_path: object
    ) -> float:
        require_account(principal)
        storage_d, cred_d = self._check(storage, credential)
        root = _root_path(root_path)
        await self._admit(storage_d, None)
        space = await self.pool.open_new(storage_d, cred_d, root)
        try:
            return await probe(space)
        finally:
            await space.close()
