"""A flooding client, run as its own process: ``python -m tests.integration.flood``.

Keeps ``--concurrency`` ``ShouldAllowBatch`` calls of ``--batch`` items in flight on one
channel for ``--seconds`` (each started as soon as the one before it ends, whether it was
answered or refused), then prints one JSON line: how many calls were answered, the reason
of each answer's first decision, and how many failed with each status code.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time

import grpc

from ratelimit_client import proto


async def flood(target: str, concurrency: int, batch: int, seconds: float) -> dict[str, int]:
    """Counts of answered calls (``OK``), of their first decision's reason, and of every
    status code a call failed with."""
    request = proto.ShouldAllowBatchRequest(
        requests=[proto.ShouldAllowRequest(key=f"flood:{index}") for index in range(batch)]
    )
    counts: collections.Counter[str] = collections.Counter()
    end = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = proto.RateLimiterStub(channel)

        async def worker() -> None:
            while time.monotonic() < end:
                try:
                    reply = await stub.ShouldAllowBatch(request, timeout=5)
                except grpc.aio.AioRpcError as exc:
                    counts[exc.code().name] += 1
                    continue
                counts["OK"] += 1
                counts[proto.Reason.Name(reply.responses[0].reason)] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return dict(counts)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", help="host:port of the limiter")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    counts = asyncio.run(flood(args.target, args.concurrency, args.batch, args.seconds))
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
