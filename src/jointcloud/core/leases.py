"""Who holds a lease, and whether that process is gone.

A lease owner is ``host/boot.pid-namespace:pid:nonce``. A lease of a
process that died on this machine, in this PID namespace (its PID no longer
exists there), can be taken over at once instead of after the lease runs
out, so a restarted server resumes its work straight away. A PID is only
meaningful in its own namespace on its own machine: two containers on one
machine share its host name (a host network) but not their PIDs, and two
machines may share a host name (cloned VMs, ``localhost``) and the initial
PID namespace's number, which is the same on every Linux machine. So the
machine is told by its boot id (new at every boot, so also distinct for
clones of one image, where ``/etc/machine-id`` may not be). Where the
machine or the namespace cannot be told, no owner is judged dead: its lease
runs out first. The same identity tells whose GC delay still counts
(``core/gcholds``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


@functools.cache
def _here() -> str | None:
    """This host, boot and PID namespace, or None when either is unknown."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip().replace("-", "")[:12]
    except OSError:
        return None
    if not boot:
        return None
    return f"{socket.gethostname()}/{boot}.{namespace.removeprefix('pid:').strip('[]')}"


def new_owner() -> str:
    here = _here() or f"{socket.gethostname()}/?"
    return f"{here}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_dead(owner: str | None) -> bool:
    """True only when ``owner`` is a process of this host and PID namespace
    that no longer runs."""
    if not owner:
        return False
    where, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    here = _here()
    if here is None or where != here or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


async def renewed_by(renewal: Coroutine[Any, Any, T], deadline: float) -> T:
    """The answer of a lease's renewal, if it comes before ``deadline`` (a
    ``time.monotonic()`` value: when the lease runs out); ``TimeoutError``
    otherwise. A renewal that hangs there (the database stalled) has failed,
    whatever it answers later: it is left to finish on its own, its error
    retrieved, since the caller logged the timeout already."""
    task = asyncio.ensure_future(renewal)
    task.add_done_callback(_retrieved)
    # Not ``wait_for(shield(task))``: on Python 3.11 it swallows a
    # cancellation that comes as the task ends (CPython gh-86296), and the
    # job runner's ``keeper.cancel()`` was lost: the lease was renewed for
    # ever and no pass of that job ran again (found by review).
    done, _ = await asyncio.wait([task], timeout=max(0.0, deadline - time.monotonic()))
    if not done:
        raise TimeoutError("the lease's renewal did not answer before the lease ran out")
    return task.result()


def _retrieved(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
