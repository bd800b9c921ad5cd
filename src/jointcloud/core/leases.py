"""Who holds a lease, and whether that process is gone.

A lease owner is ``host/pid-namespace:pid:nonce``. A lease of a process that
died on this host, in this PID namespace (its PID no longer exists there),
can be taken over at once instead of after the lease runs out, so a
restarted server resumes its work straight away. A PID is only meaningful
in its own namespace: two containers on one machine share its host name (a
host network) but not their PIDs, and each would see the other's PID as
dead and take its lease from a live process. Where the namespace cannot be
told, no owner is judged dead: its lease runs out first.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid


@functools.cache
def _here() -> str | None:
    """This host and PID namespace, or None when the namespace is unknown."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return f"{socket.gethostname()}/{namespace.removeprefix('pid:').strip('[]')}"


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
