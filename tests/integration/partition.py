"""Network partitions between loopback addresses, with iptables (root only).

Every rule is an ``INPUT`` DROP between two addresses (both directions); ``Partition`` keeps
the list of rules it added and deletes each of them on exit, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable

from devstack.lifecycle import StopsOnExit

__all__ = ["Partition", "iptables_usable"]


def iptables_usable() -> str | None:
    """``None`` when iptables rules can be added here, else why not."""
    if os.geteuid() != 0:
        return "needs root for iptables"
    if shutil.which("iptables") is None:
        return "iptables is not installed"
    probe = subprocess.run(["iptables", "-L", "INPUT", "-n"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"iptables does not work here: {probe.stderr.strip()}"
    return None


class Partition(StopsOnExit):
    """``with Partition(pairs):`` drops all traffic between each pair of addresses."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._rules = [
            ("-s", a, "-d", b, "-j", "DROP") for x, y in pairs for a, b in ((x, y), (y, x))
        ]
        self._added: list[tuple[str, ...]] = []

    def __enter__(self) -> Partition:
        try:
            for rule in self._rules:
                subprocess.run(["iptables", "-I", "INPUT", *rule], check=True)
                self._added.append(rule)
        except BaseException:
            self.heal()
            raise
        return self

    def heal(self) -> None:
        """Delete every rule added (safe to repeat)."""
        while self._added:
            rule = self._added.pop()
            subprocess.run(["iptables", "-D", "INPUT", *rule], check=False)

    stop = heal
