"""envoyproxy/ratelimit's YAML loaded unchanged: every field, every error (file and tree
path), and how a request descriptor finds its rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from limiter_service.decision import US_PER_SECOND, Algorithm
from limiter_service.envoy.config import UNIT_SECONDS, EnvoyConfig, load_envoy_config
from limiter_service.errors import ConfigError

FULL = """
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: Second, requests_per_unit: 10}
  - key: path
    value: /login
    rate_limit: {unit: MINUTE, requests_per_unit: 5, name: login}
    descriptors:
      - key: user
        rate_limit: {unit: hour, requests_per_unit: 20}
        value_to_metric: true
  - key: path
    value: /api/*
    rate_limit:
      unit: second
      requests_per_unit: 100
      algorithm: token_bucket
      burst: 20
    shadow_mode: true
  - key: path
    value: /static/*
    share_threshold: true
    rate_limit: {unit: day, requests_per_unit: 7}
  - key: path
    rate_limit: {unit: week, requests_per_unit: 1000, name: any_path}
  - key: tier
    value: internal
    rate_limit: {unlimited: true}
  - key: banned
    rate_limit: {unit: year, requests_per_unit: 0}
  - key: plan
    value: gold
    detailed_metric: true
    rate_limit:
      unit: month
      requests_per_unit: 3
      name: gold
      replaces: [{name: any_path}]
"""


def load(tmp_path: Path, text: str, name: str = "ratelimit.yaml") -> EnvoyConfig:
    path = tmp_path / name
    path.write_text(text)
    return load_envoy_config(path)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_every_field(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    assert config.domains == ("edge",)
    rules = {rule.full_key: rule for rule in config.rules()}
    assert set(rules) == {
        "edge.remote_address",
        "edge.path_/login",
        "edge.path_/login.user",
        "edge.path_/api/*",
        "edge.path_/static/*",
        "edge.path",
        "edge.tier_internal",
        "edge.banned",
        "edge.plan_gold",
    }
    login = rules["edge.path_/login"]
    assert (login.name, login.requests_per_unit, login.unit) == ("login", 5, "minute")
    assert login.policy.window_us == 60 * US_PER_SECOND
    assert login.policy.algorithm is Algorithm.FIXED_WINDOW
    api = rules["edge.path_/api/*"]
    assert api.shadow and api.policy.shadow
    assert (api.policy.algorithm, api.policy.burst, api.policy.limit) == (
        Algorithm.TOKEN_BUCKET,
        20,
        100,
    )
    assert rules["edge.tier_internal"].unlimited and rules["edge.tier_internal"].policy.unlimited
    banned = rules["edge.banned"]
    assert banned.requests_per_unit == 0 and banned.policy.limit == 0
    assert banned.policy.window_us == 365 * 86_400 * US_PER_SECOND
    gold = rules["edge.plan_gold"]
    assert gold.replaces == ("any_path",) and gold.detailed_metric
    assert rules["edge.path"].policy.window_us == 7 * 86_400 * US_PER_SECOND


def test_unit_lengths_are_upstreams() -> None:
    assert UNIT_SECONDS == {
        "second": 1,
        "minute": 60,
        "hour": 3600,
        "day": 86_400,
        "week": 604_800,
        "month": 2_592_000,
        "year": 31_536_000,
    }


def test_most_specific_rule_wins(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)

    def rule_of(*entries: tuple[str, str]) -> str | None:
        found = config.match("edge", entries)
        return found.rule.full_key if found else None

    assert rule_of(("path", "/login")) == "edge.path_/login"  # exact beats the rest
    assert rule_of(("path", "/api/v1/x")) == "edge.path_/api/*"  # prefix beats no value
    assert rule_of(("path", "/other")) == "edge.path"  # no value: any value
    assert rule_of(("path", "/login"), ("user", "ann")) == "edge.path_/login.user"
    assert rule_of(("remote_address", "10.0.0.1")) == "edge.remote_address"


def test_descriptors_matching_no_rule(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    assert config.match("other-domain", [("remote_address", "1")]) is None
    assert config.match("edge", [("unknown", "x")]) is None
    # Deeper than the tree, and (upstream) no backtracking to the value-less rule.
    assert config.match("edge", [("remote_address", "1"), ("path", "/")]) is None
    assert config.match("edge", [("path", "/login"), ("device", "x")]) is None
    assert config.match("edge", []) is None


def test_counters_per_actual_value_and_shared_prefix(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)

    def counter(*entries: tuple[str, str]) -> str:
        found = config.match("edge", entries)
        assert found is not None
        return found.counter

    # No value and prefix rules: each actual value its own counter.
    assert counter(("remote_address", "1")) != counter(("remote_address", "2"))
    assert counter(("path", "/api/a")) != counter(("path", "/api/b"))
    # share_threshold: every value under the prefix shares one.
    assert counter(("path", "/static/a")) == counter(("path", "/static/b"))
    # The separators cannot be forged by values.
    assert counter(("remote_address", "a|b=c")) == "edge|remote_address=a%7Cb%3Dc"
    assert counter(("path", "/login"), ("user", "a")) == "edge|path=/login|user=a"


def test_metric_keys_carry_values_only_when_asked(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)

    def metric(*entries: tuple[str, str]) -> str:
        found = config.match("edge", entries)
        assert found is not None
        return found.metric_key

    assert metric(("remote_address", "10.0.0.1")) == "edge.remote_address"
    assert metric(("path", "/api/v1")) == "edge.path_/api/*"
    assert metric(("path", "/login"), ("user", "ann")) == "edge.path_/login.user_ann"
    assert metric(("plan", "gold")) == "edge.plan_gold"


def test_directory_of_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("domain: a\ndescriptors:\n  - key: k\n")
    (tmp_path / "b.yml").write_text("domain: b\n")
    (tmp_path / "notes.txt").write_text("not config")
    config = load_envoy_config(tmp_path)
    assert config.domains == ("a", "b")
    (tmp_path / "c.yaml").write_text("domain: a\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: domain: 'a' is also configured in .*a\.yaml"):
        load_envoy_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("descriptors: []\n", "ratelimit.yaml: domain: is required"),
        ("domain: ''\n", "ratelimit.yaml: domain: must not be empty"),
        ("- just a list\n", "ratelimit.yaml: (top): expected a mapping"),
        ("domain: d\nextra: 1\n", "ratelimit.yaml: extra: unknown field"),
        ("domain: d\ndescriptors: {key: a}\n", "descriptors: must be a list"),
        ("domain: d\ndescriptors: [{value: a}]\n", "descriptors[0].key: is required"),
        ("domain: d\ndescriptors: [{key: a, colour: red}]\n", "descriptors[0].colour: unknown"),
        (
            "domain: d\ndescriptors:\n  - key: a\n  - key: b\n    descriptors:\n"
            "      - key: c\n        rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            "ratelimit.yaml: descriptors[1].descriptors[0].rate_limit.unit: 'fortnight' is not",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {requests_per_unit: 1}}]\n",
            "descriptors[0].rate_limit.unit: is required",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {unit: second, "
            "requests_per_unit: -1}}]\n",
            "descriptors[0].rate_limit.requests_per_unit: must be a whole number",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {unit: second, "
            "requests_per_unit: 1, per: 2}}]\n",
            "descriptors[0].rate_limit.per: unknown field",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {unlimited: true, unit: second}}]\n",
            "descriptors[0].rate_limit.unit: an unlimited rate_limit takes no unit",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {unlimited: yes please}}]\n",
            "descriptors[0].rate_limit.unlimited: must be true or false",
        ),
        (
            "domain: d\ndescriptors: [{key: a, shadow_mode: 1, rate_limit: {unit: second}}]\n",
            "descriptors[0].shadow_mode: must be true or false",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {unit: second, "
            "replaces: [{name: ''}]}}]\n",
            "descriptors[0].rate_limit.replaces[0].name: must not be empty",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {unit: second, replaces: x}}]\n",
            "descriptors[0].rate_limit.replaces: must be a list",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {unit: second, "
            "requests_per_unit: 5, algorithm: leaky}}]\n",
            "descriptors[0].rate_limit.algorithm: 'leaky' is not one of",
        ),
        (
            "domain: d\ndescriptors: [{key: a, rate_limit: {unit: second, "
            "requests_per_unit: 5, burst: 9}}]\n",
            "descriptors[0].rate_limit.burst: only algorithm token_bucket takes a burst",
        ),
        (
            "domain: d\ndescriptors: [{key: a, share_threshold: true}]\n",
            "descriptors[0].share_threshold: only a value ending in '*' can share",
        ),
        (
            "domain: d\ndescriptors: [{key: a, value: x}, {key: a, value: x}]\n",
            "descriptors[1]: duplicate descriptor a=x",
        ),
        (
            "domain: d\ndescriptors: [{key: a}, {key: a}]\n",
            "descriptors[1]: duplicate descriptor a (without a value)",
        ),
        ("domain: d\ndescriptors: [\n", "ratelimit.yaml: not valid YAML"),
    ],
)
def test_errors_name_the_file_and_the_path(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_envoy_config(tmp_path / "absent.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.yaml or \*\.yml files"):
        load_envoy_config(empty)
