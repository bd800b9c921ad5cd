"""Large pieces written from a worker thread (``api/common/bigwrites.py``):
what a slow reader leaves unwritten is freed by reference counting once it
is out, not left to the cyclic collector, which a server runs only every
10,000 allocations (``cli/serve.py``). Found by review (memory under slow
readers): the done-callback's closure over its own future made a cycle that
pinned each piece's unwritten rest; four share-link downloads read at
1 MB/s grew ``jcs serve`` by 260 MB in 85 s."""

from __future__ import annotations

import asyncio
import gc
import socket
import tracemalloc

from jointcloud.api.common.bigwrites import ThreadedWrites

PIECE = 4 * 1024 * 1024


async def _write_to_a_slow_reader() -> tuple[int, int]:
    """Traced memory with a piece held by the caller only, and after the
    piece was written through ``ThreadedWrites`` to a reader that took
    nothing at first (so part of it came back to the transport) and then
    everything."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    writes = ThreadedWrites(transport, lambda: None, lambda: None)
    piece = bytes(bytearray(PIECE))
    held = tracemalloc.get_traced_memory()[0]
    writes.write(piece)
    del piece
    for _ in range(1000):  # the worker gives up on the reader (PATIENCE)
        if writes._writing is None:
            break
        await asyncio.sleep(0.01)
    assert transport.get_write_buffer_size() > 0  # the rest went to the transport
    theirs.setblocking(False)
    received = 0
    while received < PIECE:
        try:
            received += len(theirs.recv(1 << 20))
        except BlockingIOError:
            await asyncio.sleep(0.005)
    assert transport.get_write_buffer_size() == 0
    after = tracemalloc.get_traced_memory()[0]
    transport.close()
    theirs.close()
    await asyncio.sleep(0)
    return held, after


def test_a_slow_readers_piece_is_freed_without_the_cyclic_collector() -> None:
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        held, after = asyncio.run(_write_to_a_slow_reader())
    finally:
        tracemalloc.stop()
        gc.enable()
    # Once written, the piece is gone: nothing but a collection would free
    # it if a reference cycle held its rest.
    assert after < held - PIECE // 2, (held, after)


class _Recording:
    """A transport that records what it is given to write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> None:
        return None


def _recording() -> tuple[_Recording, ThreadedWrites]:
    transport = _Recording()
    return transport, ThreadedWrites(transport, lambda: None, lambda: None)  # type: ignore[arg-type]


def test_an_answers_head_and_body_go_out_in_one_write() -> None:
    """uvicorn writes a head, then a body; written apart, each was a `send`
    and a wake-up of the client (a fifth of a 4 KiB download's rate here)."""

    async def main() -> tuple[list[bytes], list[bytes], int]:
        transport, writes = _recording()
        writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        body = bytearray(b"abcd")
        writes.write(body)
        body[:] = b"zzzz"  # the caller's buffer is its own again once write returns
        during = list(transport.writes)
        pending = writes.get_write_buffer_size()
        await asyncio.sleep(0)
        return during, transport.writes, pending

    during, after, pending = asyncio.run(main())
    assert during == [] and pending == 42
    assert after == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcd"]


def test_small_pieces_held_back_stay_bounded() -> None:
    """An app that writes many small pieces without yielding to the loop
    reaches the transport (and its flow control) every 64 KiB."""

    async def main() -> list[bytes]:
        transport, writes = _recording()
        for _ in range(40):
            writes.write(b"x" * 4096)
        return list(transport.writes)

    written = asyncio.run(main())
    assert [len(w) for w in written] == [65536, 65536]


def test_a_close_sends_what_was_held_back_first() -> None:
    async def main() -> tuple[list[bytes], bool]:
        transport, writes = _recording()
        writes.write(b"last words")
        writes.close()
        return list(transport.writes), transport.closed

    assert asyncio.run(main()) == ([b"last words"], True)


def test_small_and_large_pieces_keep_their_order() -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        writes = ThreadedWrites(transport, lambda: None, lambda: None)
        writes.write(b"head|")
        writes.write(b"B" * PIECE)  # to a worker thread
        writes.write(b"|tail")  # queued behind it
        writes.close()
        theirs.setblocking(False)
        got = bytearray()
        while True:
            try:
                chunk = theirs.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.005)
                continue
            if not chunk:
                break
            got += chunk
        theirs.close()
        return bytes(got)

    assert asyncio.run(main()) == b"head|" + b"B" * PIECE + b"|tail"
