"""A space on a local (or mounted) directory, with plain file I/O.

Why by hand: plain ``os`` calls reach raw disk speed where generic layers do not
(DESIGN §7). A writer streams into ``.jcs-tmp-*`` beside the target and
``commit`` is write-out + fsync + rename + fsync(dir), so a key is either absent,
the old bytes, or the complete new bytes. ``put_many`` does the same for a
batch of small keys with one durability point for all of them. Every blocking call runs in a worker
thread, batched so one hop moves ~1-8 MiB, and ``OSError`` is translated to
domain errors inside that thread.

Confinement: the root is resolved once. Writes, deletes, stats, listings and
sweeps reach a key's directory by descriptor, each component opened from the
one above with ``O_NOFOLLOW`` (spaces/localdirs.py), so a link is refused
even if it is swapped in after any check; reads open the key's file with
``O_NOFOLLOW`` and check where the open file lies. Users may not reach the
server's files through a link planted in their directory (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import os
import re
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from jointcloud.errors import (
    BadArgument,
    BlockNotFound,
    SpaceError,
    SpaceRefused,
    SpaceUnavailable,
)
from jointcloud.spaces.base import Capabilities, Entry, check_key
from jointcloud.spaces.fileio import (
    pread_all,
    start_writeback,
    sync_filesystems,
    syncfs_fd,
    write_all,
)
from jointcloud.spaces.hotreads import HotRoot, RecentKeys, read_nowait
from jointcloud.spaces.localdirs import (
    MISSING,
    TMP_PREFIX,
    ParentDir,
    is_link,
    open_dir,
    open_parent,
    open_subdir,
    refuse_link,
)
from jointcloud.spaces.localwriter import LocalWriter

# Exactly what ``_open_tmp`` creates: sweeps remove nothing else.
_TMP_NAME = re.compile(r"\.jcs-tmp-[0-9a-f]{16}")


def _refuse_reserved(key: str) -> None:
    """A name of our temporary files' form is hidden from listings and swept
    after the GC delay, so a user's file of that name (written by an export
    or a sync) would vanish: it is refused. Any other name is the user's."""
    if TMP_PREFIX in key and any(_TMP_NAME.fullmatch(part) for part in key.split("/")):
        raise BadArgument(
            f"storage key {key!r}: a name {TMP_PREFIX} and 16 hex digits "
            "is reserved for JointCloud's temporary files"
        )


_LIST_BATCH = 1000
SYNCFS_AT = 8  # ``put_many`` of this many keys ends with syncfs instead of fsyncs
# Every this many keys touched, a block space checks that its root's path
# still names the directory it holds for reads on the loop.
RECHECK_ROOT_EVERY = 256

T = TypeVar("T")


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0:
        raise BadArgument(f"read offset must be >= 0, got {offset}")
    if length is not None and length < 0:
        raise BadArgument(f"read length must be >= 0, got {length}")


def _drop_opened(opening: asyncio.Future[tuple[int, ParentDir, str]]) -> None:
    """Close and remove a temporary file whose ``open_writer`` was cancelled."""
    if opening.cancelled() or opening.exception() is not None:
        return
    fd, parent, tmp = opening.result()
    with contextlib.suppress(OSError):
        os.close(fd)
    parent.unlink(tmp)
    parent.close()


# Threads of one space's own pool (``LocalSpace.in_thread``).
LOCAL_THREADS = 8


