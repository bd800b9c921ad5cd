"""What a local space needs to serve a read on the event loop, safely.

A read on the loop spares two thread hand-offs (docs/decisions.md, "Hot
reads on the loop"), but the loop must never wait for a disk or a network.
So a local space tries it only when all of this holds:

- **its root is on a local disk file system** (``HotRoot.open``: ``fstatfs``
  of the root says ext2/3/4, XFS, Btrfs or F2FS). NFS, FUSE, overlay and
  tmpfs are left out: there an open can be a network round trip, or a dead
  daemon's hang;
- **the file is reached without leaving that file system or following any
  link** (``openat2`` below the root with ``RESOLVE_BENEATH``,
  ``RESOLVE_NO_XDEV`` and ``RESOLVE_NO_SYMLINKS``): a link, or a mount
  under the root, is never looked up on the loop; the worker thread's read
  handles it as before;
- **the key was written or read by this process lately** (``RecentKeys``):
  a key not touched lately is likely cold, and then even its open would
  wait for the disk to read its directory entry and inode;
- **the bytes are in the page cache** (``RWF_NOWAIT``): all of them, or
  none are returned.

The open also asks for ``O_NOATIME``: the first read of a file written
since its access time was last set would otherwise update that time, a
journal write that can wait for a commit in progress. ``O_NONBLOCK``: a
FIFO opens at once (and then fails its positioned read).

``openat2`` and ``fstatfs`` are called through ctypes: the ``os`` module
has neither (the file system's type is not in ``statvfs``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import platform
import threading
from pathlib import Path

# statfs(2) f_type of file systems on local block devices that answer
# RWF_NOWAIT reads of uncached pages with EAGAIN rather than waiting.
DISK_FILE_SYSTEMS = {
    0xEF53: "ext2/3/4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0xF2F52010: "f2fs",
}

# openat2's number and statfs's layout (f_type a native word first) as on
# these machines; elsewhere reads stay in the threads.
_MACHINES = ("x86_64", "aarch64")
_SYS_OPENAT2 = 437
_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
# Refuse (EAGAIN) rather than wait for anything the kernel's caches do not
# hold: a cold directory, an automount trigger (Linux 5.12; EINVAL before).
_RESOLVE_CACHED = 0x20
_HOT_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_XDEV | _RESOLVE_NO_SYMLINKS


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Libc:
    """``openat2`` and ``fstatfs``, or None where libc or the kernel lacks them."""

    def __init__(self) -> None:
        self.syscall = None
        self.fstatfs = None
        if not hasattr(os, "RWF_NOWAIT") or platform.machine() not in _MACHINES:
            return
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            syscall, fstatfs = libc.syscall, libc.fstatfs
        except (OSError, AttributeError):
            return
        syscall.restype = ctypes.c_long
        fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
        fstatfs.restype = ctypes.c_int
        self.syscall, self.fstatfs = syscall, fstatfs


_LIBC = _Libc()


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """``openat2(2)``: a descriptor, or minus the errno."""
    assert _LIBC.syscall is not None
    how = _OpenHow(flags=flags, mode=0, resolve=resolve)
    fd = _LIBC.syscall(
        _SYS_OPENAT2,
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    return int(fd) if fd >= 0 else -ctypes.get_errno()


def file_system_type(fd: int) -> int | None:
    """``f_type`` of the file system holding ``fd`` (the first field of
    ``struct statfs``, a native word, on the machines of ``_MACHINES``);
    None if unknown."""
    if _LIBC.fstatfs is None:
        return None
    buf = ctypes.create_string_buffer(256)  # larger than struct statfs anywhere
    if _LIBC.fstatfs(fd, buf) != 0:
        return None
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF


class HotRoot:
    """A space root's directory descriptor, held for reads on the loop.
    ``open_file`` and ``close`` are called on the loop's thread only."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._resolve = _HOT_RESOLVE | _RESOLVE_CACHED

    @classmethod
    def open(cls, root: Path) -> HotRoot | None:
        """The root, if reads below it may be tried on the loop: on a local
        disk file system, with ``openat2`` available. Blocking: call it from
        a worker thread."""
        if _LIBC.syscall is None:
            return None
        try:
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        hot = cls(fd)
        probe = _openat2(fd, ".", os.O_PATH | os.O_CLOEXEC, hot._resolve)
        if probe == -errno.EINVAL:  # a kernel before RESOLVE_CACHED
            hot._resolve = _HOT_RESOLVE
            probe = _openat2(fd, ".", os.O_PATH | os.O_CLOEXEC, hot._resolve)
        if probe >= 0:
            os.close(probe)
        if file_system_type(fd) not in DISK_FILE_SYSTEMS or probe < 0:
            hot.close()
            return None
        return hot

    def same_as(self, root: Path) -> bool:
        """Whether ``root``'s path still names the directory held (not so
        once something is mounted over it, or it is renamed or replaced).
        Blocking: from a worker thread."""
        fd = self._fd
        if fd is None:
            return False
        try:
            held, now = os.fstat(fd), os.stat(root)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)

    def open_file(self, key: str) -> int | None:
        """A descriptor of ``key``'s file for reading, if it is reached below
        the root, on its file system, through no link at all, and is ours
        (``O_NOATIME`` is allowed to the file's owner only); None otherwise.
        Never waits on another file system."""
        fd = self._fd
        if fd is None or "\0" in key:  # (a C string would end at the NUL)
            return None
        opened = _openat2(
            fd,
            key,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOATIME,
            self._resolve,
        )
        if opened == -errno.ENOSYS:
            self.close()  # no openat2 after all: nothing more on the loop
        return opened if opened >= 0 else None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()


def read_nowait(fd: int, offset: int, length: int) -> bytearray | None:
    """``length`` bytes of ``fd`` at ``offset`` if the page cache holds all
    of them now; None otherwise and on any error (a FIFO's ``ESPIPE``, a
    directory's ``EOPNOTSUPP``): the caller reads as usual and meets the
    error there."""
    if offset < 0 or length < 0:
        return None
    buf = bytearray(length)
    try:
        got = os.preadv(fd, [buf], offset, os.RWF_NOWAIT)
    except OSError:
        return None
    return buf if got == length else None


RECENT_KEYS = 4096  # per space: 4 GiB of 1 MiB blocks


class RecentKeys:
    """The last ``limit`` keys a space wrote or read, in order of last use;
    safe to use from worker threads and the loop at once."""

    def __init__(self, limit: int = RECENT_KEYS) -> None:
        self._keys: dict[str, None] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)
            self._keys[key] = None
            if len(self._keys) > self._limit:
                del self._keys[next(iter(self._keys))]

    def discard(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)
