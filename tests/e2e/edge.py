"""Helpers of the end-to-end tests: clients with their own source address, the rate-limit
headers parsed, and a guard against a fixed window rolling over mid-test."""

from __future__ import annotations

import re
import time
from typing import NamedTuple

import httpx

from devstack import wait_until

__all__ = [
    "RateLimitField",
    "client",
    "ensure_window_room",
    "parse_ratelimit",
]

_RATELIMIT = re.compile(r'^"(?P<policy>[^"\\]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


class RateLimitField(NamedTuple):
    """``RateLimit: "default";r=9;t=42``."""

    policy: str
    remaining: int
    reset_s: int


def parse_ratelimit(value: str) -> RateLimitField:
    """Parse a ``RateLimit`` header; ``AssertionError`` if it is malformed."""
    found = _RATELIMIT.match(value)
    assert found is not None, f"malformed RateLimit header {value!r}"
    return RateLimitField(found["policy"], int(found["r"]), int(found["t"]))


def client(local_address: str = "127.0.0.1", timeout: float = 10.0) -> httpx.Client:
    """An HTTP client whose connections come from ``local_address``: on Linux any address
    in 127.0.0.0/8 works, so each test can be its own client IP with its own budget."""
    transport = httpx.HTTPTransport(local_address=local_address)
    return httpx.Client(transport=transport, timeout=timeout)


def ensure_window_room(window_s: int, need_s: float) -> None:
    """Return once at least ``need_s`` seconds remain in the current fixed window.

    Fixed windows are aligned to the clock (Redis ``TIME``, the same clock as ours on one
    machine): a burst that straddles a boundary would see its budget reset halfway. When
    too little of the window is left, this waits for the next one to begin (at most
    ``need_s`` seconds).
    """

    def room() -> bool | None:
        return True if window_s - time.time() % window_s >= need_s else None

    wait_until(
        room,
        timeout=need_s + 1.0,
        waiting_for=f"at least {need_s} s left in the current {window_s} s window",
        interval=0.1,
    )
