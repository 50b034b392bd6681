"""``ShouldRateLimit`` without a network: the memory backend, Prometheus metrics by domain and
rule key (values only where the rule asks), all-or-nothing, replaces and overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from limiter_service.backends.memory import MemoryBackend
from limiter_service.deny_cache import DenyCache
from limiter_service.envoy import proto
from limiter_service.envoy.config import load_envoy_config
from limiter_service.envoy.service import EnvoyRateLimitService
from limiter_service.errors import InvalidRequest
from limiter_service.limiter import Limiter
from limiter_service.metrics import PrometheusMetrics
from limiter_service.policies import default_policies
from tests.integration.envoy_client import Code, Descriptor, descriptor, request
from tests.unit.conftest import SECOND, T0, FakeClock
from tests.unit.test_limiter import RecordingBackend

CONFIG = """
domain: unit
descriptors:
  - key: ip
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: user
    detailed_metric: true
    rate_limit: {unit: hour, requests_per_unit: 5}
  - key: banned
    rate_limit: {unit: hour, requests_per_unit: 0}
  - key: path
    rate_limit: {unit: hour, requests_per_unit: 9, name: any_path}
  - key: internal
    rate_limit: {unlimited: true, replaces: [{name: any_path}]}
  - key: vip
    rate_limit: {unit: hour, requests_per_unit: 50, replaces: [{name: any_path}]}
