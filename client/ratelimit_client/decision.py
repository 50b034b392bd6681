"""What the client answers for one request: one typed, immutable decision.

All times are whole seconds, rounded up, because that is what HTTP headers carry
(``Retry-After``, ``RateLimit``'s ``t``, ``RateLimit-Policy``'s ``w``): a client that waits
that long is never early.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["BatchItem", "Decision", "Reason"]


class Reason(enum.IntEnum):
    """Why the request got its answer; values match ``ratelimit.v1.Reason``."""

    UNSPECIFIED = 0
    #: Allowed and counted.
    WITHIN_LIMIT = 1
    #: Denied: over the policy's quota; nothing was counted.
    OVER_LIMIT = 2
    #: Allowed without counting: no decision could be made (limiter or its backend down,
    #: or late) and the failure mode is ``open``.
    FAIL_OPEN = 3
    #: Denied without counting: no decision could be made and the failure mode is ``closed``.
    FAIL_CLOSED = 4
    #: Allowed although over the quota: the policy is in shadow mode (nothing counted).
    SHADOW_OVER_LIMIT = 5
    #: Allowed without counting: the policy is unlimited.
    UNLIMITED = 6
    #: Not counted: the request fitted, but it was one of an all-or-nothing batch in which
    #: another request was denied, so nothing of the batch was counted. Denied
    #: (``allowed`` false), except under a shadow policy, which never denies: its request
    #: is then ``allowed`` with this reason.
    NOT_ALL_ALLOWED = 7


class Decision(NamedTuple):
    """The limiter's answer for one request.

    ``limit``, ``remaining``, ``reset_s`` and ``window_s`` are meaningful only for
    ``WITHIN_LIMIT``, ``OVER_LIMIT`` and ``NOT_ALL_ALLOWED`` (then ``remaining`` is what is
    available, nothing having been counted; 0 when the client or the limiter answered from
    a deny cache); under a failure mode they are 0. ``reset_s`` is the
    ``t`` of the ``RateLimit`` header: seconds until the quota is fully available again when
    allowed, and equal to ``retry_after_s`` when denied. ``retry_after_s`` is 0 when allowed
    and at least 1 when denied. ``window_s`` is the policy's window as the limiter reports
    it (``limit`` units per ``window_s`` seconds; a 1.5 s window is 2), advertised as
    ``RateLimit-Policy``'s ``w``.
    """

    allowed: bool
    reason: Reason
    policy: str
    limit: int = 0
    remaining: int = 0
    reset_s: int = 0
    retry_after_s: int = 0
    window_s: int = 0

    @property
    def counted(self) -> bool:
        """Whether the limiter actually decided (as opposed to a failure mode answering)."""
        return self.reason is not Reason.FAIL_OPEN and self.reason is not Reason.FAIL_CLOSED


class BatchItem(NamedTuple):
    """One request of a batch (``decide_batch``): charge ``cost`` units of ``policy``
    (``""``: chosen by key) to ``key``."""

    key: str
    policy: str = ""
    cost: int = 1
