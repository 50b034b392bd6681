"""envoyproxy/ratelimit's configuration format, loaded unchanged, and the rule lookup.

``LIMITER_ENVOY_CONFIG`` names a file or a directory of ``*.yaml``/``*.yml`` files, one
``domain`` each::

    domain: edge                      # what Envoy's filter sends as RateLimitRequest.domain
    descriptors:
      - key: remote_address           # no value: each distinct value has its own counter
        rate_limit: {unit: second, requests_per_unit: 10}
      - key: path
        value: /login                 # exact value
        rate_limit: {unit: minute, requests_per_unit: 5, name: login}
        descriptors:                  # nested: a descriptor [path=/login, user=...]
          - key: user
            rate_limit: {unit: hour, requests_per_unit: 20}
      - key: path
        value: /api/*                 # trailing '*': a prefix of the value
        rate_limit:
          unit: second
          requests_per_unit: 100
          algorithm: token_bucket     # our extension (fixed_window by default, as upstream)
          burst: 20                   # our extension, token_bucket only
        shadow_mode: true             # counted and reported in metrics, never denies
      - key: tier
        value: internal
        rate_limit: {unlimited: true} # never limited, never touches Redis
      - key: banned
        rate_limit: {unit: second, requests_per_unit: 0}   # always denies

Other fields, as upstream: ``rate_limit.replaces: [{name: ...}]`` (a request whose
descriptors also matched the named rules is decided without them), ``detailed_metric``
(metrics carry the descriptor's values), ``value_to_metric`` (metrics carry this level's
value) and ``share_threshold`` (a prefix rule's values share one counter). Units:
second, minute, hour, day, week (7 d), month (30 d), year (365 d), in any case.

Matching a request descriptor (its entries in order) walks the tree one level per entry: at
each level an exact ``key``/``value`` wins, then the first prefix rule (file order) whose
prefix the value starts with, then the ``key`` without a value. There is no backtracking,
and a rule applies only when the descriptor ends at its level: a descriptor with more
entries than the tree is deep, or fewer than the rule's depth, matches no rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml

from limiter_service.decision import US_PER_SECOND, Algorithm, Policy
from limiter_service.errors import ConfigError
from limiter_service.policies import MAX_LIMIT

__all__ = [
    "UNIT_SECONDS",
    "EnvoyConfig",
    "Match",
    "Node",
    "Rule",
    "load_envoy_config",
]

UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86_400,
    "week": 7 * 86_400,
    "month": 30 * 86_400,
    "year": 365 * 86_400,
}
"""Unit lengths as envoyproxy/ratelimit has them (a month is 30 days, a year 365)."""

_DESCRIPTOR_FIELDS = frozenset(
    {
        "key",
        "value",
        "rate_limit",
        "descriptors",
        "shadow_mode",
        "detailed_metric",
        "value_to_metric",
        "share_threshold",
    }
)
_RATE_LIMIT_FIELDS = frozenset(
    {"unit", "requests_per_unit", "name", "unlimited", "replaces", "algorithm", "burst"}
)
_SAFE = re.compile(r"[%|=]")


def escaped(text: str) -> str:
    """``text`` with the characters that separate a counter's parts escaped."""
    if "|" not in text and "=" not in text and "%" not in text:
        return text
    return _SAFE.sub(lambda found: f"%{ord(found.group()):02X}", text)


@dataclass(frozen=True, slots=True)
class Rule:
    """A configured ``rate_limit``: the limit a matching descriptor is decided by.

    ``full_key`` is upstream's stats key (``domain.key_value.key``), unique in the config;
    the ``policy`` it becomes is named after it. ``requests_per_unit`` 0 always denies.
    """

    full_key: str
    name: str
    requests_per_unit: int
    unit: str
    unlimited: bool
    shadow: bool
    replaces: tuple[str, ...]
    detailed_metric: bool
    policy: Policy


@dataclass(slots=True)
class Level:
    """The rules one level of the tree holds, by how they match an entry."""

    exact: dict[tuple[str, str], Node] = field(default_factory=dict)
    prefixes: list[Node] = field(default_factory=list)
    by_key: dict[str, Node] = field(default_factory=dict)

    def find(self, key: str, value: str) -> Node | None:
        """The most specific node for one entry: exact, then prefix, then key only."""
        node = self.exact.get((key, value))
        if node is not None:
            return node
        for candidate in self.prefixes:
            if candidate.key == key and value.startswith(candidate.value):
                return candidate
        return self.by_key.get(key)


@dataclass(slots=True)
class Node:
    """One configured descriptor: ``value`` empty matches any value; ``prefix``: ``value``
    is a prefix (the ``*`` stripped)."""

    key: str
    value: str
    prefix: bool
    rule: Rule | None
    value_to_metric: bool
    share_threshold: bool
    children: Level


class Match(NamedTuple):
    """What a request descriptor matched: the rule, the identity of its counter (domain
    and the entries, with the actual values) and its metric key."""

    rule: Rule
    counter: str
    metric_key: str


