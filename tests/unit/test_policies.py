"""Policies file parsing, error messages and policy choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from limiter_service.decision import Algorithm
from limiter_service.errors import ConfigError, UnknownPolicy
from limiter_service.policies import default_policies, load_policies, parse_window

GOOD = """
policies:
  login:
    limit: 5
    window: 1m
    algorithm: sliding_window
    match: "login:*"
  api:
    limit: 100
    window: 1h
    algorithm: token_bucket
    burst: 20
    match: "key:"
  default:
    limit: 10
    window: 60s
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("250ms", 250_000),
        ("30s", 30_000_000),
        ("1m", 60_000_000),
        ("2h", 7_200_000_000),
        ("1d", 86_400_000_000),
        ("45", 45_000_000),
        (45, 45_000_000),
    ],
)
def test_parse_window(text: str | int, us: int) -> None:
    assert parse_window(text) == us


@pytest.mark.parametrize("text", ["", "0s", "-1s", "1 week", "1.5s", "s"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_window(text)


def test_loads_policies_in_order_and_matches(tmp_path: Path) -> None:
    policies = load_policies(write(tmp_path, GOOD))
    assert policies.names == ("login", "api", "default")
    assert policies.resolve("", "login:bob").name == "login"
    assert policies.resolve("", "key:abc").name == "api"
    assert policies.resolve("", "ip:1.2.3.4").name == "default"
    assert policies.resolve("api", "login:bob").name == "api"  # a named policy wins
    api = policies.resolve("api", "x")
    assert api.algorithm is Algorithm.TOKEN_BUCKET and api.burst == 20 and api.capacity == 20
    login = policies.resolve("login", "x")
    assert login.window_us == 60_000_000 and login.burst == 5


def test_unknown_policy_names_the_known_ones(tmp_path: Path) -> None:
    policies = load_policies(write(tmp_path, GOOD))
    with pytest.raises(UnknownPolicy, match=r"'nope'; known policies: login, api, default"):
        policies.resolve("nope", "k")


def test_no_default_and_no_match_is_not_found(tmp_path: Path) -> None:
    policies = load_policies(
        write(tmp_path, "policies:\n  a: {limit: 1, window: 1s, match: 'a:'}\n")
    )
    assert policies.resolve("", "a:1").name == "a"
    with pytest.raises(UnknownPolicy, match="no 'default' policy"):
        policies.resolve("", "b:1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("policies:\n  p: {limit: 0, window: 1s}\n", "policy 'p': field 'limit'"),
        ("policies:\n  p: {limit: 5, window: 1w}\n", "policy 'p': field 'window'"),
        ("policies:\n  p: {limit: 5}\n", "policy 'p': field 'window'"),
        ("policies:\n  p: {limit: 5, window: 1s, algorithm: leaky}\n", "field 'algorithm'"),
        ("policies:\n  p: {limit: 5, window: 1s, burst: 3}\n", "policy 'p': field 'burst'"),
        ("policies:\n  p: {limit: 5, window: 1s, colour: red}\n", "field 'colour'"),
        ("policies:\n  'bad name': {limit: 5, window: 1s}\n", "policy 'bad name': name"),
        ("policies:\n  p: {limit: 2000, window: 1ms, algorithm: token_bucket}\n", "field 'limit'"),
        (
            "policies:\n  p: {limit: 5, window: 1s, overrides: [{limit: 9}]}\n",
            "'overrides.0.match'",
        ),
        (
            "policies:\n  p: {limit: 5, window: 1s, overrides: [{match: a, limit: 9, window: x}]}",
            "field 'overrides.0.window'",
        ),
        (
            "policies:\n  p: {limit: 5, window: 1s, overrides: [{match: a, limit: 9, burst: 2}]}\n",
            "field 'overrides.0.burst'",
        ),
        ("policies:\n  p: {window: 1s}\n", "policy 'p': field 'limit'"),
        ("policies:\n  p: {limit: 5, window: 1s, shadow: maybe}\n", "field 'shadow'"),
        ("policies: [1, 2]\n", "top-level 'policies:'"),
        ("policies: {p: [1]\n", "not valid YAML"),
    ],
)
def test_invalid_files_name_file_policy_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_policies(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policies(tmp_path / "absent.yaml")


def test_default_policies_from_legacy_env_values() -> None:
    policies = default_policies(7, 30)
    policy = policies.resolve("", "anything")
    assert (policy.name, policy.limit, policy.window_us) == ("default", 7, 30_000_000)
    assert policy.algorithm is Algorithm.FIXED_WINDOW


MODEL = """
policies:
  api:
    limit: 100
    window: 1m
    shadow: true
    allow_request_override: true
    overrides:
      - {match: "key:premium-*", limit: 1000}
      - {match: "key:internal-", limit: 5, window: 1s}
  bucket:
    limit: 10
    window: 10s
    algorithm: token_bucket
    burst: 4
    overrides:
      - {match: "vip:", limit: 100, burst: 50}
  probes:
    unlimited: true
  default:
    limit: 10
    window: 60s
"""


def test_shadow_unlimited_and_request_override_flags(tmp_path: Path) -> None:
    policies = load_policies(write(tmp_path, MODEL))
    api = policies.resolve("api", "k")
    assert (api.shadow, api.unlimited, api.allow_request_override) == (True, False, True)
    probes = policies.resolve("probes", "k")
    assert (probes.unlimited, probes.shadow, probes.limit) == (True, False, 0)
    default = policies.resolve("default", "k")
    assert (default.shadow, default.unlimited, default.allow_request_override) == (
        False,
        False,
        False,
    )


def test_overrides_apply_by_key_first_match_wins(tmp_path: Path) -> None:
    api = load_policies(write(tmp_path, MODEL)).resolve("api", "")
    premium = api.for_key("key:premium-42")
    assert (premium.name, premium.limit, premium.window_us) == ("api", 1000, 60_000_000)
    internal = api.for_key("key:internal-7")
    assert (internal.limit, internal.window_us) == (5, 1_000_000)
    assert api.for_key("key:basic-1") is api
    assert premium.overrides == () and premium.shadow  # the rest of the policy stays


def test_token_bucket_override_burst(tmp_path: Path) -> None:
    bucket = load_policies(write(tmp_path, MODEL)).resolve("bucket", "")
    assert (bucket.limit, bucket.burst) == (10, 4)
    vip = bucket.for_key("vip:1")
    assert (vip.limit, vip.burst, vip.capacity) == (100, 50, 50)
    assert bucket.with_quota(20, None).burst == 20  # burst follows the new limit
