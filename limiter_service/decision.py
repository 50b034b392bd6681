"""The typed values that flow between the layers: policies in, verdicts and decisions out.

All durations are integer microseconds. ``Verdict`` is what a backend answers for one hit;
``Decision`` is what the service answers for one request (a verdict plus the policy that
decided and why).
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass, replace
from typing import NamedTuple

US_PER_SECOND = 1_000_000


class Algorithm(enum.StrEnum):
    """How a policy counts. Every algorithm is exact and atomic; denied requests count nothing."""

    FIXED_WINDOW = "fixed_window"
    SLIDING_WINDOW = "sliding_window"
    TOKEN_BUCKET = "token_bucket"


class FailureMode(enum.StrEnum):
    """What a request gets when the backend cannot answer in time: ``open`` allows it
    uncounted (``FAIL_OPEN``), ``closed`` denies it (``FAIL_CLOSED``)."""

    OPEN = "open"
    CLOSED = "closed"


class Reason(enum.IntEnum):
    """Why a decision came out as it did; values match ``ratelimit.v1.Reason`` (whose
    comments say what each means). ``NOT_ALL_ALLOWED`` (fitted, not counted: another hit
    of its all-or-nothing group was denied) is a denial, except under a shadow policy,
    whose held hit is answered allowed with that reason."""

    UNSPECIFIED = 0
    WITHIN_LIMIT = 1
    OVER_LIMIT = 2
    FAIL_OPEN = 3
    FAIL_CLOSED = 4
    SHADOW_OVER_LIMIT = 5
    UNLIMITED = 6
    NOT_ALL_ALLOWED = 7


_GLOB_CHARS = frozenset("*?[")


def key_matches(pattern: str, key: str) -> bool:
    """``pattern`` is a glob when it holds ``*``, ``?`` or ``[``, else a prefix of ``key``."""
    if _GLOB_CHARS.isdisjoint(pattern):
        return key.startswith(pattern)
    return fnmatch.fnmatchcase(key, pattern)


class Override(NamedTuple):
    """Another quota for the keys ``match`` fits, inside a policy: ``limit`` and, when
    given, ``window_us`` and ``burst`` (``None``: the policy's)."""

    match: str
    limit: int
    window_us: int | None = None
    burst: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A named quota: ``limit`` units per ``window_us``, counted by ``algorithm``.

    ``burst`` only matters to ``token_bucket`` (how many units may be spent at once; it
    defaults to ``limit``). ``match`` is a prefix or glob tested against keys when a request
    names no policy; empty means the policy is only used by name. ``shadow``: decisions are
    counted but always allow (a would-be denial says so). ``unlimited``: always allowed,
    never counted. ``overrides``: other quotas for some keys (first match wins).
    ``allow_request_override``: a request may bring its own limit and window.
    """

    name: str
    limit: int
    window_us: int
    algorithm: Algorithm
    burst: int
    match: str = ""
    shadow: bool = False
    unlimited: bool = False
    allow_request_override: bool = False
    overrides: tuple[Override, ...] = ()

    def for_key(self, key: str) -> Policy:
        """This policy as it applies to ``key``: the first matching override's quota."""
        for override in self.overrides:
            if key_matches(override.match, key):
                return self.with_quota(override.limit, override.window_us, override.burst)
        return self

    def with_quota(self, limit: int, window_us: int | None, burst: int | None = None) -> Policy:
        """The same policy with another ``limit`` (and ``window_us``/``burst`` if given);
        a token bucket's burst follows the limit unless given."""
        return replace(
            self,
            limit=limit,
            window_us=window_us if window_us is not None else self.window_us,
            burst=burst if burst is not None else limit,
            overrides=(),
        )

    @property
    def capacity(self) -> int:
        """The largest cost one request may ask for."""
        return self.burst if self.algorithm is Algorithm.TOKEN_BUCKET else self.limit

    @property
    def emission_interval_us(self) -> int:
        """Token bucket: microseconds for one unit to drip back (window / limit, floored)."""
        return self.window_us // self.limit

    def script_params(self) -> tuple[int, int]:
        """The two per-policy numbers the backend scripts take before ``cost`` and ``dry_run``."""
        if self.algorithm is Algorithm.TOKEN_BUCKET:
            interval = self.emission_interval_us
            return interval, interval * self.burst
        return self.limit, self.window_us


class Hit(NamedTuple):
    """One request as a backend sees it: which counter, under which policy, for how much.

    ``group`` 0: decided on its own. Hits sharing another ``group`` are all-or-nothing: they
    are adjacent in a backend call and consume only if none of them whose policy is
    enforced (not shadow) is denied (``groups``)."""

    storage_key: str
    policy: Policy
    cost: int
    dry_run: bool
    group: int = 0


class Verdict(NamedTuple):
    """A backend's answer for one hit. ``held``: the hit fitted but was not consumed because
    another hit of its all-or-nothing group was denied (``allowed`` is then false)."""

    allowed: bool
    remaining: int
    reset_after_us: int
    retry_after_us: int
    held: bool = False


class Decision(NamedTuple):
    """The service's answer for one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_us: int
    retry_after_us: int
    policy: str
    reason: Reason
    window_us: int
