"""Directories of a local space reached by descriptor, never by path.

Why: a path checked and then used leaves a window in which a user with a
shell in the space's directory can swap a directory for a symbolic link,
and the server (root) then deletes, stats or lists outside the space
(found by review, 2026-12-06, seventh session). Here every directory is
opened from the one above it with ``O_NOFOLLOW``: a component that is a
link when it is used fails instead of being followed. Errors are
``SpaceRefused`` (a link, named) or ``OSError`` for the caller to translate.
``ParentDir`` holds the directory a key's file is written in, from its
temporary file to the rename.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from jointcloud.errors import SpaceRefused, SpaceUnavailable

TMP_PREFIX = ".jcs-tmp-"  # a writer's file until its commit renames it
MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def refuse_link(root: Path, key: str | None, link: str) -> SpaceRefused:
    what = f"key {key!r}" if key is not None else "listing"
    return SpaceRefused(
        f"{what} passes through {link!r} in local space {str(root)!r} "
        "(a symbolic link); it is not followed"
    )


def is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_subdir(dir_fd: int, name: str) -> int:
    """``name`` in the directory ``dir_fd``, opened only if it is a directory
    and not a link (a link fails with ``ELOOP``; Linux answers ``ENOTDIR``
    for a link with ``O_DIRECTORY``, so that case is looked at again)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except NotADirectoryError:
        if is_link(dir_fd, name):
            raise OSError(errno.ELOOP, "a symbolic link", name) from None
        raise


def open_dir(root: Path, parts: Sequence[str], key: str | None) -> int:
    """A descriptor of ``root/parts...``, each component opened from the one
    above it without following links; ``SpaceRefused`` naming the first link."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for i, name in enumerate(parts):
            try:
                sub = open_subdir(fd, name)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise refuse_link(root, key, "/".join(parts[: i + 1])) from None
                raise
            os.close(fd)
            fd = sub
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


def open_parent(root: Path, key: str) -> tuple[int, str]:
    """The directory holding ``key``'s last component, and that name."""
    parts = key.split("/")
    return open_dir(root, parts[:-1], key), parts[-1]


def _enter(root: Path, fd: int, parts: Sequence[str], i: int, key: str | None) -> int:
    try:
        return open_subdir(fd, parts[i])
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise refuse_link(root, key, "/".join(parts[: i + 1])) from None
        raise


def make_dirs(root: Path, parts: Sequence[str], key: str | None) -> tuple[int, list[int]]:
    """``open_dir`` that creates the components missing on the way. Also
    returned: descriptors of the directories that gained an entry (the
    parent of each directory made here, or found made meanwhile by
    another writer), which the caller fsyncs before calling a new file
    durable, and closes."""
    fd = os.open(root, _DIR_FLAGS)
    changed: list[int] = []
    try:
        for i, name in enumerate(parts):
            made = False
            try:
                sub = _enter(root, fd, parts, i, key)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
                # Made here, or meanwhile by another writer, which may not
                # have fsynced its entry yet: this one's file hangs on it too.
                made = True
                sub = _enter(root, fd, parts, i, key)
            if made:
                changed.append(fd)
            else:
                os.close(fd)
            fd = sub
    except BaseException:
        for left in (fd, *changed):
            with contextlib.suppress(OSError):
                os.close(left)
        raise
    return fd, changed


class ParentDir:
    """The directory a key's file goes in, held by descriptor from the moment
    it is opened (each component from the one above, never through a link,
    created if missing: ``localdirs.make_dirs``) until the file is renamed
    into place or removed. No path is resolved between the check and the
    write: a directory swapped for a link meanwhile is either refused or,
    if the swap comes later, not seen at all (the rename happens in the
    directory opened)."""

    __slots__ = ("_closed", "_lock", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        # ``touch`` (from ``keep_alive``, another thread) never uses a
        # descriptor number after ``close`` gave it back.
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, root: Path, key: str, sync_made: bool) -> ParentDir:
        """``sync_made``: fsync each directory that gained a directory made
        here, now. Not at the commit: another writer may put a file in a
        directory made here and call it durable before this one commits,
        or this one may never commit (found by review: a put into
        directories an open writer had made returned with them on no disk;
        and each was held open until the commit, five descriptors for a
        writer three new directories deep). Without it (no durability
        asked, or a batch that ends with ``syncfs``, which covers them:
        directories made lie on the file system of the one they were made
        in, as the file's directory does) they are only closed."""
        try:
            fd, made_in = make_dirs(root, key.split("/")[:-1], key)
        except MISSING:
            if not root.is_dir():
                raise SpaceUnavailable(
                    f"local space root {str(root)!r} is not a directory"
                ) from None
            raise
        try:
            if sync_made:
                for d in made_in:
                    os.fsync(d)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        finally:
            for d in made_in:
                with contextlib.suppress(OSError):
                    os.close(d)
        return cls(fd)

    def new_tmp(self) -> tuple[int, str]:
        name = f"{TMP_PREFIX}{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        return os.open(name, flags, 0o644, dir_fd=self.fd), name

    def rename(self, tmp: str, final: str) -> None:
        # Onto a link, rename replaces the link itself: nothing is followed.
        os.replace(tmp, final, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def sync(self) -> None:
        os.fsync(self.fd)

    def unlink(self, name: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=self.fd)

    def touch(self, name: str) -> None:
        with self._lock:
            if self._closed:
                return
            at = time.time()  # not the kernel's coarser clock: never behind a caller's
            with contextlib.suppress(FileNotFoundError):
                os.utime(name, (at, at), dir_fd=self.fd, follow_symlinks=False)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            os.close(self.fd)