class LocalSpace:
    """Keys are files under ``root``; ``/`` in a key is a sub-directory."""

    capabilities = Capabilities(range_read=True, listing=True)

    def __init__(self, root: str | Path, *, durable: bool = True) -> None:
        """``durable=False`` (user file trees written by transfer tasks) skips
        the fsync of each commit: still atomic (temp + rename), made durable
        for the whole tree at once by ``flush`` (one ``syncfs``) before the
        task reports success. Blocks always use ``durable=True``."""
        self.root = Path(os.path.realpath(root))
        self.durable = durable
        # ``read_cached`` (spaces/hotreads.py): the root held open where its
        # file system allows reads on the loop (a worker thread looks the
        # first time a key is touched), and the keys touched lately.
        self._hot: HotRoot | None = None
        self._hot_known = False
        self._hot_lock = threading.Lock()
        self._touched = 0
        self._recent = RecentKeys()
        # The writers still open, by key (``keep_alive``).
        self._writing: dict[str, LocalWriter] = {}
        # A commit's worker thread and the discard of a commit cancelled
        # meanwhile both take their writer out: one saw it, then found it
        # gone (KeyError instead of the cancellation; found by review).
        self._writing_lock = threading.Lock()
        # Its own threads for its blocking calls: a mount that hangs (NFS,
        # FUSE) holds only these, not the CPU pool every read and upload
        # decrypts and hashes in (found by review: four hung reads stopped
        # the whole server). Made on first use; idle ones cost nothing.
        self._threads: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"LocalSpace(root={str(self.root)!r})"

    def _done_writing(self, key: str, writer: LocalWriter) -> None:
        with self._writing_lock:
            if self._writing.get(key) is writer:
                del self._writing[key]

    def _touch(self, key: str) -> None:
        """``key`` was just written or read in a worker thread: its pages
        are in memory, so ``read_cached`` may try it. Only for spaces that
        hold blocks (``durable``): user file trees are never read that way."""
        if not self.durable:
            return
        if not self._hot_known:
            with self._hot_lock:
                if not self._hot_known:
                    self._hot = HotRoot.open(self.root)
                    self._hot_known = True
        hot = self._hot
        if hot is None:
            return
        self._touched += 1
        if self._touched % RECHECK_ROOT_EVERY == 0 and not hot.same_as(self.root):
            # Something was mounted over the root, or it was replaced: the
            # held directory is no longer what reads by path see.
            self._hot = None
            return
        self._recent.add(key)

    def _path(self, key: str) -> Path:
        """The file of ``key``, if every existing component of it resolves
        inside the root (a symlink out of the space is refused at every use)."""
        path = self.root / check_key(key)
        try:
            real = os.path.realpath(path)
        except OSError as exc:
            # A component changing under realpath (lstat saw a link, readlink
            # then EINVAL): a space error like any other, not a bare OSError
            # (one ended a deleteSource run's TaskGroup; found by review).
            raise self._translate(exc, key, False) from exc
        self._refuse_outside(key, path, real)
        return path

    def _refuse_outside(self, key: str, path: Path, real: str) -> None:
        """``SpaceRefused`` if ``real`` (what ``path`` resolves to) leaves the root."""
        if real != str(path) and not real.startswith(self._root_prefix):
            raise SpaceRefused(
                f"key {key!r} resolves outside local space {str(self.root)!r} "
                "(a symbolic link); it is not followed"
            )

    @property
    def _root_prefix(self) -> str:
        return str(self.root).rstrip("/") + "/"

    def _translate(self, exc: OSError, key: str | None, writing: bool) -> SpaceError:
        what = f"key {key!r}" if key is not None else "listing"
        if isinstance(exc, MISSING) and not writing and self.root.is_dir():
            return BlockNotFound(f"{what} not found in local space {str(self.root)!r}")
        reason = exc.strerror or type(exc).__name__
        return SpaceUnavailable(f"local space {str(self.root)!r} failed on {what}: {reason}")

    async def _run(
        self, key: str | None, fn: Callable[..., T], *args: object, writing: bool = False
    ) -> T:
        """Run blocking ``fn`` in a worker thread, translating ``OSError`` there."""

        def call() -> T:
            try:
                return fn(*args)
            except OSError as exc:
                raise self._translate(exc, key, writing) from exc

        return await self.in_thread(call)

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one of this space's own threads (``BlockingSpace``)."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(LOCAL_THREADS, thread_name_prefix="jcs-local")
        call = functools.partial(contextvars.copy_context().run, fn)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    # -- writing -----------------------------------------------------------

    def _open_tmp(self, key: str) -> tuple[int, ParentDir, str]:
        _refuse_reserved(key)
        parent = ParentDir.open(self.root, key, self.durable)
        try:
            fd, tmp = parent.new_tmp()
        except BaseException:
            parent.close()
            raise
        return fd, parent, tmp

    async def open_writer(self, key: str) -> LocalWriter:
        check_key(key)
        opening = asyncio.ensure_future(self._run(key, self._open_tmp, key, writing=True))
        try:
            fd, parent, tmp = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The worker thread cannot be stopped and may still create the
            # temporary file; nobody will own it, so remove it once it exists.
            opening.add_done_callback(_drop_opened)
            raise
        return LocalWriter(self, key, fd, parent, tmp)

    def _put_sync(self, key: str, data: bytes) -> None:
        fd, parent, tmp = self._open_tmp(key)
        writer = LocalWriter(self, key, fd, parent, tmp)
        try:
            writer._commit_sync(fd, data)
        except BaseException:
            writer._discard(None)
            raise

    async def put(self, key: str, data: bytes) -> None:
        check_key(key)
        await self._run(key, self._put_sync, key, data, writing=True)

    def _put_many_sync(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Every item to a temporary file, renamed into place, then one
        durability point for the batch. Below ``SYNCFS_AT`` items that is an
        fsync of each file (before its rename) and of each directory touched;
        from there on one ``syncfs`` per file system touched, because every
        fsync here costs a device cache flush even when the journal already
        holds everything (64 small files: ~120 flushes against one).
        On failure the temporary files are removed; keys already renamed
        into place are left to the caller."""
        each = self.durable and len(items) < SYNCFS_AT
        pending: list[tuple[int | None, ParentDir, str, str]] = []  # (fd, parent, tmp, final)
        parents: dict[str, ParentDir] = {}  # each directory is opened (and made) once
        try:
            for key, data in items:
                _refuse_reserved(key)
                head, _, name = key.rpartition("/")
                parent = parents.get(head)
                if parent is None:
                    parent = parents[head] = ParentDir.open(self.root, key, each)
                fd, tmp = parent.new_tmp()
                pending.append((fd, parent, tmp, name))
                write_all(fd, data)
                if each:
                    start_writeback(fd, 0, len(data))
            for i, (open_fd, parent, tmp, final) in enumerate(pending):
                assert open_fd is not None
                pending[i] = (None, parent, tmp, final)
                try:
                    if each:
                        os.fsync(open_fd)
                finally:
                    os.close(open_fd)
            while pending:
                _, parent, tmp, final = pending[-1]
                parent.rename(tmp, final)
                pending.pop()
            if each:
                for parent in parents.values():
                    parent.sync()
            elif self.durable:
                sync_filesystems(p.fd for p in parents.values())
            for key, _ in items:
                self._touch(key)
        except BaseException:
            for left_fd, parent, tmp, _ in pending:
                if left_fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(left_fd)
                parent.unlink(tmp)
            raise
        finally:
            for parent in parents.values():
                parent.close()

    async def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """``put`` of many small keys in one worker-thread call with one
        durability point (a batch upload's blocks): when this returns every
        key holds its bytes durably. Not atomic as a whole: on failure some
        keys may hold their new bytes (the caller deletes them)."""
        for key, _ in items:
            check_key(key)
        if items:
            await self._run(items[0][0], self._put_many_sync, items, writing=True)

    def put_blocking(self, key: str, data: bytes) -> None:
        check_key(key)
        try:
            self._put_sync(key, data)
        except OSError as exc:
            raise self._translate(exc, key, True) from exc

    def list_blocking(self, prefix: str = "") -> list[Entry]:
        rel = prefix.rstrip("/")
        if rel:
            check_key(rel)
        try:
            if not self.root.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "space root is not a directory")
            return list(self._walk(rel))
        except OSError as exc:
            raise self._translate(exc, None, False) from exc

    # -- reading -----------------------------------------------------------

    def _open_inside(self, key: str) -> int:
        """A descriptor for reading ``key``'s file, if the file opened lies
        inside the root (checked on the open file: no window between check
        and open). Two system calls where ``_path`` makes one per component:
        each one lets go of the GIL and waits to take it back, which under
        load took longer than the read itself. ``O_NONBLOCK``: a FIFO put
        where a file belongs opens at once, and its positioned read then
        fails (``ESPIPE``), instead of holding the thread (or the loop, for
        ``read_cached``) until some writer comes; regular files ignore it."""
        path = self.root / check_key(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._path(key)  # a link out of the space: refused as such
            raise
        try:
            try:
                real = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                real = os.path.realpath(path)  # no /proc: resolve by name
            self._refuse_outside(key, path, real)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read_sync(self, key: str, offset: int, length: int | None) -> bytes:
        fd = self._open_inside(key)
        try:
            if length is None:
                length = max(0, os.fstat(fd).st_size - offset)
            data = pread_all(fd, offset, length) if length else b""
        finally:
            os.close(fd)
        self._touch(key)
        return data

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        check_key(key)
        _check_range(offset, length)
        return await self._run(key, self._read_sync, key, offset, length)

    def read_blocking(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        check_key(key)
        _check_range(offset, length)
        try:
            return self._read_sync(key, offset, length)
        except OSError as exc:
            raise self._translate(exc, key, False) from exc

    def read_cached(self, key: str, offset: int, length: int) -> bytearray | None:
        """``length`` bytes at ``offset`` if they are in the page cache now;
        None otherwise, for a key not touched lately, where the root's file
        system is not a local disk's, for a file reached through a link or
        another mount (spaces/hotreads.py), and for anything ``read`` would
        refuse or fail on (the caller then reads as usual and meets the
        error there). Neither the open nor the read waits for a disk."""
        hot = self._hot
        if hot is None or key not in self._recent:
            return None
        fd = hot.open_file(key)
        if fd is None:
            return None
        try:
            data = read_nowait(fd, offset, length)
        finally:
            os.close(fd)
        if data is not None:
            self._recent.add(key)  # still in use: keep it among the recent
        return data

    async def read_stream(
        self, key: str, offset: int = 0, length: int | None = None, chunk: int = 4 << 20
    ) -> AsyncIterator[bytes]:
        check_key(key)
        _check_range(offset, length)

        def open_sync() -> tuple[int, int]:
            fd = self._open_inside(key)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):  # a FIFO would read as empty
                    raise IsADirectoryError(errno.EISDIR, "not a regular file")
            except BaseException:
                os.close(fd)
                raise
            return fd, st.st_size

        fd, size = await self._run(key, open_sync)
        try:
            end = size if length is None else min(size, offset + length)
            pos = offset
            while pos < end:
                data = await self._run(key, pread_all, fd, pos, min(chunk, end - pos))
                if not data:
                    break
                pos += len(data)
                yield data
        finally:
            os.close(fd)

    async def stat(self, key: str) -> Entry:
        check_key(key)

        def stat_sync() -> Entry:
            # By descriptor: a directory swapped for a link is not followed.
            fd, name = open_parent(self.root, key)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            return Entry(key=key, size=st.st_size, mtime=st.st_mtime)

        return await self._run(key, stat_sync)

    async def delete(self, key: str) -> None:
        check_key(key)
        self._recent.discard(key)

        def delete_sync() -> None:
            # The unlink happens in the directory opened here, each component
            # without following links (spaces/localdirs.py): a checked path
            # could be swapped for a link before the unlink.
            try:
                fd, name = open_parent(self.root, key)
            except MISSING:
                if not self.root.is_dir():
                    raise
                return
            try:
                if is_link(fd, name):
                    raise refuse_link(self.root, key, key)
                os.unlink(name, dir_fd=fd)
                self._recent.discard(key)  # a read may have touched it meanwhile
            except MISSING:
                pass
            except PermissionError:
                # unlink(dir) is EPERM on some systems
                if not stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise
            finally:
                os.close(fd)

        await self._run(key, delete_sync)

    # -- listing -----------------------------------------------------------

    @staticmethod
    def _entries(fd: int) -> list[os.DirEntry[str]]:
        with os.scandir(fd) as it:
            return sorted(it, key=lambda e: e.name)

    def _walk(self, rel: str) -> Iterator[Entry]:
        """Depth first in name order, without recursion: every entry passing
        up through one generator per directory level cost as much as the
        ``stat`` itself on deep trees. By directory descriptor, each opened
        from its parent with ``O_NOFOLLOW`` (spaces/localdirs.py): a
        directory swapped for a link after it was listed is skipped, never
        entered (found by review, 2026-12-06)."""
        try:
            top = open_dir(self.root, rel.split("/") if rel else [], rel or None)
        except MISSING:
            return  # no such directory (or a file): nothing under it
        stack = [(rel, top, iter(self._entries(top)))]
        try:
            while stack:
                prefix, fd, items = stack[-1]
                for item in items:
                    name = item.name
                    if _TMP_NAME.fullmatch(name):
                        continue
                    key = f"{prefix}/{name}" if prefix else name
                    if item.is_dir(follow_symlinks=False):
                        try:
                            sub = open_subdir(fd, name)
                        except OSError:
                            continue  # a link now, or removed meanwhile
                        stack.append((key, sub, iter(self._entries(sub))))
                        break
                    if item.is_file(follow_symlinks=False):  # never a link out of the space
                        try:
                            st = item.stat(follow_symlinks=False)  # relative to ``fd``
                        except FileNotFoundError:
                            continue  # removed while we were listing
                        yield Entry(key, st.st_size, st.st_mtime)
                else:
                    stack.pop()
                    os.close(fd)
        finally:
            for _, fd, _ in stack:
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def list(self, prefix: str = "") -> AsyncIterator[Entry]:
        rel = prefix.rstrip("/")
        if rel:
            check_key(rel)

        def start() -> Iterator[Entry]:
            if not self.root.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "space root is not a directory")
            return self._walk(rel)

        def batch(it: Iterator[Entry]) -> list[Entry]:
            out: list[Entry] = []
            for entry in it:
                out.append(entry)
                if len(out) >= _LIST_BATCH:
                    break
            return out

        it = await self._run(None, start)
        while True:
            entries = await self._run(None, batch, it)
            for entry in entries:
                yield entry
            if len(entries) < _LIST_BATCH:
                return

    def _sweep_sync(self, older_than: float, prefix: str, skip: tuple[str, ...]) -> int:
        removed = 0
        skipped = {os.path.normpath(s) for s in skip}
        # fwalk from a descriptor of the top (each component opened without
        # following links): a directory swapped for a link is not entered,
        # and each unlink happens in the directory looked at.
        try:
            top = open_dir(self.root, prefix.split("/") if prefix else [], prefix or None)
        except MISSING:
            return 0
        try:
            for dirpath, dirs, files, dir_fd in os.fwalk(".", dir_fd=top):
                here = os.path.normpath(os.path.join(prefix, dirpath))
                dirs[:] = [
                    d for d in dirs if os.path.normpath(os.path.join(here, d)) not in skipped
                ]
                for name in files:
                    if not _TMP_NAME.fullmatch(name):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                        if stat.S_ISREG(st.st_mode) and st.st_mtime < older_than:
                            os.unlink(name, dir_fd=dir_fd)
                            removed += 1
        finally:
            os.close(top)
        return removed

    async def keep_alive(self, key: str) -> None:
        # The sweep judges a temporary file by its time: set it to now.
        writer = self._writing.get(key)
        if writer is not None:
            await self.in_thread(writer.touch)

    async def sweep_incomplete(
        self, older_than: float, prefix: str = "", skip: tuple[str, ...] = ()
    ) -> int:
        """Temporary files of writers that never committed nor aborted (the
        process died) stay hidden from listings; they go here, after the delay."""
        if prefix:
            check_key(prefix.rstrip("/"))
        if not self.root.is_dir():
            return 0
        return await self.in_thread(
            functools.partial(self._sweep_sync, older_than, prefix.rstrip("/"), skip)
        )

    async def flush(self) -> None:
        if self.durable:
            return

        def flush_sync() -> None:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                syncfs_fd(fd)
            finally:
                os.close(fd)

        await self._run(None, flush_sync, writing=True)

    async def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False)  # a hung call keeps its thread
        with self._hot_lock:
            self._hot_known = True  # a read finishing now opens nothing more
            hot, self._hot = self._hot, None
        if hot is not None:
            hot.close()