class EnvoyConfig:
    """Every domain's tree; ``match`` finds the rule for a request descriptor."""

    def __init__(self, domains: Mapping[str, Level], sources: Sequence[Path] = ()) -> None:
        self._domains = dict(domains)
        self.sources = tuple(sources)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self._domains)

    def knows(self, domain: str) -> bool:
        return domain in self._domains

    def rules(self) -> Iterable[Rule]:
        """Every configured rule, in file order."""
        for level in self._domains.values():
            yield from _rules(level)

    def match(self, domain: str, entries: Sequence[tuple[str, str]]) -> Match | None:
        """The rule for a descriptor of ``entries`` (key, value) in ``domain``, or ``None``
        (unknown domain, no rule, or the descriptor stops above or goes below a rule)."""
        level = self._domains.get(domain)
        if level is None or not entries:
            return None
        counter = [escaped(domain)]
        metric = [domain]
        detail = [domain]
        node: Node | None = None
        for depth, (key, value) in enumerate(entries):
            if level is None:
                return None
            node = level.find(key, value)
            if node is None:
                return None
            shared = node.prefix and node.share_threshold
            counter.append(f"{escaped(key)}={escaped(node.value + '*' if shared else value)}")
            detail.append(f"{key}_{value}")
            if node.value and not node.prefix:
                metric.append(f"{key}_{node.value}")
            elif node.value_to_metric:
                metric.append(f"{key}_{value}")
            elif node.prefix:
                metric.append(f"{key}_{node.value}*")
            else:
                metric.append(key)
            level = node.children if depth < len(entries) - 1 else None
        if node is None or node.rule is None:
            return None
        rule = node.rule
        metric_key = ".".join(detail if rule.detailed_metric else metric)
        return Match(rule, "|".join(counter), metric_key)


def _rules(level: Level) -> Iterable[Rule]:
    nodes = [*level.exact.values(), *level.prefixes, *level.by_key.values()]
    for node in nodes:
        if node.rule is not None:
            yield node.rule
        yield from _rules(node.children)


