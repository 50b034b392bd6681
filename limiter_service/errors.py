"""Every error the service raises on purpose, in one tree::

    LimiterError
    ├── RequestError              a client asked for something we refuse (never touches Redis)
    │   ├── InvalidRequest        -> gRPC INVALID_ARGUMENT (empty/oversized key, cost, batch size)
    │   ├── UnknownPolicy         -> gRPC NOT_FOUND (names the known policies)
    │   └── OverrideNotAllowed    -> gRPC PERMISSION_DENIED (a request brought its own quota
    │                                and the policy does not say allow_request_override)
    ├── BackendUnavailable        the backend could not answer within the deadline; the
    │                             configured failure mode answers instead (never a status);
    │                             ``cause`` says why, from a fixed set (``FailureCause``)
    ├── Overloaded                too much work in flight (in the process, or from the
    │                             caller's address): shed -> gRPC RESOURCE_EXHAUSTED
    └── ConfigError               bad settings or policies file; start-up stops with exit code 2

The gRPC edge maps these to status codes in one place (``grpc_service.py``); messages are
written for the client to read and never carry a traceback.
"""

from __future__ import annotations

import enum


class LimiterError(Exception):
    """Base of every error raised on purpose by this package."""


class RequestError(LimiterError):
    """The request is refused before any backend work is done. ``index`` is the position
    of the refused item in a batch (``None`` for the request as a whole)."""

    index: int | None = None


class InvalidRequest(RequestError):
    """A field of the request is out of range; the message names the field and the bound,
    ``field`` is the field's name (``key``, ``cost``, ``requests``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownPolicy(RequestError):
    """The request names a policy that does not exist, or no policy fits its key;
    ``policy`` is the name asked for (empty when none was)."""

    def __init__(self, message: str, policy: str) -> None:
        super().__init__(message)
        self.policy = policy


class OverrideNotAllowed(RequestError):
    """The request brought its own ``limit``/``window`` and ``policy`` does not allow it."""

    def __init__(self, message: str, policy: str) -> None:
        super().__init__(message)
        self.policy = policy


class FailureCause(enum.StrEnum):
    """Why the backend could not decide: a small fixed set (a metric's label), derived from
    the error, never from its text."""

    #: No answer in time: Redis hanging or slow, or the decision's deadline spent.
    TIMEOUT = "timeout"
    #: No usable master until the deadline: connection refused or lost, no master known,
    #: an expired master lease, or READONLY/LOADING/NOREPLICAS/MASTERDOWN on every try.
    UNAVAILABLE = "unavailable"
    #: Redis answered with an error no retry can fix (e.g. OOM, a script error).
    REFUSED = "refused"
    #: Redis answered, but not with what the scripts return (a reply of the wrong shape).
    BAD_REPLY = "bad_reply"


class BackendUnavailable(LimiterError):
    """The backend did not answer in time (down, failing over, overloaded or unreachable);
    ``cause`` says which of ``FailureCause``."""

    def __init__(self, message: str, cause: FailureCause = FailureCause.UNAVAILABLE) -> None:
        super().__init__(message)
        self.cause = cause


class Overloaded(LimiterError):
    """A call was shed before any work was done on it, because admitting it would exceed
    one of the admission limits; ``limit`` names that limit (``rpcs``, ``peer_rpcs``,
    ``decisions``, ``peer_decisions``)."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class ConfigError(LimiterError):
    """Settings or the policies file are invalid; the message names the source and field."""
