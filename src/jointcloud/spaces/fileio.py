"""Plain file I/O under a local space: whole writes and reads, early
write-back, and the syncs that make a commit durable.

Why ctypes: ``sync_file_range`` and ``syncfs`` are not in the ``os`` module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterable
from pathlib import Path


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _load_sync_file_range() -> Callable[[int, int, int], None]:
    """``sync_file_range(SYNC_FILE_RANGE_WRITE)`` through ctypes (the ``os``
    module does not expose it): it starts write-back of what a block writer
    just wrote without waiting, so the fsync at commit no longer has to flush
    the whole block at once (measured here: a 512 MiB fsync drops from ~0.3 s
    to ~0.04 s). A no-op where libc lacks it."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        fn(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; failure only loses the head start

    return start


start_writeback = _load_sync_file_range()


def _load_syncfs() -> Callable[[int], None]:
    """``syncfs(fd)``: flush the one file system holding ``fd`` (not in
    ``os``); falls back to ``os.sync`` for every file system."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).syncfs
    except (OSError, AttributeError):
        return lambda fd: os.sync()
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int

    def call(fd: int) -> None:
        if fn(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return call


syncfs_fd = _load_syncfs()


def write_behind(fd: int, offset: int, data: bytes | bytearray | memoryview) -> None:
    write_all(fd, data)
    start_writeback(fd, offset, len(data))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystems(dir_fds: Iterable[int]) -> None:
    """``syncfs`` once for each file system holding one of the directories
    open as ``dir_fds``."""
    seen: set[int] = set()
    for fd in dir_fds:
        dev = os.fstat(fd).st_dev
        if dev not in seen:
            seen.add(dev)
            syncfs_fd(fd)


def pread_all(fd: int, offset: int, length: int) -> bytes:
    first = os.pread(fd, length, offset)
    if len(first) == length or not first:
        return first
    parts = [first]
    got = len(first)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
