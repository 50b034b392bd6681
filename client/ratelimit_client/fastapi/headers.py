"""The ``RateLimit-Policy`` and ``RateLimit`` fields of draft-ietf-httpapi-ratelimit-headers.

Both are Structured Field Lists (RFC 8941) of one item per policy, the item being the
policy name as an sf-string::

    RateLimit-Policy: "default";q=10;w=60     quota q units per window w seconds
    RateLimit: "default";r=9;t=42             r units remain; t seconds until reset

``q`` and ``w`` are the limiter's: ``ShouldAllowResponse.limit`` and ``.window`` (whole
seconds, rounded up). ``w`` is optional in the draft and left out when the window is
0 (a fake or a failure mode reports none). The functions here are
pure; ``HeaderCache`` keeps the encoded per-policy parts so the hot path only formats two
integers.

``X-Accel-Expires`` (``edge_expires_s``) is for the edge proxy alone: how long Nginx may
answer the same denial itself (README "Deny cache"); Nginx removes it from what clients see.
"""

from __future__ import annotations

from ratelimit_client.decision import Decision, Reason

__all__ = [
    "RATELIMIT",
    "RATELIMIT_POLICY",
    "RETRY_AFTER",
    "X_ACCEL_EXPIRES",
    "HeaderCache",
    "edge_expires_s",
    "policy_field",
    "sf_string",
]

RATELIMIT_POLICY = "RateLimit-Policy"
RATELIMIT = "RateLimit"
RETRY_AFTER = "Retry-After"
X_ACCEL_EXPIRES = "X-Accel-Expires"
_RAW_POLICY = RATELIMIT_POLICY.lower().encode()
_RAW_RATELIMIT = RATELIMIT.lower().encode()
_MAX_CACHED = 256

RawHeaders = list[tuple[bytes, bytes]]


def sf_string(value: str) -> str:
    """``value`` as an RFC 8941 sf-string: double-quoted, ``\\`` and ``"`` escaped.

    Raises ``ValueError`` for characters an sf-string cannot carry (outside printable ASCII).
    """
    if not all(" " <= char <= "~" for char in value):
        raise ValueError(f"{value!r} has characters outside printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_field(policy: str, quota: int, window_s: int) -> str:
    """One ``RateLimit-Policy`` item: ``"default";q=10;w=60``; without ``;w`` when
    ``window_s`` is 0 (unknown) or less."""
    item = f"{sf_string(policy)};q={quota}"
    return f"{item};w={window_s}" if window_s > 0 else item


def edge_expires_s(decision: Decision, max_s: int) -> int:
    """Seconds an edge cache may repeat this answer (``X-Accel-Expires``); 0: not at all.

    Only an ``OVER_LIMIT`` denial qualifies (never an allowed, shadow, fail-open,
    fail-closed or ``NOT_ALL_ALLOWED`` answer), and never when ``max_s`` is 0 or less.
    ``retry_after_s`` is the limiter's T rounded up, so the whole seconds certain to remain
    are at least ``retry_after_s - 1``; one more is given up because Nginx keeps an entry
    through the last second it names (its clock ticks in whole seconds). The result is
    ``min(max_s, retry_after_s - 2)``, or 0 when that is below 1: an entry Nginx keeps for
    it ends before T, give or take the time the 429 takes from the limiter to Nginx.
    """
    if decision.reason is not Reason.OVER_LIMIT or max_s <= 0:
        return 0
    seconds = min(max_s, decision.retry_after_s - 2)
    return seconds if seconds >= 1 else 0


class HeaderCache:
    """Encoded header values per (policy, quota, window), built once and reused.

    Keyed on all three, as the limiter reports them with every decision, so a policy
    changed on the limiter (or replicas briefly disagreeing during a roll-out) is
    advertised as each decision was made. At most 256 entries; when full it starts over.
    """

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int, int], tuple[bytes, bytes]] = {}

    def _encoded(self, policy: str, quota: int, window_s: int) -> tuple[bytes, bytes]:
        cache_key = (policy, quota, window_s)
        parts = self._parts.get(cache_key)
        if parts is None:
            if len(self._parts) >= _MAX_CACHED:
                self._parts.clear()
            parts = (
                policy_field(policy, quota, window_s).encode("ascii"),
                sf_string(policy).encode("ascii"),
            )
            self._parts[cache_key] = parts
        return parts

    def raw(self, decision: Decision) -> RawHeaders:
        """ASGI header pairs (lower-case names) for a counted decision."""
        policy_value, name = self._encoded(decision.policy, decision.limit, decision.window_s)
        remaining = decision.remaining if decision.remaining > 0 else 0
        reset_s = decision.reset_s if decision.reset_s > 0 else 0
        return [
            (_RAW_POLICY, policy_value),
            (_RAW_RATELIMIT, b"%b;r=%d;t=%d" % (name, remaining, reset_s)),
        ]

    def as_dict(self, decision: Decision) -> dict[str, str]:
        """The same two fields by their canonical names, for exceptions and responses."""
        (_, policy_value), (_, value) = self.raw(decision)
        return {RATELIMIT_POLICY: policy_value.decode(), RATELIMIT: value.decode()}
