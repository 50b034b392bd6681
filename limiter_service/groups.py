"""All-or-nothing groups of hits: what every backend shares about them.

A group is the hits of one backend call that carry the same nonzero ``Hit.group``; they are
adjacent (a caller's hits travel together, and a group never spans callers). Its hits are
decided in order, each seeing the earlier ones' tentative consumption; the group consumes
only if no hit of an enforced policy is denied. A denial under a shadow policy does not
block (it is answered allowed, ``SHADOW_OVER_LIMIT``, as ever).

When a group is blocked, each hit that fitted (and is no dry run, which consumes nothing in
any case) is answered ``held``: not allowed, with the numbers a dry run of cost 0 on its
counter would give, i.e. what is available with nothing of the group counted. A dry run
that fitted stays allowed, its numbers likewise without the group's tentative consumption.
The backends report the verdicts as they were decided with the tentative consumption;
``settle`` turns them into those numbers, in one place for every backend:

- ``remaining``: plus this hit's cost and the cost of every earlier hit of the group that
  fitted on the same counter (fixed and sliding window and token bucket all report
  ``remaining`` as what is left after the tentative consumption);
- ``reset_after``: a window's does not depend on the cost; a token bucket's is less by one
  emission interval per unit added back;
- ``retry_after``: 0 here (the limiter then gives it the group's longest wait).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from limiter_service.decision import Algorithm, Hit, Policy, Verdict

__all__ = ["blocked_groups", "blocks", "runs", "settle"]


def runs(hits: Sequence[Hit]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` index ranges that are decided as a unit: a group's adjacent hits, or
    one hit on its own (``group`` 0)."""
    start, count = 0, len(hits)
    while start < count:
        group = hits[start].group
        end = start + 1
        if group:
            while end < count and hits[end].group == group:
                end += 1
        yield start, end
        start = end


def blocks(hit: Hit, verdict: Verdict) -> bool:
    """Whether ``verdict`` stops ``hit``'s group from consuming: a denial under an enforced
    (not shadow) policy."""
    return not verdict.allowed and not verdict.held and not hit.policy.shadow


def blocked_groups(hits: Sequence[Hit], verdicts: Sequence[Verdict]) -> set[int]:
    """The groups among ``hits`` that one of their verdicts blocks."""
    return {
        hit.group
        for hit, verdict in zip(hits, verdicts, strict=True)
        if hit.group and blocks(hit, verdict)
    }


def settle(
    hits: Sequence[Hit], verdicts: Sequence[Verdict], blocked: set[int] | None = None
) -> list[Verdict]:
    """``verdicts`` with every fitting hit of a blocked group (``blocked``, by default
    ``blocked_groups``) answered ``held`` (see the module docstring). Verdicts already held
    are kept as they are."""
    if blocked is None:
        blocked = blocked_groups(hits, verdicts)
    if not blocked:
        return list(verdicts)
    settled = list(verdicts)
    added: dict[tuple[int, str], int] = {}  # (group, storage key) -> units added back so far
    for index, (hit, verdict) in enumerate(zip(hits, verdicts, strict=True)):
        if hit.group not in blocked or not verdict.allowed or verdict.held:
            continue
        slot = (hit.group, hit.storage_key)
        units = added.get(slot, 0)
        if not hit.dry_run:
            units = added[slot] = units + hit.cost
        elif not units:
            continue  # a dry run that saw nothing tentative: its answer stands
        remaining, reset = given_back(hit.policy, verdict.remaining, verdict.reset_after_us, units)
        held = not hit.dry_run
        settled[index] = Verdict(not held, remaining, reset, 0, held)
    return settled


def given_back(policy: Policy, remaining: int, reset_us: int, units: int) -> tuple[int, int]:
    """``remaining`` and ``reset_us`` of an answer that counted ``units`` under ``policy``,
    as they stand without them: what a held hit reports."""
    if policy.algorithm is Algorithm.TOKEN_BUCKET:
        reset_us = max(0, reset_us - policy.emission_interval_us * units)
    return remaining + units, reset_us
