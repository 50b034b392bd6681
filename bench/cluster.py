"""The cluster part: the limiter on a Redis Cluster of 1 primary, then of 3, same load.

For each size in ``ClusterOptions.primaries`` a ``devstack.RedisCluster`` starts (every
primary with ``replicas`` replicas), then one limiter process (``LIMITER_BACKEND=cluster``,
``LIMITER_WORKERS=1``, so only Redis's shape changes) takes the gRPC part's load generator:
``ShouldAllow`` and ``ShouldAllowBatch``, ``rounds`` times each, the fastest kept. Each row
also says where the CPU went, per primary (from ``/proc``, the same clock ``INFO cpu``
reads), and how the ``EVALSHA`` calls spread over the primaries (``INFO commandstats``,
reset before each round). On a small machine the limiter process is the bottleneck long
before one Redis primary is, so more primaries spread Redis's work without raising the
rate; ``limiter_cores`` near 1 says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.cpu import BENCH, OTHERS, CpuWindow, cores, us_per, with_descendants
from bench.loadgen import Method, Tally, run_load
from bench.options import BenchOptions, ClusterOptions
from bench.redis_baseline import evalsha_calls
from bench.report import Kind, ScenarioResult
from bench.scenarios import limiter_env, policies_yaml
from bench.table import Grid, number, section, times
from devstack import ProcessGroup, RedisCluster, free_port
from devstack.limiter import start_limiter

__all__ = ["ClusterReport", "run_cluster"]

LIMITER = "limiter"
REPLICAS = "replicas"
_HOST = "127.0.0.1"
_READY_TIMEOUT_S = 30.0
_HEADER = (
    "scenario|decisions/s|vs 1 primary|p50 ms|p99 ms|errors|fail-open|limiter CPU us/dec|"
    "limiter cores|Redis CPU us/dec|cores per primary|EVALSHA per primary"
)


def _primary(address: tuple[str, int]) -> str:
    return f"primary {address[0]}:{address[1]}"


def _measure(
    options: BenchOptions,
    cluster: RedisCluster,
    clients: dict[tuple[str, int], redis.Redis],
    limiter: tuple[int, str],
    method: Method,
) -> ScenarioResult:
    pid, target = limiter
    primaries = sorted(clients)
    replicas = [n.process.pid for n in cluster.nodes if n.address not in clients]
    roles = {LIMITER: with_descendants(pid), REPLICAS: replicas}
    roles.update({_primary(a): [cluster.node_for(a).process.pid] for a in primaries})
    rounds: list[tuple[Tally, list[int]]] = []
    for _ in range(options.rounds):
        for client in clients.values():
            client.config_resetstat()
        tally = run_load(target, method, options, CpuWindow(roles))
        rounds.append((tally, [evalsha_calls(clients[a]) for a in primaries]))
    best, evalsha = max(rounds, key=lambda pair: pair[0].decisions)
    window, cpu = best.window_s, best.cpu_s
    redis_s = sum(cpu.get(_primary(a), 0.0) for a in primaries) + cpu.get(REPLICAS, 0.0)
    size = len(primaries)
    label = f"cluster, {size} {'primary' if size == 1 else 'primaries'}"
    raw: dict[str, Any] = {
        **best.to_json(),
        "primaries": size,
        "replicas": len(replicas),
        "limiter_cores": cores(cpu.get(LIMITER), window),
        "nodes": [
            {
                "address": f"{a[0]}:{a[1]}",
                "cores": cores(cpu.get(_primary(a)), window),
                "cpu_us_per_decision": us_per(cpu.get(_primary(a)), best.decisions),
                "evalsha": calls,
            }
            for a, calls in zip(primaries, evalsha, strict=True)
        ],
        "replica_cores": cores(cpu.get(REPLICAS), window),
        "decisions_per_evalsha": round(best.all_calls * best.batch_size / sum(evalsha), 2)
        if sum(evalsha)
        else None,
        "rounds": [
            {
                "decisions_per_s": round(t.decisions / t.window_s, 1),
                "errors": sum(t.errors.values()),
            }
            for t, _ in rounds
        ],
    }
    errors: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for tally, _ in rounds:
        for name, n in tally.errors.items():
            errors[name] = errors.get(name, 0) + n
        for name, n in tally.reasons.items():
            reasons[name] = reasons.get(name, 0) + n
    return ScenarioResult(
        name=f"{label} {method.value}" + (f" x{best.batch_size}" if best.batch_size > 1 else ""),
        kind=Kind.LIMITER,
        batch_size=best.batch_size,
        calls_per_s=round(best.calls / window, 1),
        decisions_per_s=round(best.decisions / window, 1),
        p50_ms=best.percentile_ms(50),
        p99_ms=best.percentile_ms(99),
        errors=errors,
        reasons=reasons,
        server_cpu_us=us_per(cpu.get(LIMITER), best.decisions),
        redis_cpu_us=us_per(redis_s, best.decisions),
        loadgen_cpu_us=us_per(cpu.get(BENCH), best.decisions),
        others_cores=cores(cpu.get(OTHERS), window),
        raw=raw,
    )


@dataclass
class ClusterReport:
    """Every size's rows (``ScenarioResult``; per-node figures in ``raw``), in run order."""

    settings: dict[str, Any]
    rows: list[ScenarioResult]

    def vs_smallest(self, row: ScenarioResult) -> float | None:
        """Decisions/s over those of the same method on the smallest cluster."""
        same = [r for r in self.rows if r.batch_size == row.batch_size]
        smallest = min(same, key=lambda r: int(r.raw["primaries"]))
        if smallest.decisions_per_s <= 0:
            return None
        return round(row.decisions_per_s / smallest.decisions_per_s, 3)

    @property
    def failed(self) -> bool:
        return any(row.error_count or row.decisions_per_s <= 0 for row in self.rows)

    def caveats(self) -> list[str]:
        notes: list[str] = []
        for row in self.rows:
            if row.error_count:
                notes.append(f"{row.name}: {row.error_count} failed calls {row.errors}")
            if row.fail_open_share > 0.001:
                notes.append(f"{row.name}: {row.fail_open_share:.1%} fail-open decisions")
            if (row.others_cores or 0) > 0.25:
                notes.append(f"{row.name}: other processes used {row.others_cores} cores meanwhile")
        return notes

    def grid(self) -> Grid:
        lines = [_HEADER.split("|")]
        for row in self.rows:
            nodes = row.raw["nodes"]
            lines.append(
                [
                    row.name,
                    number(row.decisions_per_s),
                    times(self.vs_smallest(row)),
                    number(row.p50_ms, 2),
                    number(row.p99_ms, 2),
                    str(row.error_count),
                    f"{row.fail_open_share:.1%}",
                    number(row.server_cpu_us, 1),
                    number(row.raw["limiter_cores"], 2),
                    number(row.redis_cpu_us, 1),
                    " / ".join(number(node["cores"], 2) for node in nodes),
                    " / ".join(str(node["evalsha"]) for node in nodes),
                ]
            )
        return lines

    def section(self) -> str:
        s = self.settings
        title = (
            f"\nRedis Cluster: one limiter process (LIMITER_WORKERS=1) on clusters of "
            f"{' and '.join(map(str, s['primaries']))} primaries, {s['replicas']} replica(s) "
            f"each; the gRPC part's load (concurrency {s['concurrency']}, batches "
            f"{s['batch_concurrency']} x {s['batch_size']}), best of {s['rounds']} x "
            f"{s['duration_s']} s."
        )
        notes = [
            f"  {row.name}: {row.raw['decisions_per_evalsha']} decisions per EVALSHA; "
            f"replicas {number(row.raw['replica_cores'], 2)} cores"
            for row in self.rows
        ]
        footnote = (
            "\nRedis CPU is every node's (primaries and replicas) per decision; cores per "
            "primary and EVALSHA per primary list the primaries in address order; limiter "
            "cores near 1.0 mean the one limiter process is the bottleneck."
        )
        return section(title, [self.grid()], notes, self.caveats(), footnote)

    def to_json(self) -> dict[str, Any]:
        rows = [
            {
                **row.raw,
                "name": row.name,
                "decisions_per_s": row.decisions_per_s,
                "calls_per_s": row.calls_per_s,
                "p50_ms": row.p50_ms,
                "p99_ms": row.p99_ms,
                "error_count": row.error_count,
                "reasons": row.reasons,
                "limiter_cpu_us": row.server_cpu_us,
                "redis_cpu_us": row.redis_cpu_us,
                "vs_smallest": self.vs_smallest(row),
            }
            for row in self.rows
        ]
        return {"settings": self.settings, "scenarios": rows}


