"""Who holds a lease, and whether that process is gone.

A lease owner is ``host:pid:nonce``. A lease of a process that died on this
host (its PID no longer exists) can be taken over at once instead of after
the lease runs out, so a restarted server resumes its work straight away.
"""

from __future__ import annotations

import os
import socket
import uuid


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_dead(owner: str | None) -> bool:
    """True only when ``owner`` is a process of this host that no longer runs."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
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
