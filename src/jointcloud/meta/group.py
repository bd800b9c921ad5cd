"""The writers of one SQLite group commit (``meta/db.py``,
docs/durability.md): one transaction, a savepoint each, committed and
synced together."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator

from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.errors import MetadataUnavailable
from jointcloud.meta.outage import sqlite_failure
from jointcloud.meta.sqlite import InlineConnection


class WriterGroup:
    """Writers sharing one transaction, committed and synced together."""

    def __init__(
        self,
        conn: AsyncConnection,
        driver: InlineConnection | None,
        release_writer: Callable[[], None],
    ) -> None:
        self.conn = conn
        # Gives back the writer lock (writerlock.py) this group took: from
        # any thread, as often as called.
        self.release_writer = release_writer
        self.driver = driver  # its connection on the loop's thread (sqlite.py)
        self.raw = None if driver is None else driver.sqlite  # for the writers' savepoints
        self.members = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A member cancelled while it waited leaves the outcome unread: read
        # here, so that a failed group does not log "never retrieved".
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        # Why SQLite rolled back the group's whole transaction itself, if it
        # did: every member's work is gone, not only the failing one's.
        self.lost: BaseException | None = None

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """One writer's savepoint, on the sqlite3 connection directly (the
        statements run on the loop's thread either way, sqlite.py): through
        SQLAlchemy's nested transactions these two statements cost as much
        as the rest of a small upload's.

        A statement that fails with an I/O error or a full disk (say, while
        SQLite spills its cache into the log) can make SQLite roll back the
        whole transaction, the other members' work with it. The group is
        then ``lost``: it takes no more writers (a SAVEPOINT outside a
        transaction would begin one of its own, committed by its RELEASE)
        and ``Database._end_group`` fails every member instead of committing."""
        raw = self.raw
        assert raw is not None
        if self.lost is None and not raw.in_transaction:
            self.lost = RuntimeError("the group's transaction ended before this writer")
        if self.lost is not None:
            raise self.unavailable()
        raw.execute("SAVEPOINT jcs_writer")
        try:
            yield
            raw.execute("RELEASE jcs_writer")
        except BaseException as exc:
            if raw.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    raw.execute("ROLLBACK TO jcs_writer")
                    raw.execute("RELEASE jcs_writer")
            if not raw.in_transaction:
                self.lost = exc
            raise

    def unavailable(self) -> MetadataUnavailable:
        """What the members of a lost group are told."""
        assert self.lost is not None
        found = sqlite_failure(self.lost)
        why = found.message if found is not None else f"the metadata database failed ({self.lost})"
        return MetadataUnavailable(f"{why}; the transaction was rolled back, nothing was saved")
