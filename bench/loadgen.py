"""Closed-loop gRPC load: ``concurrency`` calls always in flight for a fixed time.

``python -m bench.loadgen --target 127.0.0.1:PORT [--method should_allow_batch] ...`` warms
up for ``--warmup`` seconds, then measures for ``--duration`` seconds and prints one JSON
object on stdout (see ``Tally.to_json``, plus the settings used). Every call has a deadline
(``--timeout``); a call that fails is counted under its status name and the load goes on,
so errors show up in the result rather than stopping it. Each answer's ``reason`` is
tallied, so fail-open answers (``REASON_FAIL_OPEN``) are visible. ``--watch-pid PID``
(repeatable) adds the CPU seconds that process used during the measured window to
``cpu_s``, next to the generator's own (``"self"``).

Requests are serialized once up front and spread over ``--keys`` distinct keys, so the
generator spends its CPU on gRPC, not on building messages. With ``--procs N`` it runs N
copies of itself (the concurrency split between them) that start measuring at the same
wall-clock instant, and prints their merged result. Exit status 0 with a result, 1 when a
copy failed or the target never became reachable (message on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from bench import cpu
from bench.options import positive_float, positive_int
from bench.stats import Tally
from limiter_service import proto

__all__ = ["LoadSpec", "Method", "main", "run_load"]

_CONNECT_TIMEOUT_S = 10.0
_CHILD_GRACE_S = 30.0


class Method(enum.StrEnum):
    """The RPC under load."""

    SHOULD_ALLOW = "should_allow"
    SHOULD_ALLOW_BATCH = "should_allow_batch"

    @property
    def path(self) -> str:
        if self is Method.SHOULD_ALLOW:
            return proto.SHOULD_ALLOW_METHOD
        return proto.SHOULD_ALLOW_BATCH_METHOD


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One load run. Times are seconds; ``start_at`` is a ``time.time()`` instant at which
    warm-up begins (``None``: at once)."""

    target: str
    method: Method = Method.SHOULD_ALLOW
    concurrency: int = 16
    duration_s: float = 5.0
    warmup_s: float = 1.0
    keys: int = 10_000
    batch_size: int = 100
    timeout_s: float = 5.0
    seed: int = 1
    start_at: float | None = None
    watch_pids: tuple[int, ...] = ()

    @property
    def decisions_per_call(self) -> int:
        return self.batch_size if self.method is Method.SHOULD_ALLOW_BATCH else 1


def payloads(spec: LoadSpec) -> list[bytes]:
    """Serialized requests, cycling over ``spec.keys`` distinct keys in shuffled order.

    For batches, each key appears once per full cycle and never twice in one batch.
    """
    rng = random.Random(spec.seed)
    keys = [f"bench:user:{i}" for i in range(spec.keys)]
    rng.shuffle(keys)
    if spec.method is Method.SHOULD_ALLOW:
        return [proto.ShouldAllowRequest(key=key).SerializeToString() for key in keys]
    size = spec.batch_size
    chunks = [keys[i : i + size] for i in range(0, len(keys) - size + 1, size)] or [keys]
    return [
        proto.ShouldAllowBatchRequest(
            requests=[proto.ShouldAllowRequest(key=key) for key in chunk]
        ).SerializeToString()
        for chunk in chunks
    ]


def _reason_counter(method: Method) -> Callable[[Any, Counter[int]], None]:
    if method is Method.SHOULD_ALLOW:

        def single(reply: Any, reasons: Counter[int]) -> None:
            reasons[reply.reason] += 1

        return single

    def batch(reply: Any, reasons: Counter[int]) -> None:
        reasons.update(item.reason for item in reply.responses)

    return batch


