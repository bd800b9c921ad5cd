"""The facade's blocking work runs in thread pools of its own, with bounded
admission, apart from the server's own work.

boto3 and Argon2id block a thread. On the loop's default pool (32 threads,
``cli/serve.py``) they shared it with every SQLite commit: 40
unauthenticated ``/headBucket`` calls naming an endpoint that accepts and
never answers stopped every write on the server for some ten minutes, and
16 ``/createAccessGrant`` calls at once added 1 GiB of Argon2id memory
(found by review, 2026-12-06). So:

* a ``Pool`` has its own threads (named, so a stack dump tells them);
* at most ``slots`` calls are admitted at once, running or waiting for a
  thread; a call that finds none free within its patience fails with
  ``ServerBusy`` at once, rather than queueing without end;
* a call may have a deadline besides its library's own timeouts;
* the slot belongs to the request's task: when the task ends (an answer, a
  deadline, a cancellation) the slot is free, and a call still queued for a
  thread is dropped. A thread already inside a blocking call cannot be
  stopped: it ends within the library's own timeouts, holding one of its
  pool's threads, never the server's.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from jointcloud.errors import ServerBusy

T = TypeVar("T")


class Deadline(Exception):
    """A call ran past its deadline (its thread may still be running)."""


class Pool:
    def __init__(self, name: str, *, threads: int, slots: int, what: str) -> None:
        self.name = name
        self.threads = threads
        self.slots = slots
        self.what = what  # "outbound calls": said in the busy answer
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        # An asyncio semaphore belongs to one event loop; tests run many.
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._gates = weakref.WeakKeyDictionary()

    def gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self.slots)
        return gate

    def free(self) -> int:
        """Slots free now (in this event loop)."""
        gate = self.gate()
        return gate._value  # asyncio has no public reading

    async def run(
        self,
        fn: Callable[..., T],
        /,
        *args: object,
        patience: float,
        deadline: float | None,
        **kwargs: object,
    ) -> T:
        """``fn(*args, **kwargs)`` in this pool, once admitted within
        ``patience`` seconds (else ``ServerBusy``), bounded by ``deadline``
        seconds (else ``Deadline``)."""
        gate = self.gate()
        try:
            async with asyncio.timeout(patience):
                await gate.acquire()
        except TimeoutError:
            raise ServerBusy(
                f"the server is busy with {self.what} ({self.slots} under way); "
                "try again in a few seconds"
            ) from None
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
            if deadline is None:
                return await future
            bound = asyncio.timeout(deadline)
            try:
                async with bound:
                    return await future
            except TimeoutError:
                if bound.expired():
                    raise Deadline() from None
                raise
        finally:
            gate.release()
