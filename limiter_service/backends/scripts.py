"""The one Lua script that decides hits on Redis, put together from ``lua/*.lua`` next to
this module: each algorithm's function (``fixed_window.lua``, ``sliding_window.lua``,
``token_bucket.lua``) and the driver that runs them in order (``decide.lua``), so a batch of
any mix of algorithms, all-or-nothing groups included, is one atomic EVALSHA."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from limiter_service.decision import Algorithm

__all__ = ["ALGORITHM_CODES", "ARGS_PER_HIT", "RESULT_WIDTH", "Script", "load_script"]

RESULT_WIDTH = 4
"""Integers the script returns per hit: allowed, remaining, reset_after_us, retry_after_us."""
ARGS_PER_HIT = 6
"""ARGV entries per hit: algorithm code, the policy's two numbers, cost, flags, group."""
ALGORITHM_CODES = {
    Algorithm.FIXED_WINDOW: 1,
    Algorithm.SLIDING_WINDOW: 2,
    Algorithm.TOKEN_BUCKET: 3,
}
"""The script's number for each algorithm (its first ARGV entry per hit)."""
DRY_RUN, SHADOW, PROBE = 1, 2, 4
"""Bits of a hit's flags: consume nothing; a denial does not block the group; decide the
group but write nothing (the cluster's first round for a group spanning slots)."""
_PARTS = (*(algorithm.value for algorithm in Algorithm), "decide")


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str


def load_script() -> Script:
    """The script with its SHA1 (the EVALSHA name)."""
    folder = resources.files("limiter_service.backends") / "lua"
    source = "".join((folder / f"{part}.lua").read_text(encoding="utf-8") for part in _PARTS)
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return Script(source, sha)
