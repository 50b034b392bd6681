"""The Redis Cluster backend: the same Lua script, routed by hash slot to each primary.

A call groups its hits by slot, and the slots by the primary serving them. Each primary gets
all of its slots in one pipeline (one EVALSHA per slot: a script's keys must share a slot,
or the node refuses it with CROSSSLOT), so a batch costs one round trip per primary, and the
primaries are asked concurrently. Verdicts land at their hits' positions, so they come back
in the caller's order. Hits on one key share a slot, so a batch still decides as if its hits
ran one after the other.

All-or-nothing groups: a group whose hits share one slot is decided by one EVALSHA, atomic
as on a single Redis. A group spanning slots (hence, in general, primaries) takes two
rounds: the first decides it on every slot as a probe (writing nothing), concurrently with
the rest of the batch; if no enforced hit was denied anywhere, the second sends it again,
to consume, each slot's part all-or-nothing on its own. A group denied in the first round
consumed nothing and costs one round trip per primary; one admitted costs two. Between the
rounds other clients may consume: if the second round then denies the group's part on one
slot, the parts on the other slots have already been consumed and stay so. The whole group
is answered denied (``groups.settle``; parts consumed keep the numbers of their
consumption), erring on the side of denying: counters show at most the cost of one group
spent that it did not get. The same holds when the second round fails on some primaries
until the deadline (the failure mode answers the group).

Routing is our own slot map, read with ``CLUSTER SLOTS`` from any node that answers (the
configured ``REDIS_CLUSTER_NODES``, then every primary seen). Within one attempt, a
``MOVED`` reply corrects the map and re-sends the moved slots, an ``ASK`` re-sends them to
the importing node behind ``ASKING``, and ``NOSCRIPT`` (a promoted replica's empty script
cache) loads the script on that node and re-sends; each such hop is one more round trip
for those slots only. Anything else a retry can fix (a primary gone, CLUSTERDOWN while its
replica takes over, TRYAGAIN during a migration) fails the attempt, marks the map stale, and
``attempts.retry_until`` tries the slots still undecided again until the caller's deadline,
exactly as on a single Redis: past it the failure mode answers. The script is loaded on
every primary as soon as the map names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from limiter_service.backends.attempts import (
    PER_DECISION_S,
    complete,
    retry_until,
    script_arguments,
    store_reply,
)
from limiter_service.backends.connection import RedisAccess, RestartWatch, make_client, pool_options
from limiter_service.backends.scripts import Script, load_script
from limiter_service.decision import Hit, Verdict
from limiter_service.groups import blocked_groups, blocks, runs, settle
from limiter_service.timeouts import patient_timeout

log = logging.getLogger(__name__)
Address = tuple[str, int]
SLOTS = 16384
_MAX_HOPS = 4  # redirects and script reloads followed within one attempt
_UNSET = Verdict(False, 0, 0, 0)


class _Group(NamedTuple):
    """Hits of one slot: one EVALSHA (or one DEL, with ``script`` None); the all-or-nothing
    groups in ``probing`` are decided but not written."""

    slot: int
    script: Script | None
    indexes: list[int]
    probing: frozenset[int] = frozenset()


class _Outcome:
    """What one attempt's round trips left to do before the next hop."""

    def __init__(self) -> None:
        self.trouble: Exception | None = None  # ends the attempt (retried after a pause)
        self.noscript: set[Address] = set()
        self.redirected = False


