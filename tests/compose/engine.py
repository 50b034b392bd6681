"""podman and podman-compose as the compose tests drive them.

``build_images`` builds what the compose file's ``build:`` sections name, with the engine's
network off (``WHEELHOUSE`` supplies the packages). ``ComposeProject`` brings the project
up and down, runs each container's healthcheck (nothing runs them on a timer without
systemd), kills and starts service containers, and lists what a project left behind.
Every command and its output go to one log file, which error messages point at.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import DeadlineExceededError, wait_until

__all__ = [
    "PROJECT_LABEL",
    "SERVICE_LABEL",
    "BuildSpec",
    "ComposeProject",
    "EngineError",
    "Leftovers",
    "Podman",
    "build_images",
    "build_specs",
]

PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "io.podman.compose.service"
_WHEELHOUSE_MOUNT = "/wheelhouse"


class EngineError(RuntimeError):
    """A podman or podman-compose command failed; the message names it and its log."""


class Podman:
    """Runs ``podman`` (or ``podman-compose``) commands, appending each to ``log``."""

    def __init__(self, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self.env = dict(os.environ if env is None else env)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 120.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (the program included) with this object's environment plus ``env``.

        Raises ``EngineError`` when ``check`` and it exits non-zero, or when it outlives
        ``timeout`` seconds (then it is killed).
        """
        try:
            result = subprocess.run(
                list(argv),
                env={**self.env, **(env or {})},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            self._record(argv, f"timed out after {timeout} s", exc.stdout, exc.stderr)
            raise EngineError(f"{' '.join(argv)}: timed out after {timeout} s") from None
        self._record(argv, f"exit {result.returncode}", result.stdout, result.stderr)
        if check and result.returncode != 0:
            raise EngineError(
                f"{' '.join(argv)}: exit {result.returncode}\n{result.stderr[-2000:]}"
                f"\n(full output in {self.log})"
            )
        return result

    def podman(
        self,
        *args: str,
        timeout: float = 120.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``."""
        return self.run(["podman", *args], timeout=timeout, check=check, env=env)

    def _record(self, argv: Sequence[str], outcome: str, out: object, err: object) -> None:
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(argv)}  # {outcome}\n")
            for stream in (out, err):
                text = stream.decode(errors="replace") if isinstance(stream, bytes) else stream
                if text:
                    log.write(str(text).rstrip("\n") + "\n")


@dataclass(frozen=True)
class BuildSpec:
    """One image the compose file builds: its tag, context and Dockerfile."""

    image: str
    context: Path
    dockerfile: Path


def build_specs(compose: Mapping[str, Any], compose_file: Path) -> list[BuildSpec]:
    """Every distinct image built by a service's ``build:``, paths resolved against the
    compose file's directory as compose does."""
    specs: dict[str, BuildSpec] = {}
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        assert "image" in service, f"{name} builds an image but does not name it"
        context = (compose_file.parent / build.get("context", ".")).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        spec = BuildSpec(service["image"], context, dockerfile)
        assert specs.setdefault(spec.image, spec) == spec, f"{spec.image} is built two ways"
    return list(specs.values())


def build_images(podman: Podman, specs: Iterable[BuildSpec], wheelhouse: Path | None) -> None:
    """Build each image with ``podman build`` and no network, from local base images only.

    With a ``wheelhouse``, it is mounted into the build and named by the Dockerfiles'
    ``WHEELHOUSE`` argument, so pip installs from it alone.
    """
    for spec in specs:
        argv = ["build", "--pull=never", "--network=none", "--layers"]
        argv += ["-f", str(spec.dockerfile), "-t", spec.image]
        if wheelhouse is not None:
            argv += ["-v", f"{wheelhouse}:{_WHEELHOUSE_MOUNT}:ro"]
            argv += ["--build-arg", f"WHEELHOUSE={_WHEELHOUSE_MOUNT}"]
        podman.podman(*argv, str(spec.context), timeout=600.0)


@dataclass(frozen=True)
class Leftovers:
    """What a project still has after ``down``: container, network and volume names."""

    containers: tuple[str, ...]
    networks: tuple[str, ...]
    volumes: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.containers or self.networks or self.volumes)


class ComposeProject:
    """One compose project, driven through ``podman_compose`` and ``podman``."""

    def __init__(
        self,
        podman: Podman,
        podman_compose: str,
        compose_file: Path,
        project: str,
        profiles: Iterable[str] = (),
    ) -> None:
        self.podman = podman
        self.project = project
        chosen = [arg for profile in profiles for arg in ("--profile", profile)]
        self._compose = [podman_compose, *chosen, "-p", project, "-f", str(compose_file)]

    def compose(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """``podman-compose [--profile P ...] -p PROJECT -f FILE ARGS``."""
        return self.podman.run([*self._compose, *args], timeout=timeout)

    def up(self) -> None:
        """Create and start every service from the images already built."""
        self.compose("up", "-d", "--no-build")

    def containers(self) -> dict[str, str]:
        """Service name -> container name, for every container of the project (any state)."""
        listing = self._ps()
        return {entry["Labels"][SERVICE_LABEL]: entry["Names"][0] for entry in listing}

    def container(self, service: str) -> str:
        """The container of ``service``; ``KeyError`` if it has none."""
        return self.containers()[service]

    def healthy(self, service: str) -> bool:
        """Run the container's healthcheck once (``podman healthcheck run``). One that hangs
        (podman 4.3 does not enforce the check's own timeout) counts as failed."""
        try:
            result = self.podman.podman(
                "healthcheck", "run", self.container(service), timeout=10.0, check=False
            )
        except EngineError:
            return False
        return result.returncode == 0

    def wait_healthy(self, services: Iterable[str], timeout: float) -> None:
        """Drive the healthchecks of ``services`` until each has passed once.

        Raises ``EngineError`` naming those still unhealthy after ``timeout`` seconds.
        """
        pending = set(services)

        def all_passed() -> bool | None:
            for service in sorted(pending):
                if self.healthy(service):
                    pending.discard(service)
            return True if not pending else None

        try:
            wait_until(all_passed, timeout=timeout, waiting_for="healthchecks", interval=0.5)
        except DeadlineExceededError:
            raise EngineError(
                f"still unhealthy after {timeout:g} s: {', '.join(sorted(pending))} "
                f"(engine log: {self.podman.log})"
            ) from None

    def kill(self, service: str) -> None:
        """SIGKILL the service's container. The engine records it as stopped by the user,
        so ``restart: unless-stopped`` leaves it down."""
        self.podman.podman("kill", "--signal", "KILL", self.container(service))

    def start(self, service: str) -> None:
        """Start the service's (stopped) container again."""
        self.podman.podman("start", self.container(service))

    def exec(
        self, service: str, *argv: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the service's container. ``env`` values are passed by name
        only (``-e NAME``), so they stay off every command line."""
        names = [arg for name in (env or {}) for arg in ("-e", name)]
        return self.podman.podman(
            "exec", *names, self.container(service), *argv, timeout=30.0, env=env
        )

    def logs(self, service: str) -> str:
        """The container's output so far, with timestamps."""
        result = self.podman.podman("logs", "-t", self.container(service), check=False)
        return result.stdout + result.stderr

    def anonymous_volumes(self) -> set[str]:
        """Volumes mounted into the project's containers that the compose file does not
        name: the ones an image's ``VOLUME`` made."""
        names = [entry["Id"] for entry in self._ps()]
        if not names:
            return set()
        result = self.podman.podman("inspect", "--type", "container", *names)
        return {
            mount["Name"]
            for container in json.loads(result.stdout)
            for mount in container["Mounts"]
            if mount.get("Type") == "volume" and PROJECT_LABEL not in self._volume_labels(mount)
        }

    def down(self, extra_volumes: Iterable[str] = ()) -> None:
        """``down -v``, then remove ``extra_volumes`` (anonymous volumes, which
        podman-compose's ``down -v`` leaves) that still exist."""
        self.compose("down", "-v")
        remaining = set(extra_volumes) & set(self._volumes())
        if remaining:
            self.podman.podman("volume", "rm", "--force", *sorted(remaining))

    def leftovers(self, volumes: Iterable[str] = ()) -> Leftovers:
        """The project's containers and networks (by label), and those of ``volumes``
        plus the project's labelled volumes that still exist."""
        label = f"label={PROJECT_LABEL}={self.project}"
        networks = self.podman.podman("network", "ls", "--filter", label, "--format", "{{.Name}}")
        labelled = self.podman.podman("volume", "ls", "--filter", label, "--format", "{{.Name}}")
        wanted = set(volumes) | set(labelled.stdout.split())
        return Leftovers(
            containers=tuple(entry["Names"][0] for entry in self._ps()),
            networks=tuple(networks.stdout.split()),
            volumes=tuple(sorted(wanted & set(self._volumes()))),
        )

    def _ps(self) -> list[dict[str, Any]]:
        result = self.podman.podman(
            "ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.project}", "--format", "json"
        )
        listing = json.loads(result.stdout or "[]")
        assert isinstance(listing, list)
        return listing

    def _volumes(self) -> list[str]:
        return self.podman.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()

    def _volume_labels(self, mount: Mapping[str, Any]) -> Mapping[str, str]:
        result = self.podman.podman("volume", "inspect", mount["Name"], check=False)
        if result.returncode != 0:
            return {}
        (volume,) = json.loads(result.stdout)
        labels = volume.get("Labels") or {}
        assert isinstance(labels, dict)
        return labels