class _Problem(Exception):
    """A field at ``path`` is wrong; becomes a ``ConfigError`` naming the file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _flag(body: Mapping[str, object], name: str, path: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise _Problem(_at(path, name), f"must be true or false, not {value!r}")
    return value


def _count(body: Mapping[str, object], name: str, path: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
        raise _Problem(_at(path, name), f"must be a whole number 0..{MAX_LIMIT}, not {value!r}")
    return value


def _text(body: Mapping[str, object], name: str, path: str, required: bool) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise _Problem(_at(path, name), "is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Problem(_at(path, name), f"must be a string, not {value!r}")
    text = str(value)
    if required and not text:
        raise _Problem(_at(path, name), "must not be empty")
    return text


def _known_fields(body: Mapping[str, object], allowed: frozenset[str], path: str) -> None:
    for name in body:
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise _Problem(_at(path, name), f"unknown field (known: {known})")


class _Loader:
    """Builds one file's tree, keeping the full keys of every rule seen so far."""

    def __init__(self, full_keys: set[str]) -> None:
        self._full_keys = full_keys

    def level(self, items: object, path: str, parent_key: str) -> Level:
        if items is None:
            return Level()
        if not isinstance(items, list):
            raise _Problem(path, "must be a list of descriptors")
        level = Level()
        for index, item in enumerate(items):
            where = f"{path}[{index}]"
            node = self.node(item, where, parent_key)
            if node.prefix:
                if any(n.key == node.key and n.value == node.value for n in level.prefixes):
                    raise _Problem(where, f"duplicate descriptor {node.key}={node.value}*")
                level.prefixes.append(node)
            elif node.value:
                if (node.key, node.value) in level.exact:
                    raise _Problem(where, f"duplicate descriptor {node.key}={node.value}")
                level.exact[node.key, node.value] = node
            else:
                if node.key in level.by_key:
                    raise _Problem(where, f"duplicate descriptor {node.key} (without a value)")
                level.by_key[node.key] = node
        return level

    def node(self, body: object, path: str, parent_key: str) -> Node:
        if not isinstance(body, Mapping):
            raise _Problem(path, "must be a mapping with key, value, rate_limit, descriptors")
        _known_fields(body, _DESCRIPTOR_FIELDS, path)
        key = _text(body, "key", path, required=True)
        value = _text(body, "value", path, required=False)
        prefix = value.endswith("*")
        share = _flag(body, "share_threshold", path)
        if share and not prefix:
            raise _Problem(f"{path}.share_threshold", "only a value ending in '*' can share")
        part = f"{key}_{value}" if value else key
        full_key = f"{parent_key}.{part}"
        rule = None
        if "rate_limit" in body:
            rule = self.rule(
                body["rate_limit"],
                f"{path}.rate_limit",
                full_key,
                shadow=_flag(body, "shadow_mode", path),
                detailed=_flag(body, "detailed_metric", path),
            )
        else:
            for name in ("shadow_mode", "detailed_metric"):
                _flag(body, name, path)
        children = self.level(body.get("descriptors"), f"{path}.descriptors", full_key)
        return Node(
            key,
            value[:-1] if prefix else value,
            prefix,
            rule,
            _flag(body, "value_to_metric", path),
            share,
            children,
        )

    def rule(self, body: object, path: str, full_key: str, shadow: bool, detailed: bool) -> Rule:
        if not isinstance(body, Mapping):
            raise _Problem(path, "must be a mapping with unit and requests_per_unit")
        _known_fields(body, _RATE_LIMIT_FIELDS, path)
        unlimited = _flag(body, "unlimited", path)
        unit = _text(body, "unit", path, required=False).lower()
        if unlimited and unit:
            raise _Problem(f"{path}.unit", "an unlimited rate_limit takes no unit")
        if not unlimited and not unit:
            raise _Problem(f"{path}.unit", "is required (second, minute, hour, day, ...)")
        if unit and unit not in UNIT_SECONDS:
            raise _Problem(
                f"{path}.unit", f"{body['unit']!r} is not one of {', '.join(UNIT_SECONDS)}"
            )
        rpu = _count(body, "requests_per_unit", path, 0) or 0
        name = _text(body, "name", path, required=False)
        replaces = self.replaces(body.get("replaces"), f"{path}.replaces")
        algorithm = self.algorithm(body.get("algorithm"), f"{path}.algorithm")
        burst = _count(body, "burst", path, None)
        if burst is not None:
            if algorithm is not Algorithm.TOKEN_BUCKET:
                raise _Problem(f"{path}.burst", "only algorithm token_bucket takes a burst")
            if burst < 1:
                raise _Problem(f"{path}.burst", "must be at least 1")
        if full_key in self._full_keys:
            raise _Problem(path, f"a second rule for {full_key}")
        self._full_keys.add(full_key)
        window_us = UNIT_SECONDS[unit or "second"] * US_PER_SECOND
        if rpu == 0 or unlimited:
            # Always denied (nothing fits in 0) or never counted: the algorithm is moot.
            algorithm = Algorithm.FIXED_WINDOW
        elif algorithm is Algorithm.TOKEN_BUCKET and window_us // rpu < 1:
            raise _Problem(
                f"{path}.requests_per_unit", "token_bucket needs at most 1 per microsecond"
            )
        policy = Policy(
            name=full_key,
            limit=rpu,
            window_us=window_us,
            algorithm=algorithm,
            burst=burst if burst is not None else rpu,
            shadow=shadow,
            unlimited=unlimited,
        )
        return Rule(full_key, name, rpu, unit, unlimited, shadow, replaces, detailed, policy)

    @staticmethod
    def replaces(items: object, path: str) -> tuple[str, ...]:
        if items is None:
            return ()
        if not isinstance(items, list):
            raise _Problem(path, "must be a list of {name: ...}")
        names = []
        for index, item in enumerate(items):
            where = f"{path}[{index}]"
            if not isinstance(item, Mapping):
                raise _Problem(where, "must be a mapping {name: ...}")
            _known_fields(item, frozenset({"name"}), where)
            names.append(_text(item, "name", where, required=True))
        return tuple(names)

    @staticmethod
    def algorithm(value: object, path: str) -> Algorithm:
        if value is None:
            return Algorithm.FIXED_WINDOW
        try:
            return Algorithm(str(value).lower())
        except ValueError:
            choices = ", ".join(a.value for a in Algorithm)
            raise _Problem(path, f"{value!r} is not one of {choices}") from None


def config_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``*.yaml``/``*.yml`` files of a directory, sorted by name
    (hidden files, such as a Kubernetes ConfigMap's ``..data``, left out)."""
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
        )
    return [path]


def load_envoy_config(path: Path) -> EnvoyConfig:
    """Read and validate a file or a directory of files. Raises ``ConfigError`` naming the
    file and the path in the tree (``ratelimit.yaml: descriptors[1].rate_limit.unit: ...``)."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory (LIMITER_ENVOY_CONFIG)")
    files = config_files(path)
    if not files:
        raise ConfigError(f"{path}: no *.yaml or *.yml files in the directory")
    domains: dict[str, Level] = {}
    origin: dict[str, Path] = {}
    full_keys: set[str] = set()
    for file in files:
        try:
            document = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        try:
            domain, level = _load_document(document, full_keys)
        except _Problem as exc:
            raise ConfigError(f"{file}: {exc}") from None
        if domain in domains:
            raise ConfigError(f"{file}: domain: {domain!r} is also configured in {origin[domain]}")
        domains[domain], origin[domain] = level, file
    return EnvoyConfig(domains, files)


def _load_document(document: object, full_keys: set[str]) -> tuple[str, Level]:
    if not isinstance(document, Mapping):
        raise _Problem("(top)", "expected a mapping with domain and descriptors")
    _known_fields(document, frozenset({"domain", "descriptors"}), "")
    domain = _text(document, "domain", "", required=True)
    loader = _Loader(full_keys)
    return domain, loader.level(document.get("descriptors"), "descriptors", domain)
