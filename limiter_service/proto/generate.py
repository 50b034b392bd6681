"""Regenerate the protobuf modules under ``limiter_service/proto/_gen`` from ``protos/``.

Run as ``python -m limiter_service.proto.generate`` (``make proto``). The staleness test calls
:func:`generate` into a temporary directory and compares the output with the committed files.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
GEN_DIR = Path(__file__).resolve().parent / "_gen"
PROTO_FILES = ("ratelimit/v1/ratelimit.proto",)


def generate(out_dir: Path) -> list[Path]:
    """Write ``*_pb2.py`` and ``*_pb2.pyi`` for every proto into ``out_dir``; return them."""
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {PROTO_FILES}")
    written: list[Path] = []
    for proto in PROTO_FILES:
        package_dir = out_dir / Path(proto).parent
        directory = package_dir
        while True:
            (directory / "__init__.py").touch()
            if directory == out_dir:
                break
            directory = directory.parent
        stem = Path(proto).stem
        written += [package_dir / f"{stem}_pb2.py", package_dir / f"{stem}_pb2.pyi"]
    return written


def main() -> int:
    for path in generate(GEN_DIR):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
