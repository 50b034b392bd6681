"""The limiter's metrics without a network: what each layer reports lands in the right
series, label children are bound once per policy, state read at scrape time (sheds, master
changes, the policies in force), failure-mode answers by cause, and no metrics at all when
``LIMITER_METRICS_LISTEN`` is empty."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from limiter_service.admission import Admission, AdmissionLimits
from limiter_service.backends.connection import RestartWatch
from limiter_service.backends.memory import MemoryBackend
from limiter_service.decision import Decision, FailureMode, Reason
from limiter_service.errors import Overloaded
from limiter_service.limiter import Limiter, Request
from limiter_service.metrics import NO_METRICS, OUTCOMES, PrometheusMetrics
from limiter_service.policies import PolicySet, default_policies
from limiter_service.server import build_metrics
from limiter_service.settings import Settings
from tests.unit.conftest import FakeClock
from tests.unit.test_limiter import RecordingBackend


def value(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_every_outcome_and_near_limit_per_policy() -> None:
    metrics = PrometheusMetrics(near_limit_ratio=0.3)
    limiter = Limiter(default_policies(10, 60), MemoryBackend(), metrics=metrics)
    for _ in range(12):
        await limiter.decide([Request("ip:1")])
    await limiter.decide([Request("ip:2")] * 3)
    assert {
        name: value(metrics, "ratelimit_decisions_total", policy="default", outcome=name)
        for name in OUTCOMES.values()
    } == {
        "allowed": 13,
        "denied": 2,
        "shadow_denied": 0,
        "fail_open": 0,
        "fail_closed": 0,
        "unlimited": 0,
        "not_all_allowed": 0,
    }
    # remaining < 3: 2, 1 and 0 on the first key; the denials do not count.
    assert value(metrics, "ratelimit_near_limit_total", policy="default") == 3
    assert value(metrics, "ratelimit_backend_decisions_per_round_trip_count") == 13
    assert value(metrics, "ratelimit_backend_decisions_per_round_trip_sum") == 15
    assert value(metrics, "ratelimit_backend_round_trip_seconds_count", result="ok") == 13


async def test_label_children_are_bound_once_per_policy() -> None:
    metrics = PrometheusMetrics()
    limiter = Limiter(default_policies(1000, 60), MemoryBackend(), metrics=metrics)
    await limiter.decide([Request(f"ip:{n}") for n in range(100)])
    bound = metrics._by_policy["default"]
    await limiter.decide([Request("ip:x")])
    assert list(metrics._by_policy) == ["default"] and metrics._by_policy["default"] is bound
    assert b"ip:x" not in generate_latest(metrics.registry)  # keys never become labels


@pytest.mark.parametrize(
    ("mode", "outcome"), [(FailureMode.OPEN, "fail_open"), (FailureMode.CLOSED, "fail_closed")]
)
async def test_failure_mode_answers_by_cause(mode: FailureMode, outcome: str) -> None:
    metrics = PrometheusMetrics()
    backend = RecordingBackend(FakeClock())
    backend.fail = True  # BackendUnavailable("connection refused"): cause "unavailable"
    limiter = Limiter(default_policies(10, 60), backend, failure_mode=mode, metrics=metrics)
    await limiter.decide([Request("ip:1"), Request("ip:2")])
    assert value(metrics, "ratelimit_decisions_total", policy="default", outcome=outcome) == 2
    assert value(metrics, "ratelimit_failure_mode_answers_total", cause="unavailable") == 2
    assert value(metrics, "ratelimit_failure_mode_answers_total", cause="timeout") == 0
    assert value(metrics, "ratelimit_backend_round_trip_seconds_count", result="error") == 1


def test_rpcs_reloads_and_backend_state() -> None:
    metrics = PrometheusMetrics()
    metrics.rpc("ShouldAllow", "OK", 0.002)
    metrics.rpc("ShouldAllow", "OK", 0.0001)
    metrics.rpc("Reset", "UNAVAILABLE", 0.1)
    metrics.reloaded("success")
    metrics.reloaded("error")
    metrics.reloaded("error")
    metrics.backend_probed(True)
    assert value(metrics, "ratelimit_rpc_duration_seconds_count", method="ShouldAllow", code="OK")
    assert (
        value(
            metrics,
            "ratelimit_rpc_duration_seconds_bucket",
            method="ShouldAllow",
            code="OK",
            le="0.00025",
        )
        == 1
    )
    assert (
        value(metrics, "ratelimit_rpc_duration_seconds_count", method="Reset", code="UNAVAILABLE")
        == 1
    )
    assert value(metrics, "ratelimit_policy_reloads_total", result="success") == 1
    assert value(metrics, "ratelimit_policy_reloads_total", result="error") == 2
    assert value(metrics, "ratelimit_backend_up") == 1
    metrics.backend_probed(False)
    assert value(metrics, "ratelimit_backend_up") == 0


class Connector:
    def __init__(self) -> None:
        self.master_changes = 0
        self.restarts = RestartWatch()


def test_state_is_read_when_scraped() -> None:
    metrics = PrometheusMetrics()
    policies: list[PolicySet] = [default_policies(10, 60)]
    admission = Admission(AdmissionLimits())
    connector = Connector()
    metrics.watch(policies=lambda: policies[0], admission=admission, master=connector)
    info = {"policy": "default", "algorithm": "fixed_window", "window_seconds": "60"}
    assert value(metrics, "ratelimit_policy_info", **info, limit="10", mode="enforce") == 1

    policies[0] = default_policies(25, 60)  # a reload swaps the set
    admission.shed.record(Overloaded("full", "peer_rpcs"), 7)
    connector.master_changes = 2
    connector.restarts.saw("a", "m")
    connector.restarts.saw("b", "m")
    assert value(metrics, "ratelimit_policy_info", **info, limit="25", mode="enforce") == 1
    assert value(metrics, "ratelimit_policy_info", **info, limit="10", mode="enforce") == 0
    assert value(metrics, "ratelimit_shed_calls_total", limit="peer_rpcs") == 1
    assert value(metrics, "ratelimit_shed_calls_total", limit="rpcs") == 0
    assert value(metrics, "ratelimit_shed_decisions_total") == 7
    assert value(metrics, "ratelimit_master_changes_total", kind="address") == 2
    assert value(metrics, "ratelimit_master_changes_total", kind="restart") == 1


def test_settings_default_on_empty_off_and_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIMITER_METRICS_LISTEN", raising=False)
    monkeypatch.delenv("LIMITER_METRICS_NEAR_LIMIT_RATIO", raising=False)
    assert Settings().metrics_address == ("0.0.0.0", 9090)
    assert isinstance(build_metrics(Settings()), PrometheusMetrics)
    monkeypatch.setenv("LIMITER_METRICS_LISTEN", "")
    assert Settings().metrics_address is None
    assert build_metrics(Settings()) is NO_METRICS  # nothing recorded, not just not served
    monkeypatch.setenv("LIMITER_METRICS_LISTEN", "[::1]:9100")
    assert Settings().metrics_address == ("::1", 9100)
    for bad in ("9090", "host:", "host:99999"):
        monkeypatch.setenv("LIMITER_METRICS_LISTEN", bad)
        with pytest.raises(ValueError, match="host:port"):
            Settings()
    monkeypatch.setenv("LIMITER_METRICS_LISTEN", "")
    monkeypatch.setenv("LIMITER_METRICS_NEAR_LIMIT_RATIO", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        Settings()


def test_unlimited_and_shadow_outcomes() -> None:
    metrics = PrometheusMetrics()
    metrics.decided(
        [
            Decision(True, 0, 0, 0, 0, "free", Reason.UNLIMITED, 1),
            Decision(True, 5, 0, 0, 9, "trial", Reason.SHADOW_OVER_LIMIT, 60),
        ]
    )
    assert value(metrics, "ratelimit_decisions_total", policy="free", outcome="unlimited") == 1
    assert value(metrics, "ratelimit_decisions_total", policy="trial", outcome="shadow_denied") == 1
    assert value(metrics, "ratelimit_near_limit_total", policy="trial") == 0
