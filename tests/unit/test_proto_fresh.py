"""The committed generated protobuf code matches protos/ (run ``make proto`` when this fails)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_proto", REPO / "scripts" / "generate_proto.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("generate_proto", module)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    generator = _generator()
    written = generator.generate(tmp_path)
    assert written, "nothing generated"
    names = {path.name for path in written}
    assert {"ratelimit_pb2.py", "ratelimit_pb2.pyi", "ratelimit_pb2_grpc.py"} <= names
    for fresh in written:
        committed = generator.GEN_DIR / fresh.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed} is stale: run `make proto`"
        )


def test_no_hand_written_method_tables_outside_the_generated_package() -> None:
    """Method paths and ``unary_unary(`` appear only in generated code."""
    offenders = []
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if relative.parts[0] in {".venv", "build"} or "_gen" in relative.parts:
            continue
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8")
        # Two tests call by a path taken from a descriptor on purpose: one discovers it by
        # reflection as grpcurl does, the other sends raw bytes (fuzzing, undecodable input).
        if "unary_unary(" in text and path.name not in {"test_reflection.py", "raw_calls.py"}:
            offenders.append(f"{relative}: unary_unary(")
        if "/ratelimit.v1.RateLimiter/" in text:
            offenders.append(f"{relative}: a method path")
    assert offenders == []
