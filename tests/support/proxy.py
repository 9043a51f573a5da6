"""A TCP proxy on 127.0.0.1 that cuts connections, to drop HTTP/SSE streams mid-flight.

Client → server bytes pass untouched. Server → client bytes are counted per connection: with
``every`` the connection is cut ``tail`` bytes after the ``every``-th event terminator (``\\n\\n``,
so the cut usually lands inside the next event); with ``cut_after`` it is cut once that many bytes
went back to the client. ``cut_all()`` cuts every open connection now and ``refuse = True`` makes
new connections fail at once. A cut aborts both sockets (no FIN: the peers see a reset).

Test-only plumbing: stdlib and asyncio only; never imports pytest or anything from a test area.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.serve import Listening


class TcpProxy(Listening):
    """Use as ``async with TcpProxy(server_port, every=3) as proxy:``; ``proxy.url`` is its root.
    ``connections`` counts accepted connections, ``cuts`` the ones cut by ``every``/``cut_after``."""

    def __init__(
        self, target_port: int, *, every: int | None = None, tail: int = 0, cut_after: int | None = None
    ) -> None:
        self.target_port = target_port
        self.every = every
        self.tail = tail
        self.cut_after = cut_after
        self.refuse = False
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # abort the sockets, not the handler tasks (asyncio logs a cancelled connection handler)
        self.cut_all()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        await self._server.wait_closed()

    def cut_all(self) -> None:
        """Abort every open connection now (both sides)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        if self.refuse:
            client_w.transport.abort()
            return
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w, server_w)
        self._writers.update(pair)
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, pair, False), self._pipe(server_r, client_w, pair, True)
            )
        finally:
            self._writers.difference_update(pair)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        downstream: bool,
    ) -> None:
        """Forward until EOF, an error or (``downstream`` only) the cut point; then abort both sides."""
        sent = 0  # bytes forwarded so far
        seen = 0  # event terminators seen
        previous = 0  # the last byte looked at: a "\n\n" may straddle two reads
        every = self.every if downstream else None
        cut_at = self.cut_after if downstream else None  # the byte offset at which to cut
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if every is not None and seen < every:
                    for i, byte in enumerate(data):
                        if byte == 10 and previous == 10:
                            seen += 1
                            if seen >= every:
                                at = sent + i + 1 + self.tail
                                cut_at = at if cut_at is None else min(cut_at, at)
                                break
                        previous = byte
                if cut_at is not None and sent + len(data) >= cut_at:
                    writer.write(data[: max(0, cut_at - sent)])
                    await writer.drain()
                    self.cuts += 1
                    break
                writer.write(data)
                sent += len(data)
                await writer.drain()
        for side in pair:
            side.transport.abort()
