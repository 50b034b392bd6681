"""``envoy.service.ratelimit.v3.RateLimitService`` on top of ``Limiter``.

One ``ShouldRateLimit`` call: validate the request, find each descriptor's rule
(``EnvoyConfig.match``), drop the limits other matched rules ``replaces``, and decide every
remaining descriptor in one ``Limiter.decide_hits`` call, all or nothing (a request that
ends OVER_LIMIT consumes nothing). Answers, per descriptor and in order:

=========================================  ==========  ===================================
descriptor                                 code        current_limit, limit_remaining
=========================================  ==========  ===================================
no rule (unknown domain, no match, or      OK          none, 0
replaced by another matched rule, an
``unlimited`` one included)
``unlimited`` rule (never touches Redis)   OK          none, 4294967295
within its limit                           OK          the rule's, what is left
over its limit (``requests_per_unit: 0``   OVER_LIMIT  the rule's, 0 (as upstream)
always is; so is a cost above the limit)
over, under ``shadow_mode``                OK          the rule's (metrics count it)
fitted, but another descriptor was over    OK          the rule's, what is left without
                                                       this request's hits
backend down, failure mode ``open``        OK          the rule's, 0
backend down, failure mode ``closed``      OVER_LIMIT  the rule's, 0
=========================================  ==========  ===================================

``overall_code`` is OVER_LIMIT when any descriptor is. ``duration_until_reset`` is the time
until the counter frees what was asked: the end of the window for a fixed window (windows
are aligned to the Unix epoch, as upstream aligns them), the retry time for a denial
otherwise. Errors (``status_for``): INVALID_ARGUMENT for an empty ``domain``, no
``descriptors``, a descriptor without entries or an entry with an empty key, and a ``limit``
override with an unknown unit; RESOURCE_EXHAUSTED when shed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import grpc

from limiter_service.decision import US_PER_SECOND, Algorithm, Decision, Hit, Policy, Reason
from limiter_service.envoy import proto
from limiter_service.envoy.config import UNIT_SECONDS, EnvoyConfig, Match, Rule, escaped
from limiter_service.errors import InvalidRequest
from limiter_service.grpc_service import _mapped, peer_address, register
from limiter_service.limiter import _ALGORITHM_TAG, Limiter
from limiter_service.metrics import OUTCOMES, Metrics

__all__ = ["EnvoyRateLimitService"]

MAX_UINT32 = 2**32 - 1
_Code = proto.RateLimitResponse.Code
_Unit = proto.RateLimitResponse.RateLimit.Unit
_OVER = (Reason.OVER_LIMIT, Reason.FAIL_CLOSED)
# Counters named by longer descriptors are named by a digest instead (bounded key size).
_MAX_COUNTER_CHARS = 256
_UNIT_CODES: dict[str, int] = {
    "second": _Unit.SECOND,
    "minute": _Unit.MINUTE,
    "hour": _Unit.HOUR,
    "day": _Unit.DAY,
    "week": _Unit.WEEK,
    "month": _Unit.MONTH,
    "year": _Unit.YEAR,
}
_OVERRIDE_UNITS = {code: unit for unit, code in _UNIT_CODES.items()}


class _Limited(NamedTuple):
    """A descriptor that has a limit: its rule (``None`` for a request's override), the
    unit and ``name`` to report, and the metric key."""

    hit: Hit
    rule: Rule | None
    unit: str
    name: str
    metric_key: str


class _Skipped(NamedTuple):
    """A descriptor nothing is counted for: ``why`` (``no_rule``, ``replaced``,
    ``unlimited``) and the rule's metric key ("" without a rule)."""

    why: str
    metric_key: str = ""


_NO_RULE = _Skipped("no_rule")


class EnvoyRateLimitService(proto.RateLimitServiceServicer):
    """Handlers for ``envoy.service.ratelimit.v3.RateLimitService``; ``config`` is the
    Envoy configuration in force (a reload assigns a new one, which drops the limiter's deny
    cache: its denials were made under the old rules). Time and status of each call
    go to ``metrics`` (default: the limiter's), decisions by domain and rule key too."""

    def __init__(
        self,
        limiter: Limiter,
        config: EnvoyConfig,
        key_prefix: str = "rl",
        metrics: Metrics | None = None,
    ) -> None:
        self._limiter = limiter
        self._config = config
        self._prefix = key_prefix
        self.metrics = metrics if metrics is not None else limiter.metrics

    @property
    def config(self) -> EnvoyConfig:
        """The Envoy configuration in force."""
        return self._config

    @config.setter
    def config(self, config: EnvoyConfig) -> None:
        self._config = config
        if self._limiter.deny_cache is not None:
            self._limiter.deny_cache.clear()

    @_mapped(batch=False)
    async def ShouldRateLimit(
        self, request: proto.RateLimitRequest, context: grpc.aio.ServicerContext
    ) -> proto.RateLimitResponse:
        plan = self.plan(request)
        limited = [item for item in plan if isinstance(item, _Limited)]
        decisions = await self._limiter.decide_hits(
            [item.hit for item in limited],
            context.time_remaining(),
            peer_address(context.peer()),
            all_or_nothing=True,
        )
        answers = iter(decisions)
        response = proto.RateLimitResponse(overall_code=_Code.OK)
        add = response.statuses.add
        rows: list[tuple[str, str, str]] = []
        domain = request.domain if self.config.knows(request.domain) else ""
        for item in plan:
            status = add()
            if isinstance(item, _Limited):
                decision = next(answers)
                _fill(status, item, decision)
                if status.code == _Code.OVER_LIMIT:
                    response.overall_code = _Code.OVER_LIMIT
                rows.append((domain, item.metric_key, _outcome(decision)))
            else:
                status.code = _Code.OK
                if item.why == "unlimited":
                    status.limit_remaining = MAX_UINT32
                rows.append((domain, item.metric_key, item.why))
        self.metrics.envoy_decided(rows)
        return response

    def plan(self, request: proto.RateLimitRequest) -> list[_Limited | _Skipped]:
        """Validate ``request`` and say, per descriptor, what decides it: a hit to count, or
        why nothing is counted (``_Skipped``). Raises
        ``InvalidRequest`` naming the field (``descriptors[1].entries[0].key``)."""
        domain = request.domain
        if not domain:
            raise InvalidRequest("domain must not be empty", "domain")
        if not request.descriptors:
            raise InvalidRequest("descriptors must not be empty", "descriptors")
        config = self.config
        known = config.knows(domain)
        plan: list[_Limited | _Skipped] = []
        replaced: set[str] = set()
        for index, descriptor in enumerate(request.descriptors):
            entries = _entries(descriptor, index)
            if not known:
                plan.append(_NO_RULE)
                continue
            # A descriptor's own hits_addend is used as set, 0 checking without counting
            # (a dry run adding nothing: OK while the counter is not over, as upstream);
            # the request's 0 means 1, as upstream has it.
            cost, dry_run = request.hits_addend or 1, False
            if descriptor.HasField("hits_addend"):
                cost = min(descriptor.hits_addend.value, MAX_UINT32)
                dry_run = cost == 0
            match = config.match(domain, entries)
            if descriptor.HasField("limit"):
                plan.append(
                    self._overridden(domain, entries, descriptor.limit, cost, dry_run, index, match)
                )
                continue
            if match is None:
                plan.append(_NO_RULE)
                continue
            rule = match.rule
            # Every matched rule's replaces count, an unlimited one's too (as upstream).
            replaced.update(rule.replaces)
            if rule.unlimited:
                plan.append(_Skipped("unlimited", match.metric_key))
                continue
            policy = rule.policy
            hit = Hit(
                self._storage_key(match.counter, policy, ""), policy, _cost(cost, policy), dry_run
            )
            plan.append(_Limited(hit, rule, rule.unit, rule.name, match.metric_key))
        if replaced:
            plan = [
                _Skipped("replaced", item.metric_key)
                if isinstance(item, _Limited) and item.rule and item.rule.name in replaced
                else item
                for item in plan
            ]
        return plan

    def _overridden(
        self,
        domain: str,
        entries: Sequence[tuple[str, str]],
        limit: proto.RateLimitDescriptor.RateLimitOverride,
        cost: int,
        dry_run: bool,
        index: int,
        match: Match | None,
    ) -> _Limited:
        """The request's own limit for a descriptor: a fixed window of its own (never
        shadow), whatever rule the descriptor matches, as upstream does. Its metrics are
        labelled with the matched rule's policy and key, or ``<domain>.override`` without
        one: never with what the request chose (one series per entry key would grow
        without bound); its counter is named by the request's entries."""
        unit = _OVERRIDE_UNITS.get(limit.unit)
        if unit is None:
            raise InvalidRequest(
                f"limit.unit {limit.unit} is not a unit (SECOND .. YEAR)",
                f"descriptors[{index}].limit.unit",
            )
        rpu = limit.requests_per_unit
        name = metric_key = f"{domain}.override"
        if match is not None:
            name, metric_key = match.rule.policy.name, match.metric_key
        policy = Policy(name, rpu, UNIT_SECONDS[unit] * US_PER_SECOND, Algorithm.FIXED_WINDOW, rpu)
        counter = "|".join((escaped(domain), *(f"{escaped(k)}={escaped(v)}" for k, v in entries)))
        storage_key = self._storage_key(counter, policy, f":o{rpu}/{unit}")
        hit = Hit(storage_key, policy, _cost(cost, policy), dry_run)
        return _Limited(hit, None, unit, "", metric_key)

    def _storage_key(self, counter: str, policy: Policy, suffix: str) -> str:
        if len(counter) > _MAX_COUNTER_CHARS:
            counter = "#" + hashlib.sha256(counter.encode()).hexdigest()
        return f"{self._prefix}:{{envoy/{counter}}}:{_ALGORITHM_TAG[policy.algorithm]}{suffix}"

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register ``ShouldRateLimit`` on ``server`` (``grpc_service.register``)."""
        register(server, proto.add_RateLimitServiceServicer_to_server, self)


def _entries(descriptor: proto.RateLimitDescriptor, index: int) -> list[tuple[str, str]]:
    if not descriptor.entries:
        raise InvalidRequest(
            f"descriptors[{index}] has no entries", f"descriptors[{index}].entries"
        )
    entries = []
    for position, entry in enumerate(descriptor.entries):
        if not entry.key:
            field = f"descriptors[{index}].entries[{position}].key"
            raise InvalidRequest(f"{field} must not be empty", field)
        entries.append((entry.key, entry.value))
    return entries


def _cost(cost: int, policy: Policy) -> int:
    """A cost above what the policy can ever grant is denied like upstream denies it (over
    the limit, consuming nothing), by the limiter without the backend
    (``Limiter.decide_hits``); capping it keeps the numbers small."""
    return min(cost, policy.capacity + 1)


def _outcome(decision: Decision) -> str:
    return OUTCOMES.get(decision.reason) or decision.reason.name.lower()


def _fill(
    status: proto.RateLimitResponse.DescriptorStatus, item: _Limited, decision: Decision
) -> None:
    status.code = _Code.OVER_LIMIT if decision.reason in _OVER else _Code.OK
    limit = status.current_limit
    limit.requests_per_unit = item.hit.policy.limit
    limit.unit = _UNIT_CODES[item.unit]  # type: ignore[assignment]
    limit.name = item.name
    if status.code == _Code.OVER_LIMIT:
        status.limit_remaining = 0  # as upstream, whatever a smaller cost could still get
    else:
        status.limit_remaining = min(max(decision.remaining, 0), MAX_UINT32)
    wait_us = decision.reset_after_us
    if not decision.allowed and decision.retry_after_us > 0:
        wait_us = decision.retry_after_us
    seconds, rest = divmod(max(wait_us, 0), US_PER_SECOND)
    status.duration_until_reset.seconds = seconds
    status.duration_until_reset.nanos = rest * 1000
