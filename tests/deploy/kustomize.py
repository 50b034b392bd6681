"""Render a kustomization: with ``kubectl kustomize`` where it is installed, else in Python.

The Python renderer knows only the fields ``deploy/k8s`` uses and refuses any other, so a
manifest change that needs more fails loudly instead of rendering something kubectl would
not:

- ``resources``: local YAML files (no directories, no remote bases);
- ``namespace``: set on every namespaced object;
- ``labels``: ``pairs`` added to every object's ``metadata.labels`` (``includeSelectors``
  and ``includeTemplates`` must be false or absent);
- ``configMapGenerator``: ``files`` and ``literals``, with ``disableNameSuffixHash: true``
  (kustomize's name hash is not reproduced).

Objects come back as plain dicts, in no particular order.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Manifest", "kubectl", "render", "render_python"]

Manifest = dict[str, Any]

_KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator"}
# The cluster-scoped kinds these manifests could hold; everything else gets the namespace.
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}


def kubectl() -> str | None:
    """Path of ``kubectl``, or ``None`` when it is not installed."""
    return shutil.which("kubectl")


def render(directory: Path) -> list[Manifest]:
    """The kustomization in ``directory``, by ``kubectl kustomize`` when available."""
    binary = kubectl()
    if binary is None:
        return render_python(directory)
    out = subprocess.run(
        [binary, "kustomize", str(directory)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_python(directory: Path) -> list[Manifest]:
    """The kustomization in ``directory``, by this module's renderer; raises ``ValueError``
    naming a field or value it does not support."""
    spec = _load_one(directory / "kustomization.yaml")
    unknown = set(spec) - _KNOWN_FIELDS
    if unknown:
        raise ValueError(f"kustomization fields not supported here: {sorted(unknown)}")
    objects: list[Manifest] = []
    for name in spec.get("resources", []):
        path = directory / name
        if not path.is_file():
            raise ValueError(f"resource {name!r}: only local files are supported")
        objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    objects.extend(_config_map(directory, gen) for gen in spec.get("configMapGenerator", []))
    namespace = spec.get("namespace")
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        if namespace and obj["kind"] not in _CLUSTER_SCOPED:
            metadata["namespace"] = namespace
        for label in spec.get("labels", []):
            if label.get("includeSelectors") or label.get("includeTemplates"):
                raise ValueError("labels: includeSelectors/includeTemplates not supported")
            metadata.setdefault("labels", {}).update(label["pairs"])
    return objects


def _config_map(directory: Path, gen: dict[str, Any]) -> Manifest:
    unknown = set(gen) - {"name", "files", "literals", "options"}
    if unknown:
        raise ValueError(f"configMapGenerator {gen['name']!r}: {sorted(unknown)} not supported")
    if gen.get("options") != {"disableNameSuffixHash": True}:
        raise ValueError(f"configMapGenerator {gen['name']!r}: needs disableNameSuffixHash")
    data: dict[str, str] = {}
    for name in gen.get("files", []):
        key, sep, source = name.partition("=")
        path = directory / (source if sep else key)
        data[Path(key).name if not sep else key] = path.read_text()
    for literal in gen.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": gen["name"]},
        "data": data,
    }


def _load_one(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a mapping")
    return doc
