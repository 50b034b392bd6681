"""HTTP/2 connections whose streams send their request headers and nothing else.

A gRPC client cannot do this (every call sends its message), so the streams are written
with ``h2``: HEADERS for ``ShouldAllow``, without END_STREAM and without a DATA frame. The
server holds each such stream, waiting for a message that never comes.
"""

from __future__ import annotations

import asyncio
import contextlib

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from ratelimit_client import proto

_PATH = f"/{proto.SERVICE_NAME}/ShouldAllow".encode()


class SilentConnection:
    """One connection holding streams that never send. ``open`` connects and waits for the
    server's SETTINGS; ``open_streams`` opens up to the number it allows, ``open(rush=n)``
    sends n with the connection preface, before the server can say how many it allows."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self._settings = asyncio.Event()
        self._pong = asyncio.Event()
        self.closed = asyncio.Event()
        """Set when the server closed the connection (EOF)."""
        self.opened = 0
        self.refused = 0
        self.goaway = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self, rush: int = 0) -> None:
        """Connect, sending ``rush`` silent streams at once, and return once the server's
        SETTINGS have arrived (or it closed the connection)."""
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self._h2.initiate_connection()
        self._send_headers(rush)
        self._writer.write(self._h2.data_to_send())
        self._pump = asyncio.ensure_future(self._read())
        await self._settings.wait()

    @property
    def stream_limit(self) -> int:
        """The server's SETTINGS_MAX_CONCURRENT_STREAMS (2**32 + 1 when unlimited)."""
        return int(self._h2.remote_settings.max_concurrent_streams)

    async def open_streams(self, wanted: int) -> int:
        """Open ``wanted`` silent streams, or as many as the server allows; return how many."""
        assert self._writer is not None
        count = min(wanted, self.stream_limit - self.opened)
        self._send_headers(count)
        self._writer.write(self._h2.data_to_send())
        await self._writer.drain()
        return count

    async def round_trip(self) -> None:
        """A PING and its answer: the server has handled every frame we sent before it (a
        closed connection ends the wait too)."""
        assert self._writer is not None
        if self.closed.is_set():
            return
        self._pong.clear()
        self._h2.ping(b"silence!")
        self._writer.write(self._h2.data_to_send())
        waits = [
            asyncio.ensure_future(self._pong.wait()),
            asyncio.ensure_future(self.closed.wait()),
        ]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()

    def _send_headers(self, count: int) -> None:
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", _PATH),
            (b":authority", f"{self._host}:{self._port}".encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        for _ in range(count):
            self._h2.send_headers(self._h2.get_next_available_stream_id(), headers)
        self.opened += count

    async def _read(self) -> None:
        assert self._reader is not None and self._writer is not None
        try:
            while data := await self._reader.read(65536):
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    # h2 refuses frames after a GOAWAY (gRPC sends a PING with its first
                    # one), losing the GOAWAY's event; the server closes soon.
                    closed = self._h2.state_machine.state is h2.connection.ConnectionState.CLOSED
                    self.goaway = self.goaway or closed
                    continue
                for event in events:
                    if isinstance(event, h2.events.RemoteSettingsChanged):
                        self._settings.set()
                    elif isinstance(event, h2.events.StreamReset):
                        self.refused += 1
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        self.goaway = True
                    elif isinstance(event, h2.events.PingAckReceived):
                        self._pong.set()
                if pending := self._h2.data_to_send():
                    self._writer.write(pending)  # SETTINGS and PING acknowledgements
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            self._settings.set()
            self._pong.set()

    async def close(self) -> None:
        """Go away from our side (if the server has not already)."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
