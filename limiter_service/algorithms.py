"""The three algorithms in Python, step for step the same arithmetic as the Lua scripts.

The memory backend runs these; the Redis backend runs ``backends/lua/*.lua``. Both must give
identical verdicts on identical inputs (the contract tests check it), so numbers that the Lua
side handles as IEEE doubles are handled as ``float`` here, in the same order of operations,
and integer parts are taken with ``fmod`` exactly as in Lua.

Each function takes the stored fields of one limit (``None`` when absent), the current time
and the policy; it returns the verdict, the fields to store (``None``: write nothing) and how
long the stored fields must live, in microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from limiter_service.decision import Algorithm, Policy, Verdict

Fields = Mapping[str, float]
Step = tuple[Verdict, dict[str, float] | None, int]


def _window_start(now: float, window: float) -> float:
    return now - math.fmod(now, window)


def fixed_window(fields: Fields | None, now: int, policy: Policy, cost: int, dry: bool) -> Step:
    """Windows aligned to the clock; a hit fits when the window's count plus cost <= limit."""
    limit, window = float(policy.limit), float(policy.window_us)
    start = _window_start(float(now), window)
    finish = start + window
    n = fields["n"] if fields and fields.get("s") == start else 0.0
    left = finish - now
    if n + cost <= limit:
        if dry:
            return Verdict(True, int(limit - n - cost), int(left), 0), None, 0
        n += cost
        return Verdict(True, int(limit - n), int(left), 0), {"s": start, "n": n}, int(left)
    reset = int(left) if n > 0 else 0
    return Verdict(False, int(max(0.0, limit - n)), reset, int(left)), None, 0


def sliding_window(fields: Fields | None, now: int, policy: Policy, cost: int, dry: bool) -> Step:
    """Two-window weighted counter: previous count * unexpired share of it + current count."""
    limit, window = float(policy.limit), float(policy.window_us)
    start = _window_start(float(now), window)
    elapsed = now - start
    cur = prev = 0.0
    if fields and fields.get("s") == start:
        cur, prev = fields["c"], fields["p"]
    elif fields and fields.get("s") == start - window:
        prev = fields["c"]
    estimate = prev * (window - elapsed) / window + cur
    full_reset = 2 * window - elapsed
    if estimate + cost <= limit:
        remaining = math.floor(limit - (estimate + cost))
        verdict = Verdict(True, remaining, int(full_reset), 0)
        if dry:
            return verdict, None, 0
        return verdict, {"s": start, "c": cur + cost, "p": prev}, int(full_reset)
    remaining = max(0, math.floor(limit - estimate))
    if cur > 0:
        reset = full_reset
    elif prev > 0:
        reset = window - elapsed
    else:
        reset = 0.0
    if cur + cost <= limit:
        retry = max(1, math.ceil(window - elapsed - (limit - cur - cost) * window / prev))
    elif cur > 0:
        retry = int(window - elapsed) + max(0, math.ceil(window - (limit - cost) * window / cur))
    else:
        # A cost above the limit never fits: until both windows' counts are gone.
        retry = int(full_reset)
    return Verdict(False, remaining, int(reset), retry), None, 0


def _floor_div(a: float, b: float) -> int:
    if a <= 0:
        return 0
    return int((a - math.fmod(a, b)) / b)


def token_bucket(fields: Fields | None, now: int, policy: Policy, cost: int, dry: bool) -> Step:
    """GCRA: a hit fits when the theoretical arrival time stays within burst * interval."""
    interval_i, tolerance_i = policy.script_params()
    interval, tolerance = float(interval_i), float(tolerance_i)
    tat = fields["t"] if fields and "t" in fields else float(now)
    tat = max(tat, float(now))
    new_tat = tat + interval * cost
    if new_tat - now <= tolerance:
        remaining = _floor_div(tolerance - (new_tat - now), interval)
        verdict = Verdict(True, remaining, int(new_tat - now), 0)
        if dry:
            return verdict, None, 0
        return verdict, {"t": new_tat}, int(new_tat - now)
    remaining = _floor_div(tolerance - (tat - now), interval)
    return Verdict(False, remaining, int(tat - now), int(new_tat - tolerance - now)), None, 0


STEPS: dict[Algorithm, Callable[[Fields | None, int, Policy, int, bool], Step]] = {
    Algorithm.FIXED_WINDOW: fixed_window,
    Algorithm.SLIDING_WINDOW: sliding_window,
    Algorithm.TOKEN_BUCKET: token_bucket,
}
