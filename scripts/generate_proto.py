"""Regenerate the wire contracts: messages, gRPC stubs and type stubs for every ``.proto``
under ``protos/``, each tree into the package that owns it:

- ``protos/ratelimit/`` (our own API) into ``ratelimit_client.proto._gen``, which the
  server, the client, the bench and the tests import;
- ``protos/envoy/`` (a minimal wire-compatible subset of Envoy's Rate Limit Service API)
  into ``limiter_service.envoy._gen``: only the server speaks it, so the client wheel
  stays lean.

``make proto`` runs ``python scripts/generate_proto.py``; ``... OUT_ROOT`` writes the same
tree under another root (the staleness test compares such a fresh copy with the committed
one).

protoc names imports after the proto's own path (``from ratelimit.v1 import ...``); a
top-level package ``ratelimit`` (or ``envoy``) would collide with PyPI modules, so the
imports are rewritten to live under the owning package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / "protos"


class Target(NamedTuple):
    """The protos under ``protos/<tree>`` go to package ``package`` at ``directory``
    (relative to the repository root)."""

    tree: str
    package: str
    directory: Path


TARGETS = (
    Target(
        "ratelimit",
        "ratelimit_client.proto._gen",
        Path("client", "ratelimit_client", "proto", "_gen"),
    ),
    Target("envoy", "limiter_service.envoy._gen", Path("limiter_service", "envoy", "_gen")),
)
GEN_PACKAGE = TARGETS[0].package
GEN_DIR = REPO_ROOT / TARGETS[0].directory


def proto_files(tree: str | None = None) -> list[str]:
    """Every ``.proto`` under ``protos/`` (or ``protos/<tree>``), relative to ``protos/``,
    sorted."""
    root = PROTO_ROOT / tree if tree else PROTO_ROOT
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in root.rglob("*.proto"))


def _rewrite_imports(path: Path, top_levels: set[str], package: str) -> None:
    names = "|".join(sorted(re.escape(name) for name in top_levels))
    pattern = re.compile(rf"^(from|import) ({names})(\.|\s)", re.MULTILINE)
    text = path.read_text()
    path.write_text(pattern.sub(rf"\1 {package}.\2\3", text))


def _generate_target(target: Target, out_dir: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    protos = proto_files(target.tree)
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {protos}")
    written: list[Path] = []
    for proto in protos:
        package_dir = out_dir / Path(proto).parent
        directory = package_dir
        while True:
            (directory / "__init__.py").touch()
            if directory == out_dir:
                break
            directory = directory.parent
        stem = Path(proto).stem
        for name in (f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"):
            path = package_dir / name
            if path.exists():
                _rewrite_imports(path, {target.tree}, target.package)
                written.append(path)
    return written


def generate(out_root: Path) -> list[Path]:
    """Write ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` for every proto into each
    target's directory under ``out_root`` (with ``__init__.py`` files); return the
    generated modules, sorted."""
    written: list[Path] = []
    for target in TARGETS:
        written += _generate_target(target, out_root / target.directory)
    return sorted(written)


def main(argv: list[str]) -> int:
    out_root = Path(argv[0]).resolve() if argv else REPO_ROOT
    for path in generate(out_root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
