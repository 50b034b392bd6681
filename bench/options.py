"""Command-line options of ``python -m bench``.

Defaults keep a full run under two minutes on two cores: each of the five gRPC scenarios
measures for ``--duration`` seconds after ``--warmup`` seconds, ``--rounds`` times (the
fastest round is reported), and each of the two ``redis-benchmark`` scenarios runs
``--rounds`` times for about ``--duration`` seconds. ``--quick`` shortens everything to a
smoke test (about 15 s in all); options given explicitly still win.

Then the end-to-end section (``bench.edge``, about a minute; see ``bench.edge_options``)
runs, unless ``--no-edge``; ``--edge-only`` runs nothing else.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.edge_options import EdgeOptions, add_edge_arguments, edge_options

__all__ = ["DEFAULT_OUTPUT", "BenchOptions", "parse_args"]

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """One bench run. Durations in seconds; ``None`` timeouts leave the limiter's own
    defaults (``REDIS_TIMEOUT_MS``, ``LIMITER_DECISION_TIMEOUT_MS``) in force."""

    duration_s: float = 5.0
    warmup_s: float = 1.0
    rounds: int = 2
    concurrency: int = 16
    batch_concurrency: int = 4
    """Batches in flight: 4 x 100 decisions keep the limiter busy without queueing past
    its 100 ms decision budget (16 x 100 measures overload, not throughput)."""
    batch_size: int = 100
    keys: int = 10_000
    procs: int = 1
    call_timeout_s: float = 5.0
    policy_limit: int = 1_000_000_000
    policy_window: str = "60s"
    redis_timeout_ms: int | None = None
    decision_timeout_ms: int | None = None
    output: Path = DEFAULT_OUTPUT
    workdir: Path | None = None
    quick: bool = False
    grpc: bool = True
    """Whether the gRPC and redis-benchmark scenarios run (not with ``--edge-only``)."""
    edge: EdgeOptions | None = field(default_factory=EdgeOptions)
    """The end-to-end section's options; ``None`` skips it."""


_QUICK = {
    "duration": 1.0,
    "warmup": 0.3,
    "rounds": 1,
    "concurrency": 8,
    "batch_concurrency": 2,
    "keys": 1_000,
}
# 16 calls in flight already saturate one Python gRPC server on two cores; more only
# lengthens queues (and, for batches of 100, pushes the limiter past its 100 ms budget).
_FULL = {
    "duration": 5.0,
    "warmup": 1.0,
    "rounds": 2,
    "concurrency": 16,
    "batch_concurrency": 4,
    "keys": 10_000,
}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> BenchOptions:
    """Options from ``argv``; exits with status 2 and a usage message when they are invalid."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput and latency of the limiter on real Redis, next to a bare "
        "gRPC echo server and redis-benchmark running the same Lua script.",
    )
    parser.add_argument("--duration", type=positive_float, help="measured seconds per run (5)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each run (1)")
    parser.add_argument("--rounds", type=positive_int, help="runs per scenario, best kept (2)")
    parser.add_argument("--concurrency", type=positive_int, help="calls in flight (16)")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="(100)")
    parser.add_argument("--batch-concurrency", type=positive_int, help="batch calls in flight (4)")
    parser.add_argument("--keys", type=positive_int, help="distinct keys (10000)")
    parser.add_argument("--procs", type=positive_int, default=1, help="load processes (1)")
    parser.add_argument("--redis-timeout-ms", type=positive_int, help="limiter REDIS_TIMEOUT_MS")
    parser.add_argument(
        "--decision-timeout-ms", type=positive_int, help="limiter LIMITER_DECISION_TIMEOUT_MS"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON path")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: temporary)")
    parser.add_argument("--quick", action="store_true", help="short smoke-test run")
    add_edge_arguments(parser)
    args = parser.parse_args(argv)
    base = _QUICK if args.quick else _FULL
    options = BenchOptions(
        duration_s=args.duration if args.duration is not None else base["duration"],
        warmup_s=max(0.0, args.warmup if args.warmup is not None else base["warmup"]),
        rounds=args.rounds or int(base["rounds"]),
        concurrency=args.concurrency or int(base["concurrency"]),
        batch_concurrency=args.batch_concurrency or int(base["batch_concurrency"]),
        batch_size=args.batch_size,
        keys=args.keys or int(base["keys"]),
        procs=args.procs,
        redis_timeout_ms=args.redis_timeout_ms,
        decision_timeout_ms=args.decision_timeout_ms,
        output=args.output,
        workdir=args.workdir,
        quick=args.quick,
        grpc=not args.edge_only,
        edge=edge_options(args, quick=args.quick),
    )
    if options.edge is not None and options.edge.threads > options.edge.connections:
        parser.error("--edge-threads must not exceed --edge-connections")
    if options.procs > min(options.concurrency, options.batch_concurrency):
        parser.error("--procs must not exceed --concurrency or --batch-concurrency")
    if options.keys < options.batch_size:
        parser.error("--keys must be at least --batch-size")
    if options.batch_size > 1000:
        parser.error("--batch-size must be at most 1000 (the service's limit)")
    return options
