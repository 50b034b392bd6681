"""wrk's report through ``wrk_report.lua``: the script and the one parser of its output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["WRK_SCRIPT", "parse_wrk_report"]

WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")
"""wrk script counting statuses and 200s without RateLimit headers (prints WRK_RESULT json);
with ``WRK_PACE_MS`` > 0 in its environment, each connection waits that long between
requests."""
_MARK = "WRK_RESULT "


def parse_wrk_report(output: str) -> dict[str, Any]:
    """The script's report in wrk's ``output``: ``requests``, ``duration_us``, ``statuses``
    (status text: count), ``missing_ratelimit`` (200s without a ``RateLimit`` header),
    ``pace_ms`` (the ``WRK_PACE_MS`` it ran with, 0: closed loop),
    socket errors (``connect``, ``read``, ``write``, ``timeout``), ``p50_us`` ... ``max_us``.
    Raises ``ValueError`` when the line is missing or malformed."""
    lines = [line for line in output.splitlines() if line.startswith(_MARK)]
    if not lines:
        raise ValueError(f"wrk printed no {_MARK.strip()} line:\n{output}")
    report: dict[str, Any] = json.loads(lines[-1][len(_MARK) :])
    return report