async def run_load(spec: LoadSpec) -> Tally:
    """Run ``spec`` against its target and return what was measured.

    Raises ``TimeoutError`` when the target does not accept a connection within 10 s.
    """
    bodies = payloads(spec)
    deserialize = (
        proto.ShouldAllowResponse.FromString
        if spec.method is Method.SHOULD_ALLOW
        else proto.ShouldAllowBatchResponse.FromString
    )
    count_reasons = _reason_counter(spec.method)
    async with grpc.aio.insecure_channel(spec.target) as channel:
        # No request serializer: the bodies are already bytes.
        call = channel.unary_unary(spec.method.path, response_deserializer=deserialize)
        await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT_S)
        if spec.start_at is not None:
            await asyncio.sleep(max(0.0, spec.start_at - time.time()))
        now = time.perf_counter_ns()
        measure_from = now + int(spec.warmup_s * 1e9)
        measure_to = measure_from + int(spec.duration_s * 1e9)
        tally = Tally(window_s=spec.duration_s)
        reason_codes: Counter[int] = Counter()
        cpu_marks: list[dict[str, float]] = []
        loop = asyncio.get_running_loop()
        for delay in (spec.warmup_s, spec.warmup_s + spec.duration_s):
            loop.call_later(delay, lambda: cpu_marks.append(cpu.snapshot(spec.watch_pids)))

        async def worker(offset: int) -> None:
            index = offset
            while True:
                started = time.perf_counter_ns()
                if started >= measure_to:
                    return
                body = bodies[index % len(bodies)]
                index += spec.concurrency
                try:
                    reply = await call(body, timeout=spec.timeout_s)
                except grpc.aio.AioRpcError as exc:
                    tally.errors[exc.code().name] += 1  # warm-up included: none is hidden
                    continue
                done = time.perf_counter_ns()
                tally.all_calls += 1
                if measure_from <= done < measure_to:
                    tally.latencies_us.append((done - started) // 1000)
                    count_reasons(reply, reason_codes)

        await asyncio.gather(*(worker(i) for i in range(spec.concurrency)))
        if len(cpu_marks) < 2:  # the last call returned before the window's end
            cpu_marks.append(cpu.snapshot(spec.watch_pids))
    if len(cpu_marks) == 2:
        tally.cpu_s.update(cpu.used(cpu_marks[0], cpu_marks[1]))
    tally.calls = len(tally.latencies_us)
    tally.decisions = tally.calls * spec.decisions_per_call
    tally.reasons.update({proto.Reason.Name(code): n for code, n in reason_codes.items()})
    return tally.close()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _run_copies(spec: LoadSpec, procs: int) -> Tally:
    """Run ``procs`` copies of this module and merge their tallies; raises ``RuntimeError``
    naming the copy that failed."""
    start_at = time.time() + 1.5  # time for every copy to import grpc and connect
    children: list[subprocess.Popen[str]] = []
    for index, concurrency in enumerate(_split(spec.concurrency, procs)):
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            *_spec_args(spec),
            # One copy is enough to watch the servers; every copy reports itself.
            *(f"--watch-pid={pid}" for pid in (spec.watch_pids if index == 0 else ())),
            f"--concurrency={concurrency}",
            f"--seed={spec.seed + index}",
            f"--start-at={start_at}",
            "--samples",
        ]
        children.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    limit = 1.5 + spec.warmup_s + spec.duration_s + spec.timeout_s + _CHILD_GRACE_S
    parts: list[Tally] = []
    failure: str | None = None
    for index, child in enumerate(children):
        try:
            out, _ = child.communicate(timeout=max(1.0, start_at + limit - time.time()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            failure = failure or f"load copy {index} (pid {child.pid}) did not finish in time"
            continue
        if child.returncode != 0:
            failure = failure or f"load copy {index} (pid {child.pid}) exited {child.returncode}"
            continue
        parts.append(Tally.from_json(json.loads(out)))
    if failure is not None:
        raise RuntimeError(failure)
    return Tally.merge(parts)


def _spec_args(spec: LoadSpec) -> list[str]:
    return [
        f"--target={spec.target}",
        f"--method={spec.method.value}",
        f"--duration={spec.duration_s}",
        f"--warmup={spec.warmup_s}",
        f"--keys={spec.keys}",
        f"--batch-size={spec.batch_size}",
        f"--timeout={spec.timeout_s}",
    ]


def parse_args(argv: Sequence[str] | None = None) -> tuple[LoadSpec, int, bool]:
    """The run described by ``argv``, the number of processes, and whether to print every
    latency sample. Exits with status 2 and a usage message on bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--target", required=True, help="host:port of the gRPC server")
    parser.add_argument("--method", type=Method, default=Method.SHOULD_ALLOW, choices=Method)
    parser.add_argument("--concurrency", type=positive_int, default=16)
    parser.add_argument("--duration", type=positive_float, default=5.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, not measured")
    parser.add_argument("--keys", type=positive_int, default=10_000)
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--timeout", type=positive_float, default=5.0, help="call deadline, s")
    parser.add_argument("--procs", type=positive_int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--watch-pid", type=int, action="append", default=[], help="report this pid's CPU"
    )
    parser.add_argument("--samples", action="store_true", help="also print every latency (us)")
    args = parser.parse_args(argv)
    if args.procs > args.concurrency:
        parser.error("--procs must not exceed --concurrency")
    if args.keys < args.batch_size and args.method is Method.SHOULD_ALLOW_BATCH:
        parser.error("--keys must be at least --batch-size")
    spec = LoadSpec(
        target=args.target,
        method=args.method,
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=max(0.0, args.warmup),
        keys=args.keys,
        batch_size=args.batch_size,
        timeout_s=args.timeout,
        seed=args.seed,
        start_at=args.start_at,
        watch_pids=tuple(args.watch_pid),
    )
    return spec, args.procs, args.samples


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; see the module docstring for the contract."""
    spec, procs, samples = parse_args(argv)
    try:
        tally = asyncio.run(run_load(spec)) if procs == 1 else _run_copies(spec, procs)
    except (TimeoutError, RuntimeError) as exc:
        print(f"loadgen: {exc or 'target did not accept a connection in time'}", file=sys.stderr)
        return 1
    result = {
        "target": spec.target,
        "method": spec.method.value,
        "concurrency": spec.concurrency,
        "procs": procs,
        "warmup_s": spec.warmup_s,
        "duration_s": spec.duration_s,
        "keys": spec.keys,
        "batch_size": spec.decisions_per_call,
        **tally.to_json(samples=samples),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
