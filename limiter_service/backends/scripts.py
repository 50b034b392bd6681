"""The Lua scripts, one per algorithm, loaded from ``lua/*.lua`` next to this module."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from limiter_service.decision import Algorithm

RESULT_WIDTH = 4
"""Integers each script returns per item: allowed, remaining, reset_after_us, retry_after_us."""


@dataclass(frozen=True, slots=True)
class Script:
    algorithm: Algorithm
    source: str
    sha: str


def load_scripts() -> dict[Algorithm, Script]:
    """Every algorithm's script with its SHA1 (the EVALSHA name)."""
    scripts: dict[Algorithm, Script] = {}
    folder = resources.files("limiter_service.backends") / "lua"
    for algorithm in Algorithm:
        source = (folder / f"{algorithm.value}.lua").read_text(encoding="utf-8")
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        scripts[algorithm] = Script(algorithm, source, sha)
    return scripts
