"""Large pieces of an answer written to the socket from a worker thread.

Why: uvloop writes into the socket with the GIL held, and on loopback the
kernel does the receiving side's work inside that call too. Serving 1 MiB
downloads, that write was 43 % of the event loop's time with the GIL
(py-spy), time in which no other thread could run Python either. A
``write`` of a piece of at least ``BIG_WRITE`` bytes, when the transport
has nothing buffered, is therefore handed to a thread that writes what the
socket takes with ``write`` on a descriptor of its own (a ``dup``), which
lets go of the GIL. The thread waits for the client at most ``PATIENCE``
(50 ms) in all: what the socket has not taken by then (a slow reader, one
that reads nothing) goes back to the loop, whose transport buffers it as
it would have buffered the whole piece. So a worker is held by no client
for longer than that, a slow or idle client's answer waits in the
transport under the connection's idle limit, and a stopping server waits
for no worker.

The connection's order of bytes is kept: while a piece is being written,
every other write waits in a queue, behind it; a close or end-of-file
waits for it too. The protocol is told writing is paused meanwhile
(``pause_writing``), so uvicorn's next ``send`` waits for the piece, as it
would for a full transport buffer. The descriptor is the thread's for one
piece and closed by it, so none outlives a write (a closed connection's
number can be reused at once by another). If the transport was closed
under the piece (an abort, a client's half-close), nothing more is written.

Small pieces are held back until the end of the loop's turn and written
together (up to ``CORK_LIMIT``): uvicorn writes an answer's head and its
body apart, and on loopback each ``send`` wakes the client; one wake-up
instead of two made 4 KiB downloads a fifth faster (2026-12-07, an ad-hoc
driver of 16 clients: 4,000 to 4,850 per second). A close, an end-of-file
and a large piece send what is held back first; so does the client's
end-of-file (``flush``, from the protocol), on which the transport may
close itself.

Only plain TCP: a TLS transport's bytes are not the socket's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Handing a piece to a thread costs a fixed few GIL hand-offs and two
# wake-ups; it pays for pieces of this size and up (a download's 1 MiB).
# A JCS listing of 1,000 keys (270 KB) is written by the loop as before.
BIG_WRITE = 512 * 1024
# How long a worker waits in all for a client to make room in the socket's
# buffer: a client reading at loopback speed takes a whole piece within it
# (not waiting at all, 1 MiB downloads ran 2-7 % slower, within this
# machine's noise), while one that reads slowly or not at all holds a
# worker no longer than this.
PATIENCE = 0.05
_SENDERS = ThreadPoolExecutor(8, thread_name_prefix="jcs-send")
# Small pieces written in one turn of the loop (an answer's head, then its
# body) go to the socket together, at the turn's end, up to this many bytes:
# one ``send`` and one wake-up of the client instead of one per piece.
CORK_LIMIT = 64 * 1024

Buffer = bytes | bytearray | memoryview


def _write_some(fd: int, data: Buffer) -> memoryview | None:
    """Write ``data`` to the non-blocking socket ``fd``, waiting at most
    ``PATIENCE`` in all for room in its buffer; what was not written, if
    any. Closes ``fd``. (Whole, the piece is then let go of in this thread:
    handed back to the loop to be freed there, it cost 1 MiB downloads a
    fifth of their rate, in system time.)"""
    view = memoryview(data)
    sent = 0
    deadline: float | None = None
    poller: select.poll | None = None
    try:
        while sent < len(view):
            try:
                sent += os.write(fd, view[sent:])
                continue
            except BlockingIOError:
                pass
            now = time.monotonic()
            if deadline is None:
                deadline = now + PATIENCE
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
            assert poller is not None
            if now >= deadline or not poller.poll(1000 * (deadline - now)):
                break
    finally:
        os.close(fd)
    return None if sent == len(view) else view[sent:]


class ThreadedWrites:
    """A transport that writes large pieces from a worker thread; every
    other call goes to the transport it wraps. ``paused``/``resumed`` are
    the protocol's ``pause_writing``/``resume_writing``."""

    def __init__(
        self,
        transport: asyncio.Transport,
        paused: Callable[[], None],
        resumed: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._paused = paused
        self._resumed = resumed
        self._plain = transport.get_extra_info("sslcontext") is None
        self._writing: Future[memoryview | None] | None = None
        self._queued: list[Buffer] = []
        self._then: list[Callable[[], None]] = []  # close / write_eof, once written
        self._corked: list[Buffer] = []  # small pieces of this turn of the loop
        self._corked_size = 0

    def write(self, data: Buffer) -> None:
        if self._transport.is_closing() and self._writing is None:
            return  # closed under the answer: as asyncio's transports, not uvloop's (an error)
        if self._writing is not None:
            self._queued.append(data)
            return
        if len(data) < BIG_WRITE:
            self._cork(data)
            return
        self._uncork()
        fd = self._descriptor()
        if fd is None:
            self._transport.write(data)
            return
        try:
            writing = _SENDERS.submit(_write_some, fd, data)
        except RuntimeError:  # the interpreter is exiting: no more threads
            os.close(fd)
            self._transport.write(data)
            return
        self._writing = writing
        self._paused()
        loop = asyncio.get_running_loop()

        # The callback takes the future as its argument, not from this scope:
        # a future keeps its callbacks, so a closure over ``writing`` would
        # be a reference cycle, freed only by the cyclic collector, pinning
        # the unwritten rest of the piece (a slow reader's: a memoryview of
        # the whole piece). Young collections come after 10,000 allocations
        # (``cli/serve.py``), which a slow download makes in minutes: four
        # readers at 1 MB/s held 260 MB of sent pieces after 85 s.
        def done(finished: Future[memoryview | None]) -> None:  # in the worker thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left
                loop.call_soon_threadsafe(self._done, finished)

        writing.add_done_callback(done)

    def _cork(self, data: Buffer) -> None:
        if not data:
            return
        if not self._corked:
            asyncio.get_running_loop().call_soon(self._uncork)
        self._corked.append(data if isinstance(data, bytes) else bytes(data))
        self._corked_size += len(data)
        if self._corked_size >= CORK_LIMIT:
            self._uncork()  # the transport's own buffer and flow control take it from here

    def flush(self) -> None:
        """Hand what is held back to the transport now: on a client's
        end-of-file it may close itself (when its protocol lets it) before
        the turn's end, and would drop what comes later."""
        self._uncork()

    def _uncork(self) -> None:
        corked = self._corked
        if not corked:
            return
        self._corked, self._corked_size = [], 0
        if not self._transport.is_closing():
            self._transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def get_write_buffer_size(self) -> int:
        return self._corked_size + self._transport.get_write_buffer_size()

    def _descriptor(self) -> int | None:
        """A descriptor of the socket for a thread to write on, if the
        transport is plain TCP with nothing buffered (else the transport's
        buffer decides the order); None otherwise, and when the process is
        out of descriptors (then the loop writes the piece as any other)."""
        transport = self._transport
        if not self._plain or transport.is_closing() or transport.get_write_buffer_size():
            return None
        raw = transport.get_extra_info("socket")
        if raw is None:
            self._plain = False
            return None
        try:
            return os.dup(raw.fileno())
        except OSError:
            return None

    def _done(self, writing: Future[memoryview | None]) -> None:
        self._writing = None
        transport = self._transport
        failure = writing.exception()
        if failure is not None or transport.is_closing():
            # The client went away (EPIPE, a reset), or the transport was
            # closed under the piece: nothing more goes out. The protocol
            # stays paused; losing the connection resumes it (uvicorn).
            if failure is not None and not isinstance(failure, OSError):
                log.error("writing a piece of an answer failed", error=repr(failure))
            self.abort()
            return
        rest = writing.result()
        if rest is not None:  # the socket took no more: the transport buffers the rest
            transport.write(rest)
        # Over its high-water mark the transport has paused the protocol
        # itself (that call came while ours held) and resumes it once drained;
        # resuming now would let the app add its next piece to a full buffer.
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]:
            self._resumed()
        queued, self._queued = self._queued, []
        for piece in queued:
            self.write(piece)  # in order; another large one may start here
        if self._writing is None:
            self._uncork()  # what the queue left held back goes before a close
            then, self._then = self._then, []
            for call in then:
                call()

    def close(self) -> None:
        self._uncork()
        self._after_writes(self._close)

    def _close(self) -> None:
        transport = self._transport
        transport.close()
        if transport.get_write_buffer_size():
            # The transport closes once its buffer is out, which a client that
            # reads nothing never lets happen: until then writing counts as
            # paused, under the protocol's limit on a client that reads nothing.
            self._paused()

    def write_eof(self) -> None:
        self._uncork()
        self._after_writes(self._transport.write_eof)

    def _after_writes(self, call: Callable[[], None]) -> None:
        if self._writing is None:
            call()
        else:
            self._then.append(call)

    def is_closing(self) -> bool:
        return bool(self._then) or self._transport.is_closing()

    def abort(self) -> None:
        self._corked, self._corked_size = [], 0
        self._queued.clear()
        self._then.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
