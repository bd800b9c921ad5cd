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
