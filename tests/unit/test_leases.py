"""Which lease owners are judged dead (their lease taken at once) and which
must be waited for until their lease runs out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jointcloud.core import leases


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_process_of_this_host_and_namespace_that_ended_is_dead() -> None:
    here, _, _ = leases.new_owner().partition(":")
    assert leases.owner_dead(f"{here}:{a_dead_pid()}:feedf00d")
    assert not leases.owner_dead(f"{here}:{os.getpid()}:feedf00d")  # ourselves
    assert not leases.owner_dead(f"{here}:1:feedf00d")  # alive (init)


def test_a_pid_of_another_pid_namespace_is_never_judged() -> None:
    """Two containers on one host name: the other one's PID means nothing
    here, and it is not dead because no process here has it."""
    here, _, _ = leases.new_owner().partition(":")
    host, _, machine = here.partition("/")
    boot, _, namespace = machine.partition(".")
    assert boot and namespace and machine != "?"
    pid = a_dead_pid()
    assert not leases.owner_dead(f"{host}/{boot}.{int(namespace) + 1}:{pid}:feedf00d")
    assert not leases.owner_dead(f"{host}:{pid}:feedf00d")  # written before namespaces
    assert not leases.owner_dead(f"{host}/{namespace}:{pid}:feedf00d")  # ...before boot ids
    assert not leases.owner_dead(f"elsewhere/{machine}:{pid}:feedf00d")


def test_a_pid_of_another_machine_with_this_host_name_is_never_judged() -> None:
    """Found by review: cloned VMs share a host name, and every machine's
    initial PID namespace has the same number: the other machine's PID was
    judged here, and its live GC delay ignored."""
    here, _, _ = leases.new_owner().partition(":")
    host, _, machine = here.partition("/")
    _, _, namespace = machine.partition(".")
    other_boot = "0123456789ab"
    assert other_boot != machine.partition(".")[0]
    assert not leases.owner_dead(f"{host}/{other_boot}.{namespace}:{a_dead_pid()}:feedf00d")
    assert not leases.owner_dead(None) and not leases.owner_dead("")


async def test_a_cancel_that_comes_as_the_renewal_ends_is_not_lost() -> None:
    """``wait_for(shield(...))`` on Python 3.11 returned the renewal's
    answer to a cancelled caller (CPython gh-86296): the job runner's
    ``keeper.cancel()`` was lost, the lease renewed for ever, and no pass of
    that job ran again in any process (found by review)."""
    import asyncio
    import time

    from jointcloud.core.leases import renewed_by

    gate = asyncio.Event()

    async def renewal() -> bool:
        await gate.wait()
        return True

    waiter = asyncio.ensure_future(renewed_by(renewal(), time.monotonic() + 60))
    await asyncio.sleep(0)  # waiting for the renewal
    gate.set()  # the renewal ends ...
    await asyncio.sleep(0)
    assert not waiter.done()
    waiter.cancel()  # ... as the caller is cancelled
    with pytest.raises(asyncio.CancelledError):
        await waiter
