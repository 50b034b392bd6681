"""Reading a ``/metrics`` endpoint the way Prometheus does: one scrape, parsed, with the
samples looked up by name and labels."""

from __future__ import annotations

import http.client
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "scrape"]


class Samples:
    """The samples of one scrape (``_created`` series left out)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._samples: list[tuple[str, Mapping[str, str], float]] = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.name.endswith("_created")
        ]

    def names(self) -> set[str]:
        """Every sample name present (``_bucket``, ``_count``, ``_sum`` included)."""
        return {name for name, _, _ in self._samples}

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the one sample named ``name`` with exactly ``labels``; ``None``
        when there is none."""
        for sample_name, sample_labels, value in self._samples:
            if sample_name == name and dict(sample_labels) == labels:
                return value
        return None

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample named ``name`` whose labels include ``labels`` (0.0
        when none does)."""
        return sum(
            value
            for sample_name, sample_labels, value in self._samples
            if sample_name == name and labels.items() <= dict(sample_labels).items()
        )

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample named ``name``."""
        return [dict(labels) for sample_name, labels, _ in self._samples if sample_name == name]


def scrape(address: str, path: str = "/metrics", timeout: float = 5.0) -> Samples:
    """``GET http://address/path``, parsed. Raises ``OSError`` or
    ``http.client.HTTPException`` when nothing answers, ``ValueError`` for a status other
    than 200."""
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"GET http://{address}{path}: {response.status} {body[:200]}")
    return Samples(body)
