"""A small TCP proxy on 127.0.0.1 that cuts every connection after a few SSE events.

It forwards client → server bytes untouched and counts event terminators (``\\n\\n``) in the
server → client bytes; after ``every`` of them (plus ``tail`` more bytes, so the cut usually
lands inside the next event) it aborts both sides.
"""

from __future__ import annotations

import asyncio
import contextlib


class DroppingProxy:
    def __init__(self, target_port: int, every: int = 3, tail: int = 7) -> None:
        self.target_port = target_port
        self.every = every
        self.tail = tail
        self.connections = 0
        self.drops = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # abort the sockets (not the handler tasks: asyncio logs a cancelled connection handler)
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            self._tasks.discard(task)
            return
        self._writers.update((writer, up_writer))
        upstream = asyncio.create_task(self._pipe(reader, up_writer))
        try:
            await self._downstream(up_reader, writer)
        finally:
            upstream.cancel()
            with contextlib.suppress(BaseException):
                await upstream
            writer.transport.abort()
            up_writer.transport.abort()
            self._writers.difference_update((writer, up_writer))
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = 0
        previous = 0  # the last byte forwarded: a "\n\n" may straddle two reads
        remaining: int | None = None  # bytes still to forward before the cut
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if remaining is None:
                    for i, byte in enumerate(data):
                        if byte == 10 and previous == 10:
                            seen += 1
                            if seen >= self.every:
                                remaining = i + 1 + self.tail
                                break
                        previous = byte
                if remaining is None:
                    writer.write(data)
                    await writer.drain()
                    continue
                writer.write(data[:remaining])
                await writer.drain()
                remaining -= min(remaining, len(data))
                if remaining == 0:
                    self.drops += 1
                    return
