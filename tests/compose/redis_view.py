"""The Redis layer of a running project, seen through its own commands (``redis-cli`` inside
the containers): which node the Sentinels name master, whether they have found each other,
and the counters the limiters keep there. Sentinels announce service names, so a master's
address names its service."""

from __future__ import annotations

from dataclasses import dataclass

from tests.compose.engine import ComposeProject

__all__ = ["DATA_NODES", "MASTER_NAME", "SENTINELS", "RedisView", "SentinelState"]

MASTER_NAME = "mymaster"
DATA_NODES = ("redis-master", "redis-replica-1", "redis-replica-2")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
_SENTINEL_PORT = "26379"
# The Sentinels require a password: read it from the container's own environment.
_SENTINEL_CLI = f'REDISCLI_AUTH="$SENTINEL_PASSWORD" redis-cli -p {_SENTINEL_PORT}'
_SPLIT = "=====sentinel-info====="


@dataclass(frozen=True)
class SentinelState:
    """One Sentinel's view: the master it names, how many replicas and other Sentinels it
    knows, and whether it is in TILT (acting on nothing, for 30 s after its own clock or
    event loop stalled)."""

    master: str
    replicas: int
    other_sentinels: int
    tilt: bool


def _pairs(lines: list[str]) -> dict[str, str]:
    return dict(zip(lines[::2], lines[1::2], strict=True))


class RedisView:
    """Commands against the project's Redis containers; ``password`` is the data nodes'."""

    def __init__(self, project: ComposeProject, password: str) -> None:
        self.project = project
        self._auth = {"REDISCLI_AUTH": password}

    def sentinel(self, service: str) -> SentinelState:
        """What ``service`` (a Sentinel) thinks of the monitored master."""
        script = (
            f"{_SENTINEL_CLI} SENTINEL master {MASTER_NAME}; echo {_SPLIT}; "
            f"{_SENTINEL_CLI} INFO sentinel"
        )
        master, info = self.project.exec(service, "sh", "-c", script).stdout.split(_SPLIT)
        fields = _pairs([line for line in master.splitlines() if line])
        return SentinelState(
            master=fields["ip"],
            replicas=int(fields["num-slaves"]),
            other_sentinels=int(fields["num-other-sentinels"]),
            tilt="sentinel_tilt:1" in info,
        )

    def named_master(self, service: str) -> str:
        """The master's service as ``service`` (a Sentinel) names it."""
        reply = self.project.exec(
            service, "sh", "-c", f"{_SENTINEL_CLI} SENTINEL get-master-addr-by-name {MASTER_NAME}"
        )
        return reply.stdout.split()[0]

    def agreed_master(self) -> str | None:
        """The service every Sentinel names master, ``None`` while they differ."""
        named = {self.named_master(service) for service in SENTINELS}
        return named.pop() if len(named) == 1 else None

    def settled(self) -> str | None:
        """The master's service once every Sentinel names it, knows both replicas and
        both other Sentinels, and is out of TILT; ``None`` before."""
        states = [self.sentinel(service) for service in SENTINELS]
        masters = {state.master for state in states}
        formed = all(
            (state.replicas, state.other_sentinels, state.tilt) == (2, 2, False) for state in states
        )
        return masters.pop() if formed and len(masters) == 1 else None

    def cli(self, service: str, *args: str) -> str:
        """``redis-cli ARGS`` on a data node, authenticated; its output."""
        return self.project.exec(service, "redis-cli", *args, env=self._auth).stdout

    def role(self, service: str) -> str:
        """``master`` or ``slave``, as the data node itself says."""
        return self.cli(service, "ROLE").splitlines()[0]

    def flush(self, master: str) -> None:
        """Forget every counter (on ``master``; replicas follow)."""
        assert self.cli(master, "FLUSHALL").strip() == "OK"

    def keys(self, master: str) -> list[str]:
        """Every key on ``master``."""
        return sorted(self.cli(master, "--scan").split())
