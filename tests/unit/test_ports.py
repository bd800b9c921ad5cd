"""The test servers' readiness check (support/ports.py) tells their own
listener from another process's on the same port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from support.ports import listens


def test_a_listener_is_told_apart_by_its_process() -> None:
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        port = int(mine.getsockname()[1])
        assert not listens(os.getpid(), port)  # bound, not listening yet
        mine.listen()
        assert listens(os.getpid(), port)
        other = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL
        )
        try:
            assert not listens(other.pid, port)
        finally:
            other.kill()
            other.wait()


def test_a_child_s_listener_counts_for_its_parent() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "print(s.getsockname()[1], flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        assert listens(child.pid, port)
        assert listens(os.getpid(), port)  # the child is ours
    finally:
        child.kill()
        child.wait()
