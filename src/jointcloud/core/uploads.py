"""The one upload path: every write of bytes, one object (``put``) or a
batch (JCS ``upload``), stages its files with ``Stager`` (additional
checksums computed as the bytes flow, in the data path's worker threads),
then commits them in one transaction with ``UploadPath.commit``, which
locks the package's paths and evaluates the write's preconditions against
the rows it is about to replace: two "create only if absent" writes of one
path cannot both succeed, and the one that fails leaves no block (its
staged layouts are discarded)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Hashable,
    Iterator,
    Mapping,
    Sequence,
)

from jointcloud.core.background import finish
from jointcloud.core.blockstore import BlockStore
from jointcloud.core.combiner import Combiner, write_contents
from jointcloud.core.commands import (
    NO_CONDITIONS,
    ChecksumAlgorithm,
    Conditions,
    check_write_conditions,
)
from jointcloud.core.models import ObjectInfo, Package, StagedLayout, UserSpace
from jointcloud.errors import BadDigest, PackageNotFound, ServerBusy
from jointcloud.meta import catalog
from jointcloud.meta.db import Database
from jointcloud.redundancy.policy import Redundancy


def verify_digests(
    staged: StagedLayout, expect: Mapping[ChecksumAlgorithm, str], content_md5: str | None
) -> None:
    """The digests a client supplied against what the bytes gave."""
    if content_md5 is not None and content_md5 != staged.md5:
        raise BadDigest(
            f"content MD5 {content_md5} does not match the {staged.size} bytes received"
        )
    for algorithm, value in expect.items():
        if staged.checksums.get(algorithm) != value:
            raise BadDigest(
                f"checksum {algorithm} {value} does not match the {staged.size} bytes received"
            )


class UploadSlots:
    """Uploads whose bytes a client is sending, counted per holder (a user;
    on the gateway facade an access key, or the whole process) in this
    process, and at most ``per_user`` of them at once: each holds memory
    (the segment it receives, up to a batch of small files), a temporary
    file per block and its connection for as long as its client takes, so
    one user's slow or stalled uploads would otherwise be bounded only by
    the process's connection limit (thousands; a review held 3.8 MiB per
    stalled PUT). Over the bound an upload is refused before any byte of it
    is read (``ServerBusy``: S3's ``503 SlowDown``, which SDKs retry with
    back-off; MinIO refuses over its ``requests_max`` the same way). Other
    users are not affected. Work of the server's own (transfer tasks,
    recoding) does not count: it is bounded where it runs. ``whose`` and
    ``setting`` word the refusal."""

    def __init__(
        self,
        per_user: int | None = None,
        *,
        whose: str = "this user",
        setting: str = "JCS_MAX_UPLOADS_PER_USER",
    ) -> None:
        self.per_user = per_user
        self.whose = whose
        self.setting = setting
        self._held: dict[Hashable, int] = {}

    def held(self, holder: Hashable) -> int:
        return self._held.get(holder, 0)

    @contextlib.contextmanager
    def take(self, holder: Hashable) -> Iterator[None]:
        """One slot of ``holder`` for the block, or ``ServerBusy`` at once."""
        now = self._held.get(holder, 0)
        if self.per_user is not None and now >= self.per_user:
            raise ServerBusy(
                f"{self.whose} has {now} uploads in progress, the most allowed at once "
                f"({self.setting}); try again when one has ended"
            )
        self._held[holder] = now + 1
        try:
            yield
        finally:
            left = self._held[holder] - 1
            if left:
                self._held[holder] = left
            else:
                del self._held[holder]


# Batch uploads: files up to SMALL_FILE bytes are read whole and stored
# BATCH_FILES at a time (one intent transaction, one encoding hop, one
# durable write per space), several batches at once while the request body
# is still arriving; at most BUFFERED_BYTES of them are held in memory.
SMALL_FILE = 1 << 20
BATCH_FILES = 256
BATCH_BYTES = 8 << 20
BATCHES_AT_ONCE = 2
BUFFERED_BYTES = 64 << 20


async def _read_upto(stream: AsyncIterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """Chunks of ``stream`` until more than ``limit`` bytes or its end; and
    whether it ended."""
    chunks: list[bytes] = []
    have = 0
    async for chunk in stream:
        chunks.append(chunk)
        have += len(chunk)
        if have > limit:
            return chunks, False
    return chunks, True


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


class Stager:
    """Stages the files of one upload in order of arrival; ``finish`` gives
    their staged layouts in that order, ``abandon`` removes everything."""

    def __init__(
        self,
        store: BlockStore,
        user_id: int,
        policy: Redundancy,
        affinity: int | None,
        spaces: Sequence[UserSpace] | None,
        checksums: Collection[ChecksumAlgorithm] = (),
    ) -> None:
        self.store = store
        self.user_id = user_id
        self.policy = policy
        self.affinity = affinity
        self.spaces = spaces
        self.checksums = checksums
        self.slots: list[StagedLayout | None] = []
        self.batch: list[tuple[int, bytes]] = []
        self.batch_bytes = 0
        self.buffered = 0  # small-file bytes read and not yet stored
        self.running: set[asyncio.Task[None]] = set()

    async def add(self, stream: AsyncIterator[bytes]) -> None:
        index = len(self.slots)
        self.slots.append(None)
        head, ended = await _read_upto(stream, SMALL_FILE)
        if not ended:  # a large file streams on its own, right now
            await self._submit()
            self.slots[index] = await self.store.stage(
                self.user_id,
                _chain(head, stream),
                self.policy,
                self.affinity,
                self.spaces,
                checksums=self.checksums,
            )
            return
        data = head[0] if len(head) == 1 else b"".join(head)
        if self.buffered + len(data) > BUFFERED_BYTES:
            await self._submit()
            while self.running and self.buffered + len(data) > BUFFERED_BYTES:
                await self._wait_one()
        self.batch.append((index, data))
        self.batch_bytes += len(data)
        self.buffered += len(data)
        if len(self.batch) >= BATCH_FILES or self.batch_bytes >= BATCH_BYTES:
            await self._submit()

    async def _submit(self) -> None:
        if not self.batch:
            return
        while len(self.running) >= BATCHES_AT_ONCE:
            await self._wait_one()
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        self.running.add(asyncio.ensure_future(self._store(batch)))

    async def _store(self, batch: list[tuple[int, bytes]]) -> None:
        try:
            staged = await self.store.stage_many(
                self.user_id,
                [d for _, d in batch],
                self.policy,
                self.affinity,
                self.spaces,
                checksums=self.checksums,
            )
            for (index, _), st in zip(batch, staged, strict=True):
                self.slots[index] = st
        finally:
            self.buffered -= sum(len(d) for _, d in batch)

    async def _wait_one(self) -> None:
        done, _ = await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
        self.running -= done
        errors = [t.exception() for t in done if not t.cancelled()]  # each one retrieved
        for exc in errors:
            if exc is not None:
                raise exc  # a failed batch fails the upload now

    async def finish(self) -> list[StagedLayout]:
        await self._submit()
        while self.running:
            await self._wait_one()
        staged = [s for s in self.slots if s is not None]
        assert len(staged) == len(self.slots)
        return staged

    async def abandon(self) -> None:
        """Let the batches still running end (they are bounded work; a batch
        cancelled inside its database transaction could leave the connection
        mid-statement), then discard everything staged."""
        if self.running:
            await asyncio.wait(self.running)
        for task in self.running:
            if not task.cancelled():
                task.exception()  # retrieved: the upload re-raises its own error
        await self.store.discard([s for s in self.slots if s is not None])


class UploadPath:
    """Staging and committing, shared by every upload (``ObjectService``)."""

    def __init__(self, db: Database, store: BlockStore) -> None:
        self.db = db
        self.store = store
        self.combiner = Combiner(db)

    async def target(
        self, user_id: int, pkg: Package, path: str | None = None
    ) -> tuple[Redundancy, ObjectInfo | None]:
        """The policy uploads to ``pkg`` get (its own, else its bucket's) and
        the object now at ``path`` (if one is given). No query when the
        package record already knows its policy and no path is asked for;
        the user's spaces are loaded by the store only if something goes to
        them (not for inline objects). The commit checks again that the
        package still exists."""
        if pkg.upload_policy is not None and path is None:
            return pkg.upload_policy, None
        current = None
        async with self.db.read() as conn:
            found = await catalog.package_policy(conn, user_id, pkg.package_id)
            if path is not None:
                current = await catalog.get_object_by_path(conn, pkg.package_id, path)
        if found is None:
            raise PackageNotFound(f"package {pkg.package_id} not found")
        return found[1], current

    async def stage_files(
        self,
        user_id: int,
        policy: Redundancy,
        affinity: int | None,
        spaces: Sequence[UserSpace] | None,
        files: AsyncIterator[tuple[str, AsyncIterator[bytes]]],
        checksums: Collection[ChecksumAlgorithm] = (),
    ) -> tuple[list[str], list[StagedLayout]]:
        """Store every file's bytes (not yet visible): small ones in batches
        while the next arrive, larger ones streamed (see ``Stager``). On any
        failure — of a file, of the source, a cancellation — everything staged
        is removed before the error goes on."""
        stager = Stager(self.store, user_id, policy, affinity, spaces, checksums)
        paths: list[str] = []
        try:
            async for path, stream in files:
                paths.append(path)
                await stager.add(stream)
            staged = await stager.finish()
        except BaseException:
            await finish(stager.abandon())
            raise
        return paths, staged

    async def commit(
        self,
        package_id: int,
        policy: Redundancy,
        staged: Sequence[StagedLayout],
        items: Sequence[catalog.NewContent],
        *,
        conditions: Conditions = NO_CONDITIONS,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> list[ObjectInfo]:
        """Make staged files visible in one transaction, under the package's
        path lock; ``conditions`` are evaluated there against each path's
        current object. If the transaction does not commit (a precondition,
        ``before_commit`` raising, a cancellation...), the staged blocks go."""

        async def commit() -> list[ObjectInfo]:
            async with self.db.write() as conn:
                if not await catalog.lock_package_paths(conn, package_id):
                    raise PackageNotFound(f"package {package_id} not found")
                if before_commit is not None:
                    await before_commit()
                for it in items:
                    current = await catalog.get_object_by_path(conn, package_id, it.path)
                    check_write_conditions(current, conditions)
                return await write_contents(conn, package_id, policy, staged, items)

        # Without conditions, uploads into one package commit together.
        committing = (
            self.combiner.submit(package_id, policy, staged, items, before_commit)
            if conditions.empty
            else asyncio.ensure_future(commit())
        )
        try:
            # Shielded: once the transaction runs, its outcome decides the
            # clean-up (a commit that went through keeps its blocks).
            return await asyncio.shield(committing)
        except BaseException:
            await finish(self.store.settle(committing, staged))
            raise
