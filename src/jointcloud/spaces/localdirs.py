"""Directories of a local space reached by descriptor, never by path.

Why: a path checked and then used leaves a window in which a user with a
shell in the space's directory can swap a directory for a symbolic link,
and the server (root) then deletes, stats or lists outside the space
(found by review, 2026-12-06, seventh session). Here every directory is
opened from the one above it with ``O_NOFOLLOW``: a component that is a
link when it is used fails instead of being followed. Errors are
``SpaceRefused`` (a link, named) or ``OSError`` for the caller to translate.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from jointcloud.errors import SpaceRefused

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
