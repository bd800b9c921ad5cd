"""Large pieces of an answer written to the socket from a worker thread.

Why: uvloop writes into the socket with the GIL held, and on loopback the
kernel does the receiving side's work inside that call too. Serving 1 MiB
downloads, that write was 43 % of the event loop's time with the GIL
(py-spy), time in which no other thread could run Python either. A
``write`` of a piece of at least ``BIG_WRITE`` bytes, when the transport
has nothing buffered, is therefore handed to a thread that writes it with
``send``, which lets go of the GIL.

The connection's order of bytes is kept: while a piece is being written,
every other write waits in a queue, behind it; a close or end-of-file
waits for it too. The protocol is told writing is paused meanwhile
(``pause_writing``), so uvicorn's next ``send`` waits for the piece, as it
would for a full transport buffer, and the connection's limit on a client
that reads nothing applies as it does to any paused write. An abort shuts
the socket down, which ends a write in progress at once.

Only plain TCP: a TLS transport's bytes are not the socket's.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# Handing a piece to a thread costs a fixed few GIL hand-offs and two
# wake-ups; it pays for pieces of this size and up (a download's 1 MiB).
# A JCS listing of 1,000 keys (270 KB) is written by the loop as before.
BIG_WRITE = 512 * 1024
_SENDERS = ThreadPoolExecutor(8, thread_name_prefix="jcs-send")

Buffer = bytes | bytearray | memoryview


def _send_all(sock: socket.socket, data: Buffer, timeout: float) -> None:
    """Write all of ``data`` to the non-blocking ``sock``, waiting (at most
    ``timeout`` each time) while the socket buffer is full."""
    view = memoryview(data)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            if not poller.poll(timeout * 1000):
                raise TimeoutError("the client read nothing") from None
            continue
        view = view[sent:]


class ThreadedWrites:
    """A transport that writes large pieces from a worker thread; every
    other call goes to the transport it wraps. ``paused``/``resumed`` are
    the protocol's ``pause_writing``/``resume_writing``."""

    def __init__(
        self,
        transport: asyncio.Transport,
        paused: Callable[[], None],
        resumed: Callable[[], None],
        timeout: float,
    ) -> None:
        self._transport = transport
        self._paused = paused
        self._resumed = resumed
        self._timeout = timeout
        self._sock: socket.socket | None = None  # our own descriptor of the socket
        self._plain = transport.get_extra_info("sslcontext") is None
        self._writing: Future[None] | None = None
        self._queued: list[Buffer] = []
        self._then: list[Callable[[], None]] = []  # close / write_eof, once written
        self._lost = False

    def write(self, data: Buffer) -> None:
        if self._writing is not None:
            self._queued.append(data)
        elif len(data) >= BIG_WRITE and self._may_thread():
            self._start(data)
        else:
            self._transport.write(data)

    def _may_thread(self) -> bool:
        transport = self._transport
        if not self._plain or transport.is_closing() or transport.get_write_buffer_size():
            return False
        if self._sock is None:
            raw = transport.get_extra_info("socket")
            if raw is None:
                self._plain = False
                return False
            self._sock = socket.socket(fileno=socket.dup(raw.fileno()))
        return True

    def _start(self, data: Buffer) -> None:
        assert self._sock is not None
        self._paused()
        writing = _SENDERS.submit(_send_all, self._sock, data, self._timeout)
        self._writing = writing
        loop = asyncio.get_running_loop()
        writing.add_done_callback(lambda _: loop.call_soon_threadsafe(self._done, writing))

    def _done(self, writing: Future[None]) -> None:
        self._writing = None
        if writing.exception() is not None:  # the client went away, or read nothing
            self.abort()
        else:
            self._resumed()
            queued, self._queued = self._queued, []
            for data in queued:
                self.write(data)  # in order; another large one may start here
            if self._writing is None:
                then, self._then = self._then, []
                for call in then:
                    call()
        if self._lost and self._writing is None:
            self._close_sock()

    def close(self) -> None:
        self._after_writes(self._transport.close)

    def write_eof(self) -> None:
        self._after_writes(self._transport.write_eof)

    def _after_writes(self, call: Callable[[], None]) -> None:
        if self._writing is None:
            call()
        else:
            self._then.append(call)

    def is_closing(self) -> bool:
        return bool(self._then) or self._transport.is_closing()

    def abort(self) -> None:
        self._queued.clear()
        self._then.clear()
        if self._sock is not None and self._writing is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # ends the thread's write now
        self._transport.abort()

    def connection_lost(self) -> None:
        """The transport is gone; our descriptor goes once no write uses it."""
        self._lost = True
        if self._writing is None:
            self._close_sock()

    def _close_sock(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
