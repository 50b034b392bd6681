"""The backend seam: the one interface between deciding and counting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from limiter_service.decision import Hit, Verdict


class Backend(Protocol):
    """Counts hits atomically.

    Contract: ``decide`` returns one verdict per hit, in order, decided as if the hits ran one
    after the other (a later hit on the same key sees an earlier one's consumption), using one
    round trip to shared storage. Groups are expressed in the hits: adjacent hits sharing a
    nonzero ``Hit.group`` are all-or-nothing (``groups``): each sees the earlier ones'
    tentative consumption, and the group consumes only if no hit of an enforced policy is
    denied; otherwise its fitting hits come back ``held`` (``groups.settle``). A group never
    spans callers (the limiter gives each call its own id). On a cluster a group spanning
    slots costs a second round trip to the primaries concerned when it is admitted (see
    ``cluster``). It starts no new attempt after the monotonic ``deadline``
    (the event loop's clock, seconds) and then raises ``BackendUnavailable``; one attempt may
    overrun the deadline by at most its own timeout, so callers bound their own wait. It
    never raises anything else for storage trouble. ``refresh`` re-checks where the storage
    is (for Sentinel: asks the sentinels, confirms the master) and never raises; the health
    check calls it, then runs a real ``decide``.
    """

    description: str

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]: ...

    async def reset(self, storage_key: str, deadline: float) -> None:
        """Forget ``storage_key``'s state in one round trip, with ``decide``'s deadline
        and errors (``BackendUnavailable``)."""
        ...

    async def refresh(self, deadline: float) -> None: ...

    async def close(self) -> None: ...
