"""``deploy/docker-compose.yml`` as data: its services and their environment variable names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["COMPOSE_FILE", "ENVSUBST_SETTINGS", "compose_env_names", "load_compose"]

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"
ENVSUBST_SETTINGS = frozenset({"NGINX_ENVSUBST_OUTPUT_DIR", "NGINX_ENVSUBST_FILTER"})
"""Settings of the nginx image's template step, not variables of the template."""


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file with its YAML anchors and merge keys resolved (``${VAR:-x}``
    interpolations are left as text)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


def compose_env_names(compose: dict[str, Any], service: str) -> frozenset[str]:
    """The environment variable names ``service`` sets, as a mapping or a list."""
    environment = compose["services"][service].get("environment") or {}
    if isinstance(environment, dict):
        return frozenset(environment)
    return frozenset(str(item).split("=", 1)[0] for item in environment)
