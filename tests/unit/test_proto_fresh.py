"""The committed generated protobuf code matches protos/ (run ``make proto`` when this fails)."""

from __future__ import annotations

from pathlib import Path

from limiter_service.proto.generate import GEN_DIR, generate


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "nothing generated"
    for fresh in written:
        committed = GEN_DIR / fresh.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed} is stale: run `make proto`"
        )
