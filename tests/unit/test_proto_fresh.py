"""The committed generated protobuf code matches protos/ (run ``make proto`` when this fails)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from ratelimit_client import proto

REPO = Path(__file__).resolve().parents[2]
# A unary-unary call or handler built by hand (the reflection service's own is stream-stream).
TABLE_CALL = re.compile(r"\bunary_unary\w*\(")
METHOD_PATH = f"/{proto.SERVICE_NAME}/"


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
    """Method paths and hand-built unary-unary calls appear only in generated code."""
    offenders = []
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if {".venv", "build", "_gen"} & set(relative.parts):
            continue
        text = path.read_text(encoding="utf-8")
        # The reflection test calls by a path it discovered, as grpcurl does.
        if TABLE_CALL.search(text) and path.name != "test_reflection.py":
            offenders.append(f"{relative}: a hand-built method")
        if METHOD_PATH in text:
            offenders.append(f"{relative}: a method path")
    assert offenders == []
