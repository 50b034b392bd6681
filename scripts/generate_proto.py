"""Regenerate the wire contract: messages, gRPC stubs and type stubs for every ``.proto``
under ``protos/``, into the one package that the server, the client, the bench and the
tests import (``ratelimit_client.proto._gen``).

``make proto`` runs ``python scripts/generate_proto.py``; ``... OUT_DIR`` writes elsewhere
(the staleness test compares such a fresh copy with the committed one).

protoc names imports after the proto's own path (``from ratelimit.v1 import ...``); a
top-level package ``ratelimit`` would collide with a popular PyPI module, so the imports
are rewritten to live under ``ratelimit_client.proto._gen``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / "protos"
GEN_PACKAGE = "ratelimit_client.proto._gen"
GEN_DIR = REPO_ROOT / "client" / Path(*GEN_PACKAGE.split("."))


def proto_files() -> list[str]:
    """Every ``.proto`` under ``protos/``, relative to it, sorted."""
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))


def _rewrite_imports(path: Path, top_levels: set[str]) -> None:
    names = "|".join(sorted(re.escape(name) for name in top_levels))
    pattern = re.compile(rf"^(from|import) ({names})(\.|\s)", re.MULTILINE)
    text = path.read_text()
    path.write_text(pattern.sub(rf"\1 {GEN_PACKAGE}.\2\3", text))


def generate(out_dir: Path) -> list[Path]:
    """Write ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` for every proto into
    ``out_dir`` (with ``__init__.py`` files); return the generated modules, sorted."""
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    protos = proto_files()
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
    top_levels = {Path(proto).parts[0] for proto in protos}
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
                _rewrite_imports(path, top_levels)
                written.append(path)
    return sorted(written)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]).resolve() if argv else GEN_DIR
    for path in generate(out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
