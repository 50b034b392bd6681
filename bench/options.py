"""Options of ``python -m bench``: the gRPC / Redis part and the end-to-end part (``--edge-*``).

Defaults keep the gRPC part under three minutes on two cores: each of the nine gRPC scenarios
measures ``--duration`` seconds after ``--warmup`` seconds, ``--rounds`` times (the fastest
round is reported), and each of the two ``redis-benchmark`` scenarios runs ``--rounds``
times for about ``--duration`` seconds. The end-to-end part (``bench.edge``) then runs its
four wrk scenarios for 2 + 8 s each, about a minute with start-up. The cluster part
(``bench.cluster``) runs the limiter's single calls and batches against a Redis Cluster of
1 and of 3 primaries (``--cluster-*``, same load generator and rounds as the gRPC part,
about a minute); the under-attack part (``bench.attack``) drives both end-to-end sides with
well-behaved clients, alone and next to one paced abusive client in alternating rounds,
then next to a closed-loop one (``--attack-*``, about three minutes). ``--quick`` shortens
everything to a smoke test; options given explicitly still win. ``--no-edge``,
``--no-cluster`` and ``--no-attack`` skip a part; ``--edge-only`` runs nothing else,
``--only PART,...`` runs just the parts named (``grpc``, ``edge``, ``cluster``,
``attack``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.turnover import MARGIN_S, wait_for_clean_window
from devstack import StackConfig

__all__ = [
    "DEFAULT_OUTPUT",
    "PARTS",
    "POLICY",
    "AttackOptions",
    "BenchOptions",
    "ClusterOptions",
    "EdgeOptions",
    "parse_args",
]

POLICY = "default"
"""The bench policy's name (a fixed window of ``policy_limit`` per ``policy_window``)."""
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"
PARTS = ("grpc", "edge", "cluster", "attack")


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    """The end-to-end part, in whole seconds (wrk takes no fractions). ``rounds`` repeats
    the four scenarios in turn and keeps each one's fastest; ``limiter_timeout_ms`` is the
    APIs' ``LIMITER_TIMEOUT_MS``; ``rate_limit`` per ``time_window_s`` is the policy on
    both sides, so large that everything is allowed and yet counted."""

    duration_s: int = 8
    warmup_s: int = 2
    connections: int = 64
    threads: int = 2
    rounds: int = 1
    request_timeout_s: int = 5
    limiter_timeout_ms: int = StackConfig().limiter_timeout_ms
    rate_limit: int = 1_000_000_000
    time_window_s: int = 60


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """The cluster part: the limiter on a Redis Cluster of each size in ``primaries``
    (each primary with ``replicas`` replicas); load, durations and rounds are the gRPC
    part's."""

    primaries: tuple[int, ...] = (1, 3)
    replicas: int = 1


