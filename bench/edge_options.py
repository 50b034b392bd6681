"""Options of the end-to-end "speed bar" section of ``python -m bench`` (``bench.edge``).

Every scenario runs ``wrk`` for ``warmup_s`` unmeasured seconds, then ``duration_s``
measured ones (whole seconds: wrk takes no fractions), with ``threads`` threads holding
``connections`` keep-alive connections. Defaults: four scenarios of 2 + 8 s each, about a
minute with start-up; ``--quick`` makes it 1 + 1 s.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["EdgeOptions", "add_edge_arguments", "edge_options"]


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    """One edge section. ``rounds`` repeats the four scenarios in turn (ours, then the
    baseline, each time) and keeps each scenario's fastest round; ``limiter_timeout_ms``
    is the APIs' ``LIMITER_TIMEOUT_MS`` (``None``: the stack's default, 50 ms);
    ``rate_limit`` per ``time_window_s`` is the policy on both sides, so large that
    everything is allowed and yet counted."""

    duration_s: int = 8
    warmup_s: int = 2
    connections: int = 64
    threads: int = 2
    rounds: int = 1
    request_timeout_s: int = 5
    limiter_timeout_ms: int | None = None
    rate_limit: int = 1_000_000_000
    time_window_s: int = 60


_QUICK = EdgeOptions(duration_s=1, warmup_s=1)


def _whole_seconds(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_edge_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-edge``, ``--edge-only`` and the ``--edge-*`` settings to ``parser``."""
    group = parser.add_argument_group("end to end through Nginx (wrk)")
    which = group.add_mutually_exclusive_group()
    which.add_argument("--no-edge", action="store_true", help="skip the end-to-end section")
    which.add_argument("--edge-only", action="store_true", help="run only the end-to-end section")
    group.add_argument("--edge-duration", type=_positive, help="measured s per scenario (8)")
    group.add_argument("--edge-warmup", type=_whole_seconds, help="unmeasured s before (2)")
    group.add_argument("--edge-connections", type=_positive, help="wrk connections (64)")
    group.add_argument("--edge-threads", type=_positive, help="wrk threads (2)")
    group.add_argument("--edge-rounds", type=_positive, help="rounds, best kept (1)")
    group.add_argument(
        "--edge-limiter-timeout-ms", type=_positive, help="the APIs' LIMITER_TIMEOUT_MS (50)"
    )


def edge_options(args: argparse.Namespace, *, quick: bool) -> EdgeOptions | None:
    """The section's options from parsed ``args``; ``None`` with ``--no-edge``. Values
    given explicitly win over ``--quick``'s."""
    if args.no_edge:
        return None
    base = _QUICK if quick else EdgeOptions()
    return EdgeOptions(
        duration_s=args.edge_duration or base.duration_s,
        warmup_s=args.edge_warmup if args.edge_warmup is not None else base.warmup_s,
        connections=args.edge_connections or base.connections,
        threads=args.edge_threads or base.threads,
        rounds=args.edge_rounds or base.rounds,
        limiter_timeout_ms=args.edge_limiter_timeout_ms,
    )