class ClusterBackend:
    """Decides hits on the primaries of a Redis Cluster (see the module docstring).

    ``seeds``: nodes to read the slot map from at first (any of them, primaries or
    replicas); ``access``: how to log in to every node; ``timeout_s``: each node client's
    connect and reply timeout, also the base of an attempt's timeout; ``max_connections``:
    per node. ``master_changes`` counts primaries that appeared in the map after the first
    one was read (failovers); ``restarts`` is not tracked on a cluster and stays 0.
    """

    def __init__(
        self,
        seeds: Sequence[Address],
        access: RedisAccess,
        timeout_s: float,
        max_connections: int,
    ) -> None:
        if not seeds:
            raise ValueError("a cluster needs at least one node address")
        self._seeds = [(host, int(port)) for host, port in seeds]
        self._pool_options = pool_options(timeout_s, max_connections, access)
        self._attempt_timeout_s = timeout_s
        self._script = load_script()
        self._clients: dict[Address, aioredis.Redis] = {}
        self._owners: list[Address | None] = [None] * SLOTS
        self._asking: dict[int, Address] = {}  # slot -> importing node, for the next send
        self._stale = True
        self._loaded: set[Address] = set()
        self._lookup: asyncio.Task[None] | None = None
        self.master_changes = 0
        self.restarts = RestartWatch()
        self.description = "redis cluster " + ",".join(f"{h}:{p}" for h, p in self._seeds)

    @property
    def primaries(self) -> set[Address]:
        """Every address the slot map names (empty before the map was first read)."""
        return {owner for owner in self._owners if owner is not None}

    async def decide(self, hits: Sequence[Hit], deadline: float) -> list[Verdict]:
        slots = [key_slot(hit.storage_key.encode()) for hit in hits]
        spanning = frozenset(
            hits[start].group
            for start, end in runs(hits)
            if len(set(slots[start:end])) > 1  # only a group's run holds several hits
        )
        verdicts = await self._round(hits, slots, range(len(hits)), spanning, deadline)
        admitted = spanning - blocked_groups(hits, verdicts)
        if not admitted:
            return settle(hits, verdicts)
        await self._between_rounds()
        second = [i for i, hit in enumerate(hits) if hit.group in admitted]
        again = await self._round(hits, slots, second, frozenset(), deadline)
        for index, verdict in zip(second, again, strict=True):
            verdicts[index] = verdict
        return settle(hits, _consumed_parts_held(hits, slots, second, verdicts))

    async def _round(
        self,
        hits: Sequence[Hit],
        slots: list[int],
        indexes: Sequence[int],
        probing: frozenset[int],
        deadline: float,
    ) -> list[Verdict]:
        """Decide ``hits[i]`` for ``i`` in ``indexes``, one EVALSHA per slot, one round trip
        per primary; returns the verdicts at ``hits``' positions (others: unset)."""
        by_slot: dict[int, list[int]] = {}
        for index in indexes:
            by_slot.setdefault(slots[index], []).append(index)
        pending = [_Group(slot, self._script, idx, probing) for slot, idx in by_slot.items()]
        verdicts: list[Verdict | None] = [None] * len(hits)
        await self._with_retries(deadline, len(indexes), hits, pending, verdicts)
        decided = complete([verdicts[index] for index in indexes])
        return _placed(len(hits), indexes, decided)

    async def _between_rounds(self) -> None:
        """Runs after a probe admitted a group, before its second round (a seam: another
        limiter's traffic can land here)."""

    async def reset(self, storage_key: str, deadline: float) -> None:
        pending = [_Group(key_slot(storage_key.encode()), None, [0])]
        await self._with_retries(deadline, 1, [storage_key], pending, [None])

    async def refresh(self, deadline: float) -> None:
        """Read the slot map again (never raises; what it finds shows in the next
        decision)."""
        left = deadline - asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            async with patient_timeout(left):
                await self._refresh_map()

    async def close(self) -> None:
        if self._lookup is not None and not self._lookup.done():
            self._lookup.cancel()
        for client in self._clients.values():
            await client.aclose(close_connection_pool=True)
        self._clients.clear()

    async def _with_retries(
        self,
        deadline: float,
        decisions: int,
        hits: Sequence[Hit] | Sequence[str],
        pending: list[_Group],
        verdicts: list[Verdict | None],
    ) -> None:
        async def attempt() -> None:
            for _hop in range(_MAX_HOPS):
                if self._stale:
                    await self._refresh_map()
                outcome = await self._send(hits, pending, verdicts)
                if not pending:
                    return
                if outcome.trouble is not None:
                    raise outcome.trouble
                await asyncio.gather(*(self._load_scripts(a) for a in outcome.noscript))
            raise TryAgainError(f"still redirected after {_MAX_HOPS} round trips")

        async def recover(error: Exception) -> None:
            self._stale = True

        attempt_timeout_s = self._attempt_timeout_s + decisions * PER_DECISION_S
        await retry_until(deadline, attempt_timeout_s, attempt, recover)

    async def _send(
        self,
        hits: Sequence[Hit] | Sequence[str],
        pending: list[_Group],
        verdicts: list[Verdict | None],
    ) -> _Outcome:
        """One round trip to each primary concerned, concurrently; drops from ``pending``
        the groups that were decided."""
        by_node: dict[Address, list[_Group]] = {}
        outcome = _Outcome()
        for group in pending:
            address = self._asking.get(group.slot) or self._owners[group.slot]
            if address is None:
                outcome.trouble = RedisConnectionError(f"no primary known for slot {group.slot}")
                continue
            by_node.setdefault(address, []).append(group)
        done: set[int] = set()  # id() of the groups decided
        await asyncio.gather(
            *(
                self._on_node(address, groups, hits, verdicts, outcome, done)
                for address, groups in by_node.items()
            )
        )
        pending[:] = [group for group in pending if id(group) not in done]
        return outcome

    async def _on_node(
        self,
        address: Address,
        groups: list[_Group],
        hits: Sequence[Hit] | Sequence[str],
        verdicts: list[Verdict | None],
        outcome: _Outcome,
        done: set[int],
    ) -> None:
        client = self._client(address)
        asking = [self._asking.pop(group.slot, None) == address for group in groups]
        try:
            if len(groups) == 1 and not asking[0]:
                replies: list[Any] = [await _command(client, groups[0], hits)]
            else:
                async with client.pipeline(transaction=False) as pipe:
                    for group, ask in zip(groups, asking, strict=True):
                        if ask:
                            pipe.execute_command("ASKING")
                        _queue(pipe, group, hits)
                    replies = _without_asking(await pipe.execute(raise_on_error=False), asking)
        except NoScriptError:
            outcome.noscript.add(address)
            return
        except AskError as exc:
            replies = [exc]
        except (TimeoutError, RedisError, OSError) as exc:
            self._loaded.discard(address)  # it may come back with an empty script cache
            outcome.trouble = exc
            return
        for group, reply in zip(groups, replies, strict=True):
            if isinstance(reply, NoScriptError):
                outcome.noscript.add(address)
            elif isinstance(reply, AskError):
                self._redirect(group.slot, reply, outcome)
            elif isinstance(reply, Exception):
                outcome.trouble = outcome.trouble or reply
            elif group.script is None:
                done.add(id(group))  # reset: DEL answered
            else:
                store_reply(reply, group.indexes, verdicts)
                done.add(id(group))

    def _redirect(self, slot: int, error: AskError, outcome: _Outcome) -> None:
        target = (str(error.host), int(error.port))
        if isinstance(error, MovedError):
            self._owners[slot] = target
            self._stale = True  # one slot moved: others may have moved with it
        else:
            self._asking[slot] = target
        outcome.redirected = True

    def _client(self, address: Address) -> aioredis.Redis:
        client = self._clients.get(address)
        if client is None:
            pool = aioredis.BlockingConnectionPool(
                host=address[0], port=address[1], **self._pool_options
            )
            client = self._clients[address] = make_client(pool)
        return client

    async def _refresh_map(self) -> None:
        """Read the slot map; concurrent callers share one look-up. Never raises: when no
        node answers, the old map stays (and stays stale)."""
        if self._lookup is None or self._lookup.done():
            self._lookup = asyncio.ensure_future(self._look_up())
        await asyncio.shield(self._lookup)

    async def _look_up(self) -> None:
        known = sorted(self.primaries)
        candidates = list(dict.fromkeys([*known, *self._seeds]))
        for address in candidates:
            try:
                reply = await self._client(address).execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
                owners = _owners(reply, address)
            except (RedisError, OSError, TimeoutError, ValueError) as exc:
                log.debug("cluster node %s:%s did not give the slot map: %s", *address, exc)
                continue
            if any(owner is None for owner in owners):
                log.debug("cluster node %s:%s does not see every slot served", *address)
            if not any(owners):
                continue
            fresh = self._install(owners)
            await asyncio.gather(*(self._load_scripts(address) for address in fresh))
            return

    def _install(self, owners: list[Address | None]) -> set[Address]:
        """Use ``owners`` from now on; returns the primaries whose scripts to load."""
        old = self.primaries
        self._owners = owners
        self._stale = False
        new = self.primaries
        if old and new != old:
            self.master_changes += len(new - old)
            log.warning("redis cluster primaries are now %s (were %s)", _names(new), _names(old))
        return new - self._loaded

    async def _load_scripts(self, address: Address) -> None:
        """Load the script on ``address`` in one round trip (errors only logged: a missing
        script shows as NOSCRIPT, which loads it again)."""
        try:
            await self._client(address).script_load(self._script.source)
        except (TimeoutError, RedisError, OSError) as exc:
            self._loaded.discard(address)
            log.warning("could not load the script on %s:%s: %r", *address, exc)
        else:
            self._loaded.add(address)


