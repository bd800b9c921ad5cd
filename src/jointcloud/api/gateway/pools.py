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
  pool's threads, never the server's. Such a call is *given up*: it is
  counted (``abandoned``), and ``given_up()`` tells the library's hooks
  in its thread so that it begins nothing more (``s3client``: no retry).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from jointcloud.errors import ServerBusy

T = TypeVar("T")

# Set in the thread of each call: its caller gave it up.
_GIVEN_UP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "jcs_pool_given_up", default=None
)


def given_up() -> bool:
    """Whether the call running in this thread was given up by its caller
    (its client left, or its deadline passed): nobody awaits what it has not
    begun yet."""
    flag = _GIVEN_UP.get()
    return flag is not None and flag.is_set()


class Deadline(Exception):
    """A call ran past its deadline (its thread may still be running)."""


class Pool:
    def __init__(self, name: str, *, threads: int, slots: int, what: str) -> None:
        self.name = name
        self.threads = threads
        self.slots = slots
        self.what = what  # "outbound calls": said in the busy answer
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._abandoned = 0
        self._lock = threading.Lock()  # _abandoned ends in the threads
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

    @property
    def abandoned(self) -> int:
        """Threads still inside a call that was given up (they hold no slot)."""
        return self._abandoned

    def _abandon(self, job: Future[Any]) -> None:
        with self._lock:
            self._abandoned += 1
        job.add_done_callback(self._ended)

    def _ended(self, _: Future[Any]) -> None:
        with self._lock:
            self._abandoned -= 1

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
            flag = threading.Event()
            context = contextvars.copy_context()
            context.run(_GIVEN_UP.set, flag)
            job = self.executor.submit(context.run, functools.partial(fn, *args, **kwargs))
            try:
                return await self._outcome(asyncio.wrap_future(job), deadline)
            except BaseException:
                if not job.cancel() and not job.done():  # in its thread still
                    flag.set()
                    self._abandon(job)
                raise
        finally:
            gate.release()

    @staticmethod
    async def _outcome(future: asyncio.Future[T], deadline: float | None) -> T:
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
