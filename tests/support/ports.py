"""Loopback ports for test servers, and whose listener is on one.

Why: a port found free (bound to 0, then closed) can be taken before the
server binds it, by another xdist worker's server or as some client's
ephemeral port. Then either the server exits ("Address already in use"),
or, worse, a readiness probe gets its answer from somebody else's server:
once in CI a fresh key was refused with a 401 by what was, most likely, a
server of another test on another database. So a start waits until the
listener on its port is its own process's, and tries fresh ports when the
port was taken first.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's "st" column
PORT_ATTEMPTS = 5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (any address), from /proc/net."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                found.add(inode)
    return found


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server may listen from a child)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return tree


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` and its children hold every listener on
    ``port``, and there is one (``SO_REUSEPORT`` lets another process of the
    same user share a port: then it is not ours alone)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for member in _process_tree(pid):
        try:
            fds = os.listdir(f"/proc/{member}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                wanted.discard(os.readlink(f"/proc/{member}/fd/{fd}"))
            except OSError:
                continue
    return not wanted


def port_was_taken(output: str) -> bool:
    """Whether a server's output says it could not bind its port."""
    return "Address already in use" in output or "address already in use" in output
