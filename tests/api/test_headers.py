"""RateLimit-Policy / RateLimit field formatting (pure functions, no network)."""

from __future__ import annotations

import pytest

from ratelimit_client import Decision, Reason
from ratelimit_client.fastapi.headers import HeaderCache, policy_field, sf_string


def test_sf_string_quotes_and_escapes() -> None:
    assert sf_string("default") == '"default"'
    assert sf_string('a"b\\c') == '"a\\"b\\\\c"'


@pytest.mark.parametrize("bad", ["caf\u00e9", "tab\there", "new\nline"])
def test_sf_string_refuses_what_it_cannot_carry(bad: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        sf_string(bad)


def test_policy_field_matches_the_draft_syntax() -> None:
    assert policy_field("default", 10, 60) == '"default";q=10;w=60'
    assert policy_field("login", 5, 0) == '"login";q=5'


def test_ratelimit_field_matches_the_draft_syntax_and_never_goes_negative() -> None:
    cache = HeaderCache()
    counted = Decision(True, Reason.WITHIN_LIMIT, "default", 10, 9, 42, 0, 60)
    assert cache.as_dict(counted)["RateLimit"] == '"default";r=9;t=42'
    overdrawn = counted._replace(remaining=-3, reset_s=-1)
    assert cache.as_dict(overdrawn)["RateLimit"] == '"default";r=0;t=0'


def test_cache_encodes_the_policy_once_and_formats_the_counters() -> None:
    cache = HeaderCache()
    first = Decision(True, Reason.WITHIN_LIMIT, "default", 10, 9, 42, 0, 60)
    second = first._replace(remaining=8, reset_s=41)
    assert cache.raw(first) == [
        (b"ratelimit-policy", b'"default";q=10;w=60'),
        (b"ratelimit", b'"default";r=9;t=42'),
    ]
    assert cache.raw(second)[1] == (b"ratelimit", b'"default";r=8;t=41')
    assert cache.raw(second)[0][1] is cache.raw(first)[0][1]
    assert cache.as_dict(Decision(False, Reason.OVER_LIMIT, "other", 5, 0, 7, 7, 90)) == {
        "RateLimit-Policy": '"other";q=5;w=90',
        "RateLimit": '"other";r=0;t=7',
    }


def test_cache_follows_the_window_each_decision_reports() -> None:
    cache = HeaderCache()
    decision = Decision(True, Reason.WITHIN_LIMIT, "default", 10, 9, 42, 0, 60)
    # The limiter's policy changed (or another replica still has the old one)...
    assert cache.as_dict(decision._replace(window_s=3600))["RateLimit-Policy"] == (
        '"default";q=10;w=3600'
    )
    assert cache.as_dict(decision)["RateLimit-Policy"] == '"default";q=10;w=60'
    # ...and a decision without a window (a fake may report none): w is left out.
    assert cache.as_dict(decision._replace(window_s=0))["RateLimit-Policy"] == '"default";q=10'
