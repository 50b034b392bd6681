"""Closed-loop gRPC load through the generated stub: ``concurrency`` calls always in flight,
spread over ``connections`` TCP connections (several let the kernel hand them to several
limiter workers sharing the port).

``run_load`` warms up for ``warmup_s`` seconds, then measures for ``duration_s`` seconds, in
the calling process (whose CPU is the ``bench`` role of the window). Every call has a
deadline; a failed call is counted under its status name and the load goes on, so errors
show in the result instead of stopping it. Each answer's ``reason`` is tallied, so
fail-open answers are visible. ``ShouldRateLimit`` (Envoy's API, through the server's
generated stub) carries ``descriptors`` descriptors per call, each one key (``user=<key>``)
of domain ``ENVOY_DOMAIN``; its per-descriptor codes are tallied as ``OK`` / ``OVER_LIMIT``
(a failure-mode answer cannot be told apart there). Requests are built once, over ``keys``
distinct keys in shuffled order; the stub serializes them per call, which costs no
measurable CPU next to gRPC's own (measured against pre-serialized bytes: within the noise,
about 150 us a call).
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench.cpu import CpuWindow
from bench.options import BenchOptions
from limiter_service.envoy import proto as envoy_proto
from ratelimit_client import proto

__all__ = ["ENVOY_DOMAIN", "Method", "Tally", "envoy_config", "run_load"]

ENVOY_DOMAIN = "bench"

_CONNECT_TIMEOUT_S = 10.0


class Method(enum.StrEnum):
    """The RPC under load, by its name in the stub."""

    SHOULD_ALLOW = "ShouldAllow"
    SHOULD_ALLOW_BATCH = "ShouldAllowBatch"
    SHOULD_RATE_LIMIT = "ShouldRateLimit"


def envoy_config(options: BenchOptions) -> str:
    """The envoyproxy/ratelimit file the limiter loads for ``ShouldRateLimit``: every
    ``user`` value its own counter, as generous as the bench policy (a fixed window)."""
    return (
        f"domain: {ENVOY_DOMAIN}\ndescriptors:\n  - key: user\n    rate_limit:\n"
        f"      unit: minute\n      requests_per_unit: {options.policy_limit}\n"
    )


@dataclass
class Tally:
    """What one run counted. ``calls``: successful calls that finished inside the measured
    window, one latency each (µs); ``all_calls`` also those of the warm-up and after.
    ``errors`` maps a status name to its count, warm-up included (none is hidden);
    ``reasons`` maps a ``Reason`` name to the decisions in the window that gave it.
    ``cpu_s`` is the ``CpuWindow``'s split of the measured window."""

    window_s: float
    batch_size: int
    calls: int = 0
    all_calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    latencies_us: list[int] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def decisions(self) -> int:
        return self.calls * self.batch_size

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank ``q``-th percentile (0 < q <= 100) of the latencies in ms; ``None``
        without samples."""
        ordered = sorted(self.latencies_us)
        if not ordered:
            return None
        return round(ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] / 1000, 3)

    def to_json(self) -> dict[str, Any]:
        samples = self.latencies_us
        return {
            "window_s": self.window_s,
            "calls": self.calls,
            "all_calls": self.all_calls,
            "errors": dict(self.errors),
            "reasons": dict(self.reasons),
            "cpu_s": self.cpu_s,
            "latency_ms": {
                **{f"p{q}": self.percentile_ms(q) for q in (50, 90, 99)},
                "max": self.percentile_ms(100),
                "mean": round(sum(samples) / len(samples) / 1000, 3) if samples else None,
            },
        }


def _requests(method: Method, keys: int, size: int) -> list[Any]:
    names = [f"bench:user:{i}" for i in range(keys)]
    random.Random(1).shuffle(names)
    if method is Method.SHOULD_RATE_LIMIT:
        return [_envoy_request(names[i : i + size]) for i in range(0, len(names) - size + 1, size)]
    singles = [proto.ShouldAllowRequest(key=name) for name in names]
    if method is Method.SHOULD_ALLOW:
        return singles
    # Each key once per cycle over the list, never twice in one batch.
    return [
        proto.ShouldAllowBatchRequest(requests=singles[i : i + size])
        for i in range(0, len(singles) - size + 1, size)
    ]


def _envoy_request(users: list[str]) -> envoy_proto.RateLimitRequest:
    request = envoy_proto.RateLimitRequest(domain=ENVOY_DOMAIN)
    for user in users:
        request.descriptors.add().entries.add(key="user", value=user)
    return request


def _count_reasons(method: Method, reply: Any, reasons: Counter[str]) -> None:
    if method is Method.SHOULD_ALLOW:
        reasons[proto.Reason.Name(reply.reason)] += 1
    elif method is Method.SHOULD_RATE_LIMIT:
        code = envoy_proto.RateLimitResponse.Code.Name
        reasons.update(code(status.code) for status in reply.statuses)
    else:
        reasons.update(proto.Reason.Name(item.reason) for item in reply.responses)


async def _drive(
    target: str,
    method: Method,
    options: BenchOptions,
    cpu: CpuWindow,
    connections: int,
    descriptors: int,
) -> Tally:
    batched = method is Method.SHOULD_ALLOW_BATCH
    concurrency = options.batch_concurrency if batched else options.concurrency
    size = options.batch_size if batched else 1
    if method is Method.SHOULD_RATE_LIMIT:
        size = descriptors
    tally = Tally(window_s=options.duration_s, batch_size=size)
    requests = _requests(method, options.keys, tally.batch_size)
    codes: Counter[str] = Counter()
    # A subchannel pool of its own per channel: each one is a connection of its own.
    options_per_channel = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(target, options=options_per_channel) for _ in range(connections)
    ]

    def stub(channel: grpc.aio.Channel) -> Any:
        if method is Method.SHOULD_RATE_LIMIT:
            return envoy_proto.RateLimitServiceStub(channel)
        return proto.RateLimiterStub(channel)

    try:
        calls = [getattr(stub(channel), method.value) for channel in channels]
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT_S)
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + options.warmup_s
        measure_to = measure_from + options.duration_s
        loop.call_at(measure_from, cpu.open)
        closed: list[tuple[float, dict[str, float]]] = []
        closing = loop.call_at(measure_to, lambda: closed.append(cpu.close()))

        async def worker(index: int) -> None:
            call = calls[index % connections]
            while (started := loop.time()) < measure_to:
                request = requests[index % len(requests)]
                index += concurrency
                try:
                    reply = await call(request, timeout=options.call_timeout_s)
                except grpc.aio.AioRpcError as exc:
                    tally.errors[exc.code().name] += 1
                    continue
                done = loop.time()
                tally.all_calls += 1
                if measure_from <= done < measure_to:
                    tally.latencies_us.append(int((done - started) * 1e6))
                    _count_reasons(method, reply, codes)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        closing.cancel()
        tally.cpu_s = (closed or [cpu.close()])[0][1]
    finally:
        for channel in channels:
            await channel.close()
    tally.calls = len(tally.latencies_us)
    tally.reasons.update(codes)
    return tally


def run_load(
    target: str,
    method: Method,
    options: BenchOptions,
    cpu: CpuWindow,
    connections: int = 1,
    descriptors: int = 1,
) -> Tally:
    """Drive ``target`` with ``method`` as ``options`` say: ``concurrency`` single calls
    (``ShouldRateLimit``: of ``descriptors`` descriptors each, one decision apiece) or
    ``batch_concurrency`` batches of ``batch_size``, over ``keys`` keys, each call with a
    ``call_timeout_s`` deadline, on ``connections`` connections (calls spread evenly).
    ``cpu`` is opened and closed at the measured window's edges. Raises ``TimeoutError``
    when the target takes no connection within 10 s."""
    return asyncio.run(_drive(target, method, options, cpu, connections, descriptors))