def run_cluster(
    options: BenchOptions, cluster_options: ClusterOptions, workdir: Path
) -> ClusterReport:
    """Measure the limiter on each cluster size in turn (files and logs under
    ``workdir``); every process is stopped before the next size starts and before
    returning or raising (``devstack.DevstackError`` when one does not come up)."""
    policies = workdir / "policies.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    policies.write_text(policies_yaml(options))
    rows: list[ScenarioResult] = []
    for size in cluster_options.primaries:
        with (
            RedisCluster(
                workdir / f"cluster-{size}",
                primaries=size,
                replicas=cluster_options.replicas,
                startup_timeout=_READY_TIMEOUT_S,
            ) as cluster,
            ProcessGroup(workdir / f"cluster-{size}" / "limiter-logs") as group,
        ):
            env = {
                **limiter_env(options, policies),
                "LIMITER_BACKEND": "cluster",
                "REDIS_CLUSTER_NODES": cluster.nodes_env(),
                "REDIS_PASSWORD": cluster.password,
                "LIMITER_WORKERS": "1",
            }
            node = start_limiter(
                group,
                f"limiter-cluster-{size}",
                free_port(_HOST),
                env,
                host=_HOST,
                timeout=_READY_TIMEOUT_S,
            )
            clients = {address: cluster.client(address) for address in cluster.primaries()}
            try:
                for method in (Method.SHOULD_ALLOW, Method.SHOULD_ALLOW_BATCH):
                    target = (node.process.pid, node.address)
                    rows.append(_measure(options, cluster, clients, target, method))
            finally:
                for client in clients.values():
                    client.close()
            node.process.terminate()
    settings = {
        "primaries": list(cluster_options.primaries),
        "replicas": cluster_options.replicas,
        "concurrency": options.concurrency,
        "batch_concurrency": options.batch_concurrency,
        "batch_size": options.batch_size,
        "rounds": options.rounds,
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
    }
    return ClusterReport(settings, rows)
