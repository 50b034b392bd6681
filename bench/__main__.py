"""``python -m bench`` (``make bench``): run every scenario, print the tables, write JSON.

For the gRPC and Redis scenarios, then for the end-to-end section (``bench.edge``), prints
a plain table, warnings about anything that makes a number untrustworthy (errors,
fail-open answers, a busy machine), a Markdown table for the README, and writes the raw
numbers to ``--output`` (``bench/results.json``). Exit status: 0 when every scenario
measured something without errors, 1 when one had errors (end to end: socket errors or
non-2xx answers) or no throughput (the tables
and JSON are still written), 2 for bad options, 3 when a scenario could not run at all
(the servers' logs are kept and their directory printed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis

from bench.edge_report import EdgeReport, markdown, plain
from bench.options import parse_args
from bench.report import BenchReport, Kind, markdown_table, plain_table
from bench.runner import run_bench
from devstack import DevstackError

_FAIL_OPEN_WARNING = 0.001
_BUSY_WARNING = 0.25
_OTHERS_WARNING = 0.25


def caveats(report: BenchReport) -> list[str]:
    """Why some numbers of ``report`` may not mean what they seem; empty when clean."""
    notes: list[str] = []
    for row in report.scenarios:
        if row.error_count:
            notes.append(f"{row.name}: {row.error_count} failed calls {row.errors}")
        if row.decisions_per_s <= 0:
            notes.append(f"{row.name}: no successful call in the measured window")
        if row.kind is not Kind.REDIS_BENCHMARK and row.fail_open_share > _FAIL_OPEN_WARNING:
            notes.append(
                f"{row.name}: {row.fail_open_share:.1%} of decisions came from the failure "
                "mode (no answer from Redis within the limiter's timeouts), so its rate is "
                "not a real result"
            )
    noisy = [
        f"{row.name} ({row.others_cores})"
        for row in report.scenarios
        if row.others_cores is not None and row.others_cores > _OTHERS_WARNING
    ]
    if noisy:
        notes.append(f"other processes used CPU (cores) during: {', '.join(noisy)}")
    busy = report.machine.get("cpu_busy_before_start")
    if busy is not None and busy > _BUSY_WARNING:
        notes.append(
            f"other processes kept {busy:.0%} of the CPU busy before the bench started: "
            "numbers are noisy"
        )
    return notes


def _print_edge(edge: EdgeReport) -> None:
    s, notes = edge.settings, edge.notes
    print(
        f"\nEnd to end through Nginx: wrk -t{s['threads']} "
        f"-c{s['connections']}, best of {s['rounds']} x {s['duration_s']} s after "
        f"{s['warmup_s']} s warm-up; {s['policy']}; LIMITER_TIMEOUT_MS "
        f"{s['limiter_timeout_ms']}; baseline: {notes['baseline']}.\n"
        f"{notes['cpu_count']} cores: {notes['shared_cores']}; {notes['client']}.\n"
    )
    print(plain(edge.results_grid()))
    ratios = edge.ratios()
    print(
        f"\nours / baseline: /limited_endpoint {_times(ratios['limited_rps'])} requests/s, "
        f"{_times(ratios['limited_decided'])} real decisions/s; "
        f"/health {_times(ratios['health_rps'])} requests/s"
    )
    for row in edge.rows:
        if row.redis_evalsha:
            print(f"  {row.name}: {row.requests / row.redis_evalsha:.2f} requests per EVALSHA")
    print()
    print(plain(edge.cpu_grid()))
    for note in edge.caveats():
        print(f"WARNING: {note}")
    print("\nMarkdown:\n")
    print(markdown(edge.results_grid()))
    print()
    print(markdown(edge.cpu_grid()))
    print(
        f"\n{notes['cpu_count']} cores shared by everything; wrk -t{s['threads']} "
        f"-c{s['connections']}, {s['duration_s']} s; ours / baseline on /limited_endpoint: "
        f"{_times(ratios['limited_rps'])} requests/s. CPU is microseconds per completed "
        "request, per role; busy cores counts every process on the machine."
    )


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f} x"


def _print(report: BenchReport) -> None:
    if report.scenarios:
        _print_grpc(report)
    if report.edge is not None:
        _print_edge(report.edge)


def _print_grpc(report: BenchReport) -> None:
    machine, settings = report.machine, report.settings
    print(
        f"\n{machine['cpu_count']} cores ({machine['cpu_model']}), concurrency "
        f"{settings['concurrency']} (batches: {settings['batch_concurrency']}) in "
        f"{settings['load_procs']} load process(es), "
        f"best of {settings['rounds']} x {settings['duration_s']} s measured after "
        f"{settings['warmup_s']} s warm-up, "
        f"{settings['keys']} keys, batch {settings['batch_size']}, redis {machine['redis_server']}"
    )
    print(plain_table(report))
    for row in report.scenarios:
        if row.cpu_vs_echo is not None:
            print(f"  {row.name}: {row.cpu_vs_echo:.2f} x echo's decisions per server CPU second")
    for row in report.scenarios:
        per_evalsha = row.raw.get("decisions_per_evalsha")
        if per_evalsha is not None:
            print(
                f"  {row.name}: {per_evalsha} decisions per EVALSHA round trip, "
                f"{row.raw['redis_connections_opened']} Redis connections opened"
            )
    for note in caveats(report):
        print(f"WARNING: {note}")
    print("\nMarkdown:\n")
    print(markdown_table(report))
    print(
        f"\n{machine['cpu_count']} cores, concurrency {settings['concurrency']} "
        f"(batches: {settings['batch_concurrency']}), "
        f"best of {settings['rounds']} x {settings['duration_s']} s per scenario; ratios are "
        "decisions/s over the baseline's; CPU is per decision; others' CPU is what other "
        "processes used meanwhile, in cores."
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        report = run_bench(options, workdir)
    except (
        RuntimeError,  # BenchError, or redis-benchmark failing
        ValueError,  # output of the load generator or redis-benchmark not understood
        DevstackError,
        subprocess.TimeoutExpired,
        OSError,
        redis.RedisError,
    ) as exc:
        print(f"bench failed: {exc}\nserver logs: {workdir / 'logs'}", file=sys.stderr)
        return 3
    report.write(options.output)
    _print(report)
    print(f"\nwrote {options.output}")
    if options.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = any(row.error_count or row.decisions_per_s <= 0 for row in report.scenarios)
    failed = failed or (report.edge is not None and report.edge.failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
