"""Policies: parsing the YAML file (or the legacy env vars) and choosing one for a request.

File format (``LIMITER_POLICIES``)::

    policies:
      login:                      # name: letters, digits, '_', '-', '.'
        limit: 5                  # units per window, >= 1
        window: 1m                # 250ms, 30s, 1m, 1h, 1d or plain seconds
        algorithm: sliding_window # fixed_window (default), sliding_window, token_bucket
        match: "login:*"          # optional glob (has * ? or [) or prefix of the key
      api:
        limit: 100
        window: 1m
        shadow: true              # count, but never deny (REASON_SHADOW_OVER_LIMIT instead)
        allow_request_override: true  # honour ShouldAllowRequest.limit / .window
        overrides:                # other quotas for some keys; first match wins
          - {match: "key:premium-*", limit: 1000}
          - {match: "key:internal-", limit: 10000, window: 1s}
      health-checks:
        unlimited: true           # always allowed, never counted (no Redis round trip)
      default:
        limit: 10
        window: 60s

Policies are tried in file order; the first whose ``match`` fits a key that names no policy
wins, else ``default``. Overrides apply to the policy chosen, whether by name or by match.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from limiter_service.decision import US_PER_SECOND, Algorithm, Override, Policy, key_matches
from limiter_service.errors import ConfigError, UnknownPolicy

DEFAULT_POLICY = "default"
MAX_LIMIT = 2**32 - 1
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_WINDOW = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_US = {"ms": 1_000, "s": US_PER_SECOND, "m": 60 * US_PER_SECOND, "h": 3600 * US_PER_SECOND}
_UNIT_US["d"] = 24 * _UNIT_US["h"]


def parse_window(value: str | int) -> int:
    """Return a window in microseconds from ``"250ms"``, ``"30s"``, ``"1m"``, ``"1h"``,
    ``"1d"`` or a number of seconds. Raises ``ValueError`` naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("window must be a duration like 60s, 1m, 1h")
    text = str(value) if isinstance(value, int) else value
    found = _WINDOW.match(text)
    if not found:
        raise ValueError(f"window {value!r} is not a duration like 250ms, 60s, 1m, 1h or 1d")
    window_us = int(found.group(1)) * _UNIT_US[found.group(2) or "s"]
    if window_us <= 0:
        raise ValueError("window must be longer than zero")
    return window_us


class FieldProblem(ValueError):
    """A policy field is wrong beyond what its type says."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check_token_bucket(policy: Policy) -> Policy:
    if policy.algorithm is Algorithm.TOKEN_BUCKET and policy.emission_interval_us < 1:
        raise FieldProblem("limit", "token_bucket needs window / limit of at least 1 microsecond")
    return policy


def _valid_window(value: str | int | None) -> str | int | None:
    if value is not None:
        parse_window(value)
    return value


Window = Annotated[str | int | None, AfterValidator(_valid_window)]


class _OverrideSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: str = Field(min_length=1)
    limit: int = Field(ge=1, le=MAX_LIMIT)
    window: Window = None
    burst: int | None = Field(default=None, ge=1, le=MAX_LIMIT)

    def build(self) -> Override:
        window_us = parse_window(self.window) if self.window is not None else None
        return Override(self.match, self.limit, window_us, self.burst)


class _PolicySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    window: Window = None
    algorithm: Algorithm = Algorithm.FIXED_WINDOW
    burst: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    match: str = ""
    shadow: bool = False
    unlimited: bool = False
    allow_request_override: bool = False
    overrides: list[_OverrideSpec] = Field(default_factory=list)

    def build(self, name: str) -> Policy:
        if self.unlimited:
            # Nothing is counted: limit and window only describe the policy to clients.
            limit, window = self.limit or 0, self.window or 1
        elif self.limit is None or self.window is None:
            raise FieldProblem("limit" if self.limit is None else "window", "Field required")
        elif self.limit < 1:
            raise FieldProblem("limit", "must be at least 1 (or say unlimited: true)")
        else:
            limit, window = self.limit, self.window
        if self.burst is not None and self.algorithm is not Algorithm.TOKEN_BUCKET:
            raise FieldProblem("burst", "only token_bucket takes a burst")
        policy = Policy(
            name=name,
            limit=limit,
            window_us=parse_window(window),
            algorithm=self.algorithm,
            burst=self.burst if self.burst is not None else limit,
            match=self.match,
            shadow=self.shadow,
            unlimited=self.unlimited,
            allow_request_override=self.allow_request_override,
            overrides=tuple(spec.build() for spec in self.overrides),
        )
        for index, override in enumerate(policy.overrides):
            if override.burst is not None and self.algorithm is not Algorithm.TOKEN_BUCKET:
                raise FieldProblem(f"overrides.{index}.burst", "only token_bucket takes a burst")
            try:
                _check_token_bucket(policy.with_quota(*override[1:]))
            except FieldProblem as exc:
                raise FieldProblem(f"overrides.{index}.{exc.field}", exc.message) from None
        return _check_token_bucket(policy)


class PolicySet:
    """The policies in force, in match order, and the rule that picks one for a request."""

    def __init__(self, policies: list[Policy]) -> None:
        if not policies:
            raise ConfigError("no policies defined")
        self._by_name: dict[str, Policy] = {p.name: p for p in policies}
        self._matchers = [p for p in policies if p.match]
        self.names = tuple(self._by_name)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self._by_name.values())

    def resolve(self, name: str, key: str) -> Policy:
        """The policy named ``name``; with ``name`` empty, the first matching ``key``, else
        ``default``. Raises ``UnknownPolicy`` naming the known policies."""
        if name:
            found = self._by_name.get(name)
            if found is None:
                raise UnknownPolicy(
                    f"unknown policy {shown(name)}; known policies: {', '.join(self.names)}",
                    name,
                )
            return found
        for policy in self._matchers:
            if key_matches(policy.match, key):
                return policy
        default = self._by_name.get(DEFAULT_POLICY)
        if default is None:
            raise UnknownPolicy(
                f"no policy matches key {shown(key)} and there is no 'default' policy; "
                f"known policies: {', '.join(self.names)}",
                "",
            )
        return default


def shown(text: str, limit: int = 64) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters (clients choose it)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} chars)"


def default_policies(rate_limit: int, time_window_s: int) -> PolicySet:
    """The proof of concept's single policy: ``rate_limit`` per ``time_window_s``, fixed window."""
    spec = _PolicySpec(limit=rate_limit, window=time_window_s)
    return PolicySet([spec.build(DEFAULT_POLICY)])


def load_policies(path: Path) -> PolicySet:
    """Read and validate a policies file. Raises ``ConfigError`` naming the file, the policy
    and the field at fault."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read policies file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("policies"), Mapping):
        raise ConfigError(f"{path}: expected a top-level 'policies:' mapping of name -> policy")
    policies: list[Policy] = []
    for name, body in document["policies"].items():
        where = f"{path}: policy {name!r}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: name must be 1-64 of letters, digits, '_', '-', '.'")
        if not isinstance(body, Mapping):
            raise ConfigError(f"{where}: expected a mapping with limit, window, algorithm")
        try:
            policies.append(_PolicySpec.model_validate(dict(body)).build(name))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "policy"
            raise ConfigError(f"{where}: field {field!r}: {first['msg']}") from None
        except FieldProblem as exc:
            raise ConfigError(f"{where}: field {exc.field!r}: {exc.message}") from None
    return PolicySet(policies)