def _command(client: aioredis.Redis, group: _Group, hits: Sequence[Any]) -> Any:
    if group.script is None:
        return client.delete(hits[group.indexes[0]])
    arguments = script_arguments(hits, group.indexes, group.probing)
    return client.evalsha(group.script.sha, *arguments)


def _queue(pipe: Any, group: _Group, hits: Sequence[Any]) -> None:
    if group.script is None:
        pipe.delete(hits[group.indexes[0]])
    else:
        pipe.evalsha(group.script.sha, *script_arguments(hits, group.indexes, group.probing))


def _placed(size: int, indexes: Sequence[int], decided: list[Verdict]) -> list[Verdict]:
    """``decided[k]`` at position ``indexes[k]`` of a list of ``size`` (others: a filler
    that callers overwrite or never read)."""
    placed = [_UNSET] * size
    for index, verdict in zip(indexes, decided, strict=True):
        placed[index] = verdict
    return placed


def _consumed_parts_held(
    hits: Sequence[Hit], slots: list[int], second: list[int], verdicts: list[Verdict]
) -> list[Verdict]:
    """After the second round: when a group was denied on some slot after all, its parts
    on the other slots were consumed. Their fitting hits are answered held, with the
    numbers of their consumption (``settle`` then answers the denied slots' parts)."""
    denied: dict[int, set[int]] = {}  # group -> slots on which its part was denied
    for index in second:
        if blocks(hits[index], verdicts[index]):
            denied.setdefault(hits[index].group, set()).add(slots[index])
    if not denied:
        return verdicts
    marked = list(verdicts)
    for index in second:
        hit, verdict = hits[index], verdicts[index]
        if (
            hit.group in denied
            and slots[index] not in denied[hit.group]
            and verdict.allowed
            and not hit.dry_run
        ):
            marked[index] = verdict._replace(allowed=False, retry_after_us=0, held=True)
    return marked


def _without_asking(replies: list[Any], asking: list[bool]) -> list[Any]:
    """The command replies of a pipeline in which ``asking[i]`` put an ASKING before
    command ``i``."""
    kept: list[Any] = []
    position = 0
    for ask in asking:
        position += 1 if ask else 0
        kept.append(replies[position])
        position += 1
    return kept


def _owners(reply: Any, asked: Address) -> list[Address | None]:
    """``CLUSTER SLOTS`` as slot -> primary address (``None``: unserved). A node that
    does not know its own address reports an empty host: it is ``asked``'s."""
    if not isinstance(reply, list):
        raise ValueError(f"unexpected CLUSTER SLOTS reply {reply!r}")
    owners: list[Address | None] = [None] * SLOTS
    for entry in reply:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
        address = (host or asked[0], int(primary[1]))
        owners[start : end + 1] = [address] * (end + 1 - start)
    return owners


def _names(addresses: set[Address]) -> str:
    return ",".join(f"{h}:{p}" for h, p in sorted(addresses))
