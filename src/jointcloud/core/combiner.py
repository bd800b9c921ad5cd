"""Uploads into one package committed together (flat combining).

Why: the commit of a small upload is a handful of statements — the
package's path lock, activating its layout, inserting the object — run in
its own savepoint of the group commit. Sixteen clients uploading into one
package made sixteen of each, one after the other, under that package's
lock. Here an upload whose package has a commit running waits for it (it
would have waited for the lock anyway), and everything that queued meanwhile
is then committed in one transaction with the bulk statements of a
multi-file upload: one lock, one activation, one insert for all of them. The
first upload into an idle package commits at once, as before.

Each upload still succeeds or fails on its own: a ``before_commit`` hook
that refuses drops only its upload, and if the combined statements fail,
each upload is committed again alone (nothing of the failed attempt was
written: it ran in a savepoint or a transaction that was rolled back). A
failure of the commit itself (the database, the sync to disk) reaches every
upload in it, as it does in a group commit.

Conditional writes (``If-Match``, ``If-None-Match``) are not combined: they
are judged against the object at their path in their own transaction.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from jointcloud.core.models import ObjectInfo, StagedLayout
from jointcloud.errors import PackageNotFound
from jointcloud.meta import catalog, layouts
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.redundancy.policy import Redundancy

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

# Uploads, and objects, taken into one transaction at most (a multi-file
# upload counts its files; one larger than this goes alone); the rest wait
# for the next.
MAX_COMBINED = 256
MAX_ITEMS = 2000

BeforeCommit = Callable[[], Awaitable[None]]


class _Upload(NamedTuple):
    staged: Sequence[StagedLayout]
    items: Sequence[catalog.NewContent]
    before_commit: BeforeCommit | None
    done: asyncio.Future[list[ObjectInfo]]


async def write_contents(
    conn: AsyncConnection,
    package_id: int,
    policy: Redundancy,
    staged: Sequence[StagedLayout],
    items: Sequence[catalog.NewContent],
) -> list[ObjectInfo]:
    """Activate ``staged`` and point the paths of ``items`` (distinct) at
    them, in the caller's transaction, which holds the package's path lock."""
    inline = await layouts.activate_many(conn, staged)
    if inline:
        items = [
            it._replace(parts=[(off, inline.get(lid, lid)) for off, lid in it.parts])
            for it in items
        ]
    return await catalog.commit_objects(conn, package_id, items, policy=policy, ts=now())


def _rounds(uploads: Sequence[_Upload]) -> list[list[_Upload]]:
    """``uploads`` in groups whose paths are distinct (what one bulk insert
    takes), in arrival order per path: a later upload of a path goes in a
    later group, so the last to arrive is the one left standing."""
    rounds: list[list[_Upload]] = []
    last: dict[str, int] = {}
    for up in uploads:
        index = max((last.get(it.path, -1) for it in up.items), default=-1) + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(up)
        for it in up.items:
            last[it.path] = index
    return rounds


class Combiner:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queued: dict[tuple[int, Redundancy], list[_Upload]] = {}
        self._draining: dict[tuple[int, Redundancy], asyncio.Task[None]] = {}
        self.transactions = 0  # commits run, for tests and benchmarks

    def waiting(self) -> int:
        """Uploads queued behind a running commit of their package."""
        return sum(len(q) for q in self._queued.values())

    def submit(
        self,
        package_id: int,
        policy: Redundancy,
        staged: Sequence[StagedLayout],
        items: Sequence[catalog.NewContent],
        before_commit: BeforeCommit | None = None,
    ) -> asyncio.Future[list[ObjectInfo]]:
        """Commit ``items`` (distinct paths) with their ``staged`` layouts;
        the future ends when they are visible and durable, or with the
        error that kept them out. It runs on whether or not anyone awaits
        it. ``before_commit`` runs in the committing transaction, and once
        more if the upload is then committed alone (it must be a check)."""
        done: asyncio.Future[list[ObjectInfo]] = asyncio.get_running_loop().create_future()
        key = (package_id, policy)
        self._queued.setdefault(key, []).append(_Upload(staged, items, before_commit, done))
        if key not in self._draining:
            self._start(key)
        return done

    def _start(self, key: tuple[int, Redundancy]) -> None:
        task = asyncio.ensure_future(self._drain(key))
        self._draining[key] = task
        task.add_done_callback(functools.partial(self._drained, key))

    async def _drain(self, key: tuple[int, Redundancy]) -> None:
        while queue := self._queued.pop(key, None):
            taken, items = 0, 0
            for up in queue:  # always the first, however large
                if taken and (taken == MAX_COMBINED or items + len(up.items) > MAX_ITEMS):
                    break
                taken, items = taken + 1, items + len(up.items)
            if taken < len(queue):
                self._queued[key] = queue[taken:] + self._queued.get(key, [])
                queue = queue[:taken]
            try:
                await self._commit(key[0], key[1], queue, alone_on_failure=len(queue) > 1)
            except BaseException:  # cancelled: whoever is not answered yet never will be
                for up in queue:
                    up.done.cancel()
                raise

    def _drained(self, key: tuple[int, Redundancy], task: asyncio.Task[None]) -> None:
        """A drain ended. Uploads queued since its last look (this runs a
        loop turn after it) get a drain of their own; if it was cancelled
        (the server stopping) or failed, before it even started perhaps,
        they are cancelled or failed instead of waiting forever, and their
        callers discard what they staged."""
        del self._draining[key]
        failure = None if task.cancelled() else task.exception()
        if not task.cancelled() and failure is None:
            if key in self._queued:
                self._start(key)
            return
        for up in self._queued.pop(key, []):
            if failure is None:
                up.done.cancel()
            elif not up.done.done():
                up.done.set_exception(failure)

    async def _commit(
        self,
        package_id: int,
        policy: Redundancy,
        uploads: Sequence[_Upload],
        *,
        alone_on_failure: bool,
    ) -> None:
        taken: list[_Upload] = []
        answers: list[tuple[_Upload, list[ObjectInfo]]] | None = None
        writing = False
        self.transactions += 1
        try:
            async with self.db.write() as conn:
                if not await catalog.lock_package_paths(conn, package_id):
                    raise PackageNotFound(f"package {package_id} not found")
                taken = await _checked(uploads)
                writing = True
                written: list[tuple[_Upload, list[ObjectInfo]]] = []
                for group in _rounds(taken):
                    infos = await write_contents(
                        conn,
                        package_id,
                        policy,
                        [s for up in group for s in up.staged],
                        [it for up in group for it in up.items],
                    )
                    for up in group:
                        written.append((up, infos[: len(up.items)]))
                        infos = infos[len(up.items) :]
                answers = written
        except Exception as exc:
            if writing and answers is None and alone_on_failure and len(taken) > 1:
                # The combined statements failed and were rolled back: each
                # upload on its own, so one that cannot commit does not fail
                # the others.
                for up in taken:
                    await self._commit(package_id, policy, [up], alone_on_failure=False)
                return
            for up in uploads:
                if not up.done.done():
                    up.done.set_exception(exc)
            return
        # (Cancelled, the server stopping: ``_drain`` cancels every upload.)
        for up, infos in answers:
            up.done.set_result(infos)


async def _checked(uploads: Sequence[_Upload]) -> list[_Upload]:
    """The uploads whose ``before_commit`` (if any) lets them commit; one
    that refuses, whatever it raises, ends with that and drops out alone."""
    taken = []
    for up in uploads:
        if up.before_commit is not None:
            try:
                await up.before_commit()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                current = asyncio.current_task()
                if not isinstance(exc, asyncio.CancelledError):
                    up.done.set_exception(exc)
                elif current is not None and current.cancelling():
                    raise  # the drain itself is cancelled
                else:
                    up.done.cancel()  # the hook's own cancellation
                continue
        taken.append(up)
    return taken