@dataclass(frozen=True, slots=True)
class AttackOptions:
    """The under-attack part, in whole seconds (wrk takes no fractions). ``rounds`` times,
    each side goes through a calm phase (``good_clients`` clients at ``good_rate``
    requests/s each) and an attack phase (the same, plus one wrk client with
    ``attacker_threads`` threads holding ``attacker_connections`` connections, each
    waiting ``attacker_pace_ms`` after an answer before its next request: at most
    ``attacker_connections * 1000 / attacker_pace_ms`` requests/s; 0 ms: closed loop);
    then, once per side, a capacity phase: the same clients next to a closed-loop attacker
    with ``capacity_connections`` connections (0: no capacity phase). Every phase is
    measured ``duration_s`` after ``warmup_s``. The policy is ``rate_limit`` per
    ``time_window_s`` per client IP on both sides; it must exceed what one good client
    sends in a window. ``pin_edge``: the edge (both Nginx, all their processes, and the
    attacker's wrk) on the last available CPU, everything else (the rest of both sides,
    Redis and the bench process with its well-behaved clients) on the others.
    ``avoid_turnover``: before each attack or capacity phase, wait until just after the
    attacker's window boundary when one would fall in its warm-up or measured time, so the
    allowance burst lands at the start of the (unmeasured) warm-up; a warm-up under 2 s
    may not absorb it all. ``warmup_s + duration_s`` plus a 0.7 s margin must then stay
    under ``time_window_s``."""

    duration_s: int = 8
    warmup_s: int = 2
    rounds: int = 3
    good_clients: int = 10
    good_rate: float = 10.0
    # 32 connections 1 ms apart offer about 23,000 requests/s here: five times what the
    # `limits` side can answer (4,000-5,000/s), the same offered load for both sides.
    attacker_connections: int = 32
    attacker_pace_ms: int = 1
    attacker_threads: int = 1
    # As many as the paced attacker's: with 4, the `limits` side answers a third less
    # than it can (its two replicas each wait on Redis with one or two requests in hand).
    capacity_connections: int = 32
    rate_limit: int = 1200
    time_window_s: int = 60
    idle_s: float = 3.0
    request_timeout_s: int = 5
    limiter_timeout_ms: int = StackConfig().limiter_timeout_ms
    pin_edge: bool = False
    avoid_turnover: bool = True


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """One bench run. Durations in seconds; ``None`` timeouts leave the limiter's own
    defaults (``REDIS_TIMEOUT_MS``, ``LIMITER_DECISION_TIMEOUT_MS``) in force. ``grpc``:
    whether the gRPC and redis-benchmark scenarios run; ``edge``: the end-to-end part's
    options, ``None`` to skip it."""

    duration_s: float = 5.0
    warmup_s: float = 1.0
    rounds: int = 2
    # 16 calls in flight already saturate one Python gRPC server on two cores; 4 batches
    # of 100 keep the limiter busy without queueing past its 100 ms decision budget.
    concurrency: int = 16
    batch_concurrency: int = 4
    batch_size: int = 100
    keys: int = 10_000
    call_timeout_s: float = 5.0
    policy_limit: int = 1_000_000_000
    policy_window: str = "60s"
    redis_timeout_ms: int | None = None
    decision_timeout_ms: int | None = None
    output: Path = DEFAULT_OUTPUT
    workdir: Path | None = None
    quick: bool = False
    grpc: bool = True
    edge: EdgeOptions | None = field(default_factory=EdgeOptions)
    cluster: ClusterOptions | None = field(default_factory=ClusterOptions)
    attack: AttackOptions | None = field(default_factory=AttackOptions)


QUICK = BenchOptions(
    duration_s=1.0,
    warmup_s=0.3,
    rounds=1,
    concurrency=8,
    batch_concurrency=2,
    keys=1_000,
    quick=True,
    edge=EdgeOptions(duration_s=1, warmup_s=1),
    # A small limit, so that even a slow machine's attacker exceeds it within the warm-up.
    # Two rounds and two paced connections (at most 2,000 requests/s, far under what
    # either side answers in a closed loop), so the smoke test sees rounds and pacing.
    attack=AttackOptions(
        duration_s=1,
        warmup_s=1,
        rounds=2,
        attacker_connections=2,
        capacity_connections=4,
        idle_s=1.0,
        good_rate=1.5,
        rate_limit=100,
    ),
)


N = TypeVar("N", int, float)


def _at_least(kind: Callable[[str], N], low: N) -> Callable[[str], N]:
    def parse(text: str) -> N:
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


