"""What one load-generator process counted, and how counts from several are combined.

Latencies are integer microseconds, one per successful call that completed inside the
measured window. Percentiles are nearest-rank over every sample (no histogram rounding).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Tally", "percentile_ms"]


@dataclass
class Tally:
    """Counts from one measured window.

    ``calls`` are successful RPCs that finished in the window, ``decisions`` the answers
    they carried (``calls`` times the batch size for ``ShouldAllowBatch``); ``all_calls``
    also counts those of the warm-up and those finishing after the window. ``errors`` maps
    a gRPC status name to how many calls ended with it, warm-up included; ``reasons`` maps
    a ``ratelimit.v1.Reason`` name to how many decisions in the window gave it.
    ``rate_calls``/``rate_decisions`` are per second over ``window_s``; after ``merge``
    they are the sum of each process's own rate. ``cpu_s`` maps a process (a pid as text,
    ``"self"`` for the load generator, ``"machine"`` for all cores) to the CPU seconds it
    used in the window; ``merge`` adds them up.
    """

    window_s: float
    calls: int = 0
    decisions: int = 0
    all_calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    latencies_us: list[int] = field(default_factory=list)
    rate_calls: float = 0.0
    rate_decisions: float = 0.0
    cpu_s: Counter[str] = field(default_factory=Counter)

    def close(self) -> Tally:
        """Fix the rates from the counts and the window; returns ``self``."""
        self.rate_calls = self.calls / self.window_s if self.window_s > 0 else 0.0
        self.rate_decisions = self.decisions / self.window_s if self.window_s > 0 else 0.0
        return self

    @classmethod
    def merge(cls, parts: list[Tally]) -> Tally:
        """One tally for processes that measured the same window side by side.

        Rates add up; the window is the longest one. An empty list gives an empty tally.
        """
        merged = cls(window_s=max((p.window_s for p in parts), default=0.0))
        for part in parts:
            merged.calls += part.calls
            merged.decisions += part.decisions
            merged.all_calls += part.all_calls
            merged.errors.update(part.errors)
            merged.reasons.update(part.reasons)
            merged.latencies_us.extend(part.latencies_us)
            merged.rate_calls += part.rate_calls
            merged.rate_decisions += part.rate_decisions
            merged.cpu_s.update(part.cpu_s)
        return merged

    def to_json(self, *, samples: bool) -> dict[str, Any]:
        """A JSON-ready summary; with ``samples`` also every latency (for ``from_json``)."""
        ordered = sorted(self.latencies_us)
        out: dict[str, Any] = {
            "window_s": round(self.window_s, 4),
            "calls": self.calls,
            "decisions": self.decisions,
            "all_calls": self.all_calls,
            "calls_per_s": round(self.rate_calls, 1),
            "decisions_per_s": round(self.rate_decisions, 1),
            "error_count": sum(self.errors.values()),
            "errors": dict(sorted(self.errors.items())),
            "reasons": dict(sorted(self.reasons.items())),
            "cpu_s": {key: round(value, 3) for key, value in sorted(self.cpu_s.items())},
            "latency_ms": {
                "p50": percentile_ms(ordered, 50),
                "p90": percentile_ms(ordered, 90),
                "p99": percentile_ms(ordered, 99),
                "max": percentile_ms(ordered, 100),
                "mean": round(sum(ordered) / len(ordered) / 1000, 3) if ordered else None,
            },
        }
        if samples:
            out["latencies_us"] = self.latencies_us
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        """The tally ``to_json(samples=True)`` wrote. Raises ``KeyError`` if a field is missing."""
        return cls(
            window_s=float(data["window_s"]),
            calls=int(data["calls"]),
            decisions=int(data["decisions"]),
            all_calls=int(data["all_calls"]),
            errors=Counter({str(k): int(v) for k, v in data["errors"].items()}),
            reasons=Counter({str(k): int(v) for k, v in data["reasons"].items()}),
            latencies_us=[int(v) for v in data["latencies_us"]],
            rate_calls=float(data["calls_per_s"]),
            rate_decisions=float(data["decisions_per_s"]),
            cpu_s=Counter({str(k): float(v) for k, v in data["cpu_s"].items()}),
        )


def percentile_ms(ordered_us: list[int], q: float) -> float | None:
    """Nearest-rank ``q``-th percentile (0 < q <= 100) of sorted microseconds, in ms.

    ``None`` when there are no samples.
    """
    if not ordered_us:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered_us)))
    return round(ordered_us[rank - 1] / 1000, 3)
