"""The base images a compose file runs on, one reference a line: the ``image:`` of every
service that builds nothing, and the ``FROM`` of every Dockerfile a service builds
(stages and ``scratch`` aside). ``scripts/compose/standins.sh`` builds stand-ins for them.

    python scripts/compose/base_images.py [deploy/docker-compose.yml]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

__all__ = ["base_images"]

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"
_FROM = re.compile(
    r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<ref>\S+)(?:\s+AS\s+(?P<stage>\S+))?", re.I
)


def _dockerfile_bases(path: Path) -> list[str]:
    bases: list[str] = []
    stages: set[str] = set()
    for line in path.read_text().splitlines():
        found = _FROM.match(line)
        if found is None:
            continue
        ref = found["ref"]
        if ref.lower() != "scratch" and ref not in stages:
            bases.append(ref)
        if found["stage"]:
            stages.add(found["stage"])
    return bases


def base_images(compose_file: Path) -> list[str]:
    """Every base image reference, in first-seen order, without repeats."""
    compose = yaml.safe_load(compose_file.read_text())
    refs: list[str] = []
    for service in compose["services"].values():
        build = service.get("build")
        if build is None:
            refs.append(service["image"])
            continue
        context = compose_file.parent / build.get("context", ".")
        refs += _dockerfile_bases(context / build.get("dockerfile", "Dockerfile"))
    return list(dict.fromkeys(refs))


if __name__ == "__main__":
    print("\n".join(base_images(Path(sys.argv[1]) if len(sys.argv) > 1 else COMPOSE_FILE)))