_COUNT = _at_least(int, 1)
# Field name: how its text is read, what it means. The flag is the name without its unit
# suffix "_s" (``--duration``), prefixed with ``edge-`` for the end-to-end part; the help
# shows the field's default, so it cannot drift from it.
_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "duration_s": (_at_least(float, 0.1), "measured seconds per run"),
    "warmup_s": (_at_least(float, 0.0), "unmeasured seconds before each run"),
    "rounds": (_COUNT, "runs per scenario, the fastest kept"),
    "concurrency": (_COUNT, "ShouldAllow calls in flight"),
    "batch_concurrency": (_COUNT, "ShouldAllowBatch calls in flight"),
    "batch_size": (_COUNT, "decisions per batch call"),
    "keys": (_COUNT, "distinct keys"),
    "redis_timeout_ms": (_COUNT, "the limiter's REDIS_TIMEOUT_MS (default: its own)"),
    "decision_timeout_ms": (_COUNT, "its LIMITER_DECISION_TIMEOUT_MS (default: its own)"),
    "output": (Path, "where the results JSON goes"),
    "workdir": (Path, "keep the logs here (default: a temporary directory)"),
}
_EDGE_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "duration_s": (_COUNT, "measured seconds per scenario"),
    "warmup_s": (_at_least(int, 0), "unmeasured seconds before each scenario"),
    "connections": (_COUNT, "wrk connections"),
    "threads": (_COUNT, "wrk threads"),
    "rounds": (_COUNT, "rounds, the fastest kept"),
    "limiter_timeout_ms": (_COUNT, "the APIs' LIMITER_TIMEOUT_MS"),
}
_ATTACK_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "duration_s": (_COUNT, "measured seconds per phase"),
    "warmup_s": (_at_least(int, 0), "unmeasured seconds before each phase"),
    "rounds": (_COUNT, "calm and attack phases per side, alternating; latencies pooled"),
    "good_clients": (_at_least(int, 1), "well-behaved clients, each from its own address"),
    "good_rate": (_at_least(float, 0.1), "requests/s of each well-behaved client"),
    "attacker_connections": (_COUNT, "the paced attacker's wrk connections"),
    "attacker_pace_ms": (
        _at_least(int, 0),
        "ms each attacker connection waits after an answer (0: closed loop)",
    ),
    "attacker_threads": (_COUNT, "the attacker's wrk threads"),
    "capacity_connections": (
        _at_least(int, 0),
        "closed-loop attacker connections of the capacity phase (0: no such phase)",
    ),
    "rate_limit": (_COUNT, "requests per window allowed to each client IP"),
    "limiter_timeout_ms": (_COUNT, "the APIs' LIMITER_TIMEOUT_MS"),
}


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,3, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"every size must be >= 1, got {text!r}")
    return sizes


_CLUSTER_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "primaries": (_sizes, "cluster sizes to compare, in primaries"),
    "replicas": (_at_least(int, 0), "replicas per primary"),
}


def _parts(text: str) -> frozenset[str]:
    parts = frozenset(part.strip() for part in text.split(","))
    if unknown := parts - set(PARTS):
        raise argparse.ArgumentTypeError(f"unknown part(s) {sorted(unknown)}; parts: {PARTS}")
    return parts


def _add_flags(
    add: Callable[..., argparse.Action],
    flags: dict[str, tuple[Callable[[str], Any], str]],
    defaults: object,
    prefix: str = "",
) -> None:
    for name, (parse, meaning) in flags.items():
        bare = name.removesuffix("_s")
        flag = "--" + (prefix + bare).replace("_", "-")
        default = getattr(defaults, name)
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        shown = "" if default is None else f" ({default})"
        add(flag, dest=prefix + name, metavar=bare.upper(), type=parse, help=meaning + shown)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput and latency of the limiter on real Redis, next to a bare "
        "gRPC echo server and redis-benchmark running the same Lua script; then our stack "
        "end to end through Nginx next to FastAPI apps limiting in-process with `limits`.",
    )
    _add_flags(parser.add_argument, _FLAGS, BenchOptions())
    parser.add_argument("--quick", action="store_true", help="a short smoke-test run")
    edge = parser.add_argument_group("end to end through Nginx (wrk)")
    which = edge.add_mutually_exclusive_group()
    which.add_argument("--no-edge", action="store_true", help="skip the end-to-end part")
    which.add_argument("--edge-only", action="store_true", help="run only the end-to-end part")
    _add_flags(edge.add_argument, _EDGE_FLAGS, EdgeOptions(), prefix="edge_")
    cluster = parser.add_argument_group("the limiter on a Redis Cluster of 1 and 3 primaries")
    cluster.add_argument("--no-cluster", action="store_true", help="skip the cluster part")
    _add_flags(cluster.add_argument, _CLUSTER_FLAGS, ClusterOptions(), prefix="cluster_")
    attack = parser.add_argument_group("under attack, end to end through Nginx")
    attack.add_argument("--no-attack", action="store_true", help="skip the under-attack part")
    _add_flags(attack.add_argument, _ATTACK_FLAGS, AttackOptions(), prefix="attack_")
    attack.add_argument(
        "--attack-pin-edge",
        action="store_true",
        default=None,
        help="Nginx and the attacker on the last CPU, everything else on the others",
    )
    attack.add_argument(
        "--attack-avoid-turnover",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start attack and capacity phases just after the attacker's window boundary "
        "when one would fall in them (on by default)",
    )
    parser.add_argument(
        "--only", type=_parts, metavar="PART,...", help=f"run only these parts of {PARTS}"
    )
    return parser


