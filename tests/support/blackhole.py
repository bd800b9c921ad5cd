"""A TCP relay on loopback that can stop relaying without closing anything:
what a database server on another machine looks like when the network
between drops its packets (a partition, a dead host). Nothing is refused
and nothing is reset; the bytes just never arrive.

It runs its own event loop in a thread, so it relays for in-process tests
(whose loop may be the one waiting) and for server processes alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from support.ports import free_port


class Blackhole:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._open: asyncio.Event | None = None  # set: relaying (the relay loop's)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None
        self.accepted = 0  # connections relayed (or held) so far

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the relay did not start")

    def cut(self) -> None:
        """From now on nothing is relayed, either way; connections stay open."""
        self._on_loop(lambda gate: gate.clear())

    def mend(self) -> None:
        self._on_loop(lambda gate: gate.set())

    def _on_loop(self, change: Callable[[asyncio.Event], None]) -> None:
        """Apply ``change`` to the gate on the relay's loop, and return once done."""
        done = threading.Event()

        def run() -> None:
            assert self._open is not None
            change(self._open)
            done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise RuntimeError("the relay did not answer")

    def stop(self) -> None:
        """Close every relayed connection and the listener, then the loop."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for relay in relays:
            relay.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def listen() -> None:
            self._open = asyncio.Event()
            self._open.set()
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(listen())
        self._loop.run_forever()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                assert self._open is not None
                await self._open.wait()  # held, never dropped: a silent link
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
