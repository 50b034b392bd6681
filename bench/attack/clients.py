"""Well-behaved clients: open-loop HTTP/1.1 GETs at a fixed rate, each from its own
loopback address.

Each client binds its socket to its own source address (``127.0.0.2``, ``127.0.0.3``, ...,
all on Linux's loopback), so Nginx sees a distinct ``$remote_addr`` and the API charges a
distinct key. A client keeps one keep-alive connection and sends its ``k``-th request at
``start + k / rate``; latency is counted from that scheduled time, not from when the
request actually left, so a server that stalls a client shows in its latencies instead of
silently lowering its rate (no coordinated omission). A broken connection is counted and
replaced. No request is sent after ``start + duration_s``; one still unanswered
``grace_s`` later is counted as ``unfinished``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GoodTally", "client_addresses", "run_good_clients"]

_READ_LIMIT = 64 * 1024


def client_addresses(count: int, first: str = "127.0.0.2") -> list[str]:
    """``count`` consecutive loopback addresses from ``first``. Raises ``ValueError`` when
    they would leave 127.0.0.0/8."""
    start = ipaddress.IPv4Address(first)
    addresses = [start + i for i in range(count)]
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    if any(address not in loopback for address in addresses):
        raise ValueError(f"{count} addresses from {first} leave 127.0.0.0/8")
    return [str(address) for address in addresses]


@dataclass
class GoodTally:
    """What the clients counted: answers by status, the 200s without a ``RateLimit``
    header (let through by the failure mode), socket errors, requests left unanswered at
    the end, and one latency (µs, from the scheduled send time) per answer."""

    duration_s: float
    statuses: Counter[int] = field(default_factory=Counter)
    missing_ratelimit: int = 0
    socket_errors: int = 0
    unfinished: int = 0
    latencies_us: list[int] = field(default_factory=list)

    @classmethod
    def pooled(cls, tallies: Sequence[GoodTally]) -> GoodTally:
        """``tallies`` as one tally over all their durations: counts added, latencies
        pooled (so its percentiles weigh every answer alike, whichever run it came from)."""
        pooled = cls(sum(t.duration_s for t in tallies))
        for tally in tallies:
            pooled.statuses.update(tally.statuses)
            pooled.missing_ratelimit += tally.missing_ratelimit
            pooled.socket_errors += tally.socket_errors
            pooled.unfinished += tally.unfinished
            pooled.latencies_us.extend(tally.latencies_us)
        return pooled

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank ``q``-th percentile (0 < q <= 100) in ms; ``None`` without samples."""
        ordered = sorted(self.latencies_us)
        if not ordered:
            return None
        return round(ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] / 1000, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "missing_ratelimit": self.missing_ratelimit,
            "socket_errors": self.socket_errors,
            "unfinished": self.unfinished,
            "latency_ms": {f"p{q}": self.percentile_ms(q) for q in (50, 90, 99, 100)},
        }


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status and whether it carried a ``RateLimit`` header."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    if "chunked" in headers.get("transfer-encoding", ""):
        while size := int((await reader.readline()).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, "ratelimit" in headers


async def _client(
    source: str,
    host: str,
    port: int,
    path: str,
    rate: float,
    stop_at: float,
    grace_s: float,
    tally: GoodTally,
) -> None:
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("ascii")
    interval = 1.0 / rate
    # Clients start spread over one interval, so they do not all send at the same instant.
    due = loop.time() + interval * (int(source.rsplit(".", 1)[1]) % 97) / 97
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while due < stop_at:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                if connection is None:
                    connection = await asyncio.open_connection(
                        host, port, local_addr=(source, 0), limit=_READ_LIMIT
                    )
                reader, writer = connection
                writer.write(request)
                give_up = max(due + grace_s, stop_at + grace_s) - loop.time()
                status, limited = await asyncio.wait_for(_answer(reader), give_up)
            except TimeoutError:
                tally.unfinished += 1
                break
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                tally.socket_errors += 1
                if connection is not None:
                    connection[1].close()
                connection = None
            else:
                tally.statuses[status] += 1
                tally.missing_ratelimit += status == 200 and not limited
                tally.latencies_us.append(int((loop.time() - due) * 1e6))
            due += interval
    finally:
        if connection is not None:
            connection[1].close()


async def run_good_clients(
    sources: list[str],
    host: str,
    port: int,
    path: str,
    rate: float,
    duration_s: float,
    grace_s: float,
) -> GoodTally:
    """Drive ``http://host:port{path}`` from each address in ``sources`` at ``rate``
    requests per second for ``duration_s`` seconds; returns once all have stopped (at most
    ``duration_s + grace_s`` after the call)."""
    tally = GoodTally(duration_s)
    stop_at = asyncio.get_running_loop().time() + duration_s
    await asyncio.gather(
        *(_client(source, host, port, path, rate, stop_at, grace_s, tally) for source in sources)
    )
    return tally
