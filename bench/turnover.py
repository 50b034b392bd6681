"""When the attacker's fixed window turns over: both sides' windows align to the Unix
epoch (a window starts at ``floor(now / window_s) * window_s``), so a boundary falls at
every multiple of ``window_s`` in wall-clock time. When one falls inside a measured attack
or capacity phase, the attacker's fresh allowance goes through the whole allowed path at
the flood's rate and that phase's good-client latency jumps; whether it happens would
depend on when the run started. Waiting for the boundary first moves the turnover (and
the allowance burst) to the start of the phase's unmeasured warm-up."""

from __future__ import annotations

import math

__all__ = ["AFTER_BOUNDARY_S", "MARGIN_S", "wait_for_clean_window"]

AFTER_BOUNDARY_S = 0.2
"""How long after a boundary a phase starts, so both sides' clocks agree it has passed."""
MARGIN_S = 0.5
"""Added to a phase's warm-up and measured duration: the bench's own overhead around them
(starting wrk and the clients, reading CPU and Redis counters)."""


def wait_for_clean_window(now: float, window_s: float, span_s: float) -> float:
    """Seconds to wait from ``now`` (Unix time) so that no window boundary (a multiple of
    ``window_s``) falls in the next ``span_s`` seconds: 0 when none falls in ``(now, now +
    span_s]``, else until ``AFTER_BOUNDARY_S`` past that boundary.

    Raises ``ValueError`` when ``window_s`` is not positive or no wait can avoid a
    boundary: ``span_s + AFTER_BOUNDARY_S >= window_s``."""
    if window_s <= 0:
        raise ValueError(f"the window must be positive, got {window_s} s")
    if span_s + AFTER_BOUNDARY_S >= window_s:
        raise ValueError(
            f"a {span_s:g} s span (+{AFTER_BOUNDARY_S:g} s) cannot avoid the boundaries of a "
            f"{window_s:g} s window"
        )
    boundary = (math.floor(now / window_s) + 1) * window_s
    if boundary > now + span_s:
        return 0.0
    return boundary - now + AFTER_BOUNDARY_S
