"""A TCP proxy on loopback that loses, or holds back, the response to chosen requests.

It passes every byte between a client and a server, except that, for the first ``drops``
requests whose first bytes contain ``pattern``, it forwards the request, waits until the
server starts answering (so the server has done the work), and then cuts both connections
without passing the answer on: what a client sees when a connection drops at the worst time.
With ``hold=True`` it passes that answer on only once :meth:`release` is called: a request
the server has carried out while the client still waits for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib


class DroppingProxy:
    def __init__(
        self, upstream_port: int, pattern: bytes, drops: int = 1, *, hold: bool = False
    ) -> None:
        self.upstream_port = upstream_port
        self.hold = hold
        self.held = asyncio.Event()  # set once a held answer has arrived from the server
        self._released = asyncio.Event()
        self.pattern = pattern
        self.drops_left = drops
        self.dropped = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        # Every connection's handler and transports, all ended when the proxy closes: a
        # transport left to the garbage collector after its loop closed warns.
        self._handlers: set[asyncio.Task[None]] = set()
        self._transports: list[asyncio.BaseTransport] = []

    def release(self) -> None:
        """Pass the held answer on."""
        self._released.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for transport in self._transports:
            transport.abort()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._transports.append(writer.transport)
        try:
            await self._pipe(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._transports.append(up_writer.transport)
        losing = asyncio.Event()

        async def client_to_server() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                await _client_to_server()

        async def server_to_client() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                await _server_to_client()

        async def _client_to_server() -> None:
            while data := await reader.read(65536):
                if not losing.is_set() and self.drops_left > 0 and self.pattern in data:
                    self.drops_left -= 1
                    losing.set()
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def _server_to_client() -> None:
            while data := await up_reader.read(65536):
                if losing.is_set() and self.hold:
                    self.held.set()
                    await self._released.wait()
                    losing.clear()
                elif losing.is_set():
                    # The server has answered: it made the task. The answer is lost.
                    self.dropped += 1
                    writer.transport.abort()
                    up_writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(client_to_server(), server_to_client())
        writer.transport.abort()
        up_writer.transport.abort()