def _turnover_span(attack: AttackOptions) -> float:
    """The seconds a phase must keep clear of window boundaries."""
    return attack.warmup_s + attack.duration_s + MARGIN_S


def _pop_group(given: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: given.pop(key) for key in list(given) if key.startswith(prefix)}


def parse_args(argv: Sequence[str] | None = None) -> BenchOptions:
    """Options from ``argv``; exits with status 2 and a usage message when they are invalid."""
    parser = _parser()
    args: dict[str, Any] = vars(parser.parse_args(argv))
    no_edge, edge_only = args.pop("no_edge"), args.pop("edge_only")
    skipped = {part for part in PARTS if args.pop(f"no_{part}", False)}
    only: frozenset[str] | None = args.pop("only")
    if edge_only:
        only = frozenset({"edge"})
    if no_edge:
        skipped.add("edge")
    wanted = {part for part in (only or PARTS) if part not in skipped}
    base = QUICK if args.pop("quick") else BenchOptions()
    given = {key: value for key, value in args.items() if value is not None}
    edge_given = _pop_group(given, "edge_")
    cluster_given = _pop_group(given, "cluster_")
    attack_given = _pop_group(given, "attack_")
    edge = dataclasses.replace(base.edge or EdgeOptions(), **edge_given)
    cluster = dataclasses.replace(base.cluster or ClusterOptions(), **cluster_given)
    attack = dataclasses.replace(base.attack or AttackOptions(), **attack_given)
    options = dataclasses.replace(
        base,
        **given,
        grpc="grpc" in wanted,
        edge=edge if "edge" in wanted else None,
        cluster=cluster if "cluster" in wanted else None,
        attack=attack if "attack" in wanted else None,
    )
    if edge.threads > edge.connections:
        parser.error("--edge-threads must not exceed --edge-connections")
    if attack.attacker_threads > attack.attacker_connections:
        parser.error("--attack-attacker-threads must not exceed --attack-attacker-connections")
    if 0 < attack.capacity_connections < attack.attacker_threads:
        parser.error(
            "--attack-capacity-connections must be 0 or at least --attack-attacker-threads"
        )
    if options.attack is not None and attack.good_rate * attack.time_window_s >= attack.rate_limit:
        parser.error(
            "--attack-rate-limit must exceed what one well-behaved client sends in a "
            f"{attack.time_window_s} s window ({attack.good_rate * attack.time_window_s:g})"
        )
    if options.attack is not None and attack.pin_edge and len(os.sched_getaffinity(0)) < 2:
        parser.error(
            "--attack-pin-edge needs at least 2 CPUs available to this process, got "
            f"{sorted(os.sched_getaffinity(0))}"
        )
    if options.attack is not None and attack.avoid_turnover:
        try:
            wait_for_clean_window(0.0, attack.time_window_s, _turnover_span(attack))
        except ValueError as error:
            parser.error(f"--attack-avoid-turnover: {error} (--no-attack-avoid-turnover)")
    if options.keys < options.batch_size:
        parser.error("--keys must be at least --batch-size")
    if options.batch_size > 1000:
        parser.error("--batch-size must be at most 1000 (the service's limit)")
    return options
