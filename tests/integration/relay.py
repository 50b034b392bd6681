"""A TCP relay that connects from a chosen loopback address.

gRPC Python cannot choose a channel's source address, and on Linux every connection to
127.0.0.0/8 leaves from 127.0.0.1. A channel to a ``Relay`` reaches the target from
``source`` (any address of the loopback network, e.g. 127.0.0.2), so the server sees that
client under its own peer address.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class Relay:
    """Listens on 127.0.0.1 (``address``); relays each connection to ``target``
    (``host:port``) from ``source``. Use as an async context manager; leaving it closes
    every relayed connection."""

    def __init__(self, target: str, source: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._source = source
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._done: set[asyncio.Future[None]] = set()

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` to connect to."""
        assert self._server is not None, "not started"
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()  # the pipes see the end of their streams and finish
        if self._done:
            await asyncio.wait(self._done, timeout=5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        self._done.add(done)
        self._writers.add(writer)
        try:
            host, port = self._target
            up_reader, up_writer = await asyncio.open_connection(
                host, port, local_addr=(self._source, 0)
            )
            self._writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except OSError:
            pass  # the target refused: so does the relay, by closing
        finally:
            writer.close()
            done.set_result(None)