"""


class Context:
    """What the handler reads of a ``grpc.aio.ServicerContext``."""

    def time_remaining(self) -> float:
        return 5.0

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    async def abort(self, *args: Any) -> None:
        raise AssertionError(f"aborted: {args}")


@pytest.fixture
def service(tmp_path: Path) -> EnvoyRateLimitService:
    path = tmp_path / "ratelimit.yaml"
    path.write_text(CONFIG)
    metrics = PrometheusMetrics()
    limiter = Limiter(default_policies(10, 60), MemoryBackend(), metrics=metrics)
    return EnvoyRateLimitService(limiter, load_envoy_config(path))


async def ask(
    service: EnvoyRateLimitService, *descriptors: Descriptor, hits_addend: int = 0
) -> proto.RateLimitResponse:
    answer: proto.RateLimitResponse = await service.ShouldRateLimit(
        request("unit", descriptors, hits_addend),
        Context(),
    )
    return answer


def sample(service: EnvoyRateLimitService, **labels: str) -> float:
    assert isinstance(service.metrics, PrometheusMetrics)
    found = service.metrics.registry.get_sample_value("ratelimit_envoy_decisions_total", labels)
    return 0.0 if found is None else found


async def test_denied_request_consumes_nothing(service: EnvoyRateLimitService) -> None:
    refused = await ask(service, descriptor(("ip", "1")), descriptor(("banned", "x")))
    assert refused.overall_code == Code.OVER_LIMIT
    assert [s.code for s in refused.statuses] == [Code.OK, Code.OVER_LIMIT]
    assert refused.statuses[0].limit_remaining == 2  # what it has left, nothing counted
    alone = await ask(service, descriptor(("ip", "1")))
    assert alone.statuses[0].limit_remaining == 1


async def test_metrics_by_domain_and_key_values_only_when_asked(
    service: EnvoyRateLimitService,
) -> None:
    for _ in range(3):
        await ask(service, descriptor(("ip", "10.9.8.7")), descriptor(("user", "ann")))
    assert sample(service, domain="unit", key="unit.ip", outcome="allowed") == 2
    assert sample(service, domain="unit", key="unit.ip", outcome="denied") == 1
    assert sample(service, domain="unit", key="unit.user_ann", outcome="not_all_allowed") == 1
    assert isinstance(service.metrics, PrometheusMetrics)
    assert b"10.9.8.7" not in generate_latest(service.metrics.registry)
    await ask(service, descriptor(("nothing", "x")))
    assert sample(service, domain="unit", key="", outcome="no_rule") == 1


async def test_unlimited_rules_replace_too_as_upstream(service: EnvoyRateLimitService) -> None:
    reply = await ask(service, descriptor(("path", "/")), descriptor(("internal", "yes")))
    path, internal = reply.statuses
    assert not path.HasField("current_limit") and path.code == Code.OK
    assert internal.limit_remaining == 2**32 - 1 and not internal.HasField("current_limit")
    assert sample(service, domain="unit", key="unit.internal", outcome="unlimited") == 1
    assert sample(service, domain="unit", key="unit.path", outcome="replaced") == 1
    again = await ask(service, descriptor(("path", "/")))
    assert again.statuses[0].limit_remaining == 8  # the replaced request counted nothing


async def test_replaces_drops_the_named_limit(service: EnvoyRateLimitService) -> None:
    reply = await ask(service, descriptor(("path", "/")), descriptor(("vip", "yes")))
    path, vip = reply.statuses
    assert not path.HasField("current_limit") and path.code == Code.OK
    assert vip.current_limit.requests_per_unit == 50
    assert sample(service, domain="unit", key="unit.path", outcome="replaced") == 1
    again = await ask(service, descriptor(("path", "/")))
    assert again.statuses[0].limit_remaining == 8  # the replaced request counted nothing


async def test_override_applies_in_a_known_domain_even_without_a_rule(
    service: EnvoyRateLimitService,
) -> None:
    reply = await ask(service, Descriptor((("nothing", "x"),), override=(1, 1)))
    assert reply.statuses[0].current_limit.requests_per_unit == 1
    again = await ask(service, Descriptor((("nothing", "x"),), override=(1, 1)))
    assert again.overall_code == Code.OVER_LIMIT


def test_invalid_requests_name_the_field(service: EnvoyRateLimitService) -> None:
    with pytest.raises(InvalidRequest) as caught:
        service.plan(request("unit", [descriptor(("ip", "1")), descriptor(("", "x"))]))
    assert caught.value.field == "descriptors[1].entries[0].key"
    with pytest.raises(InvalidRequest) as caught:
        service.plan(request("", [descriptor(("ip", "1"))]))
    assert caught.value.field == "domain"


async def test_deny_cache_answers_keep_the_request_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit.yaml"
    path.write_text(CONFIG)
    metrics = PrometheusMetrics()
    limiter = Limiter(
        default_policies(10, 60), MemoryBackend(), metrics=metrics, deny_cache=DenyCache(100)
    )
    service = EnvoyRateLimitService(limiter, load_envoy_config(path))
    for _ in range(2):
        await ask(service, descriptor(("ip", "8")))
    for _ in range(3):  # the first denial is Redis's, the next ones the deny cache's
        refused = await ask(service, descriptor(("ip", "7")), descriptor(("ip", "8")))
        assert [s.code for s in refused.statuses] == [Code.OK, Code.OVER_LIMIT]
    assert value_of(metrics, "ratelimit_deny_cache_answers_total", policy="unit.ip") >= 1
    alone = await ask(service, descriptor(("ip", "7")))
    assert alone.statuses[0].limit_remaining == 1


def value_of(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


ONE_PER_HOUR = (
    "domain: d\ndescriptors:\n  - key: ip\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"
)
ONE_PER_SECOND = ONE_PER_HOUR.replace("hour", "second")


async def test_a_config_reload_drops_the_deny_cache(tmp_path: Path) -> None:
    clock = FakeClock(T0 - T0 % (3600 * SECOND) + 10 * SECOND + 500_000)  # 10.5 s into an hour
    path = tmp_path / "ratelimit.yaml"
    path.write_text(ONE_PER_HOUR)
    limiter = Limiter(default_policies(10, 60), MemoryBackend(clock), deny_cache=DenyCache(100))
    service = EnvoyRateLimitService(limiter, load_envoy_config(path))

    async def code() -> int:
        reply = await service.ShouldRateLimit(request("d", [descriptor(("ip", "x"))]), Context())
        return int(reply.overall_code)

    assert [await code(), await code()] == [Code.OK, Code.OVER_LIMIT]
    assert len(limiter.deny_cache or ()) == 1
    path.write_text(ONE_PER_SECOND)  # the same counter and limit, another window
    service.config = load_envoy_config(path)  # what the reloader applies
    assert len(limiter.deny_cache or ()) == 0
    assert await code() == Code.OK


SLIDING = """
domain: d
descriptors:
  - key: ip
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: sliding_window}
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 5}
"""


async def test_a_cost_above_the_capacity_is_denied_without_the_backend(tmp_path: Path) -> None:
    clock = FakeClock(T0 - T0 % (3600 * SECOND) + 10 * SECOND + 500_000)  # 10.5 s into an hour
    path = tmp_path / "ratelimit.yaml"
    path.write_text(SLIDING)
    backend = RecordingBackend(clock)
    limiter = Limiter(default_policies(10, 60), backend, wall_clock_us=clock)
    service = EnvoyRateLimitService(limiter, load_envoy_config(path))
    for cost in (11, 2**32 - 1):
        reply = await service.ShouldRateLimit(
            request("d", [descriptor(("ip", "x"), hits_addend=cost), descriptor(("user", "u"))]),
            Context(),
        )
        ip, user = reply.statuses
        assert reply.overall_code == Code.OVER_LIMIT
        assert (ip.code, ip.limit_remaining, ip.current_limit.requests_per_unit) == (
            Code.OVER_LIMIT,
            0,
            10,
        )
        # The time to the end of the minute, as upstream reports it.
        assert (ip.duration_until_reset.seconds, ip.duration_until_reset.nanos) == (49, 500_000_000)
        assert (user.code, user.limit_remaining) == (Code.OK, 5)
    assert backend.calls == [1, 1]  # only the other descriptor, as a dry run
    alone = await service.ShouldRateLimit(request("d", [descriptor(("user", "u"))]), Context())
    assert alone.statuses[0].limit_remaining == 4  # nothing was consumed


async def test_a_descriptor_hits_addend_of_0_checks_without_counting(
    service: EnvoyRateLimitService,
) -> None:
    for _ in range(3):
        checked = await ask(service, descriptor(("ip", "a"), hits_addend=0))
        assert (checked.overall_code, checked.statuses[0].limit_remaining) == (Code.OK, 2)
    counted = await ask(service, descriptor(("ip", "a")), hits_addend=0)  # the request's 0: 1
    assert counted.statuses[0].limit_remaining == 1
    assert (await ask(service, descriptor(("ip", "a")))).statuses[0].limit_remaining == 0
    # Adding nothing to a full counter is not over it (upstream: over means above the limit).
    full = await ask(service, descriptor(("ip", "a"), hits_addend=0))
    assert (full.overall_code, full.statuses[0].limit_remaining) == (Code.OK, 0)
    assert (await ask(service, descriptor(("ip", "a")))).overall_code == Code.OVER_LIMIT


def label_values(service: EnvoyRateLimitService, metric: str, label: str) -> set[str]:
    assert isinstance(service.metrics, PrometheusMetrics)
    return {
        sample.labels[label]
        for family in service.metrics.registry.collect()
        if family.name == metric
        for sample in family.samples
        if label in sample.labels
    }


async def test_request_chosen_names_never_become_metric_labels(
    service: EnvoyRateLimitService,
) -> None:
    for i in range(50):
        await ask(service, Descriptor(((f"k{i}", "x"),), override=(5, 1)))
        await ask(service, Descriptor((("ip", f"{i}"),), override=(5, 1)))
        await service.ShouldRateLimit(request(f"dom{i}", [descriptor(("ip", "1"))]), Context())
    policies = label_values(service, "ratelimit_decisions", "policy")
    keys = label_values(service, "ratelimit_envoy_decisions", "key")
    domains = label_values(service, "ratelimit_envoy_decisions", "domain")
    assert policies == {"unit.override", "unit.ip"}
    assert keys == {"unit.override", "unit.ip", ""}
    assert domains == {"unit", ""}
    # Each override still counts on a counter of its own (named by the request's entries).
    again = await ask(service, Descriptor((("k7", "x"),), override=(5, 1)))
    assert again.statuses[0].limit_remaining == 3


async def test_an_over_limit_descriptor_has_nothing_remaining(
    service: EnvoyRateLimitService,
) -> None:
    await ask(service, descriptor(("ip", "r")))
    refused = await ask(service, descriptor(("ip", "r"), hits_addend=2))  # 1 left, 2 asked
    assert refused.statuses[0].code == Code.OVER_LIMIT
    assert refused.statuses[0].limit_remaining == 0
    assert (await ask(service, descriptor(("ip", "r")))).statuses[0].limit_remaining == 0
