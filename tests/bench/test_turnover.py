"""The boundary arithmetic of ``--attack-avoid-turnover`` (a pure function: no clock)."""

from __future__ import annotations

import pytest

from bench.turnover import AFTER_BOUNDARY_S, wait_for_clean_window


def test_no_boundary_in_the_span_needs_no_wait() -> None:
    assert wait_for_clean_window(1_000_000_000.0, 60, 10.5) == 0.0  # 40 s into a window
    assert wait_for_clean_window(1_000_000_005.0, 60, 10.5) == 0.0  # ends 4.5 s before
    # Starting exactly on a boundary: the next one is a whole window away.
    assert wait_for_clean_window(1_800_000_000.0, 60, 10.5) == 0.0


def test_a_boundary_inside_waits_until_just_after_it() -> None:
    # 1_800_000_000 is a multiple of 60; starting 5 s before it, a 10.5 s span crosses it.
    wait = wait_for_clean_window(1_799_999_995.0, 60, 10.5)
    assert wait == pytest.approx(5 + AFTER_BOUNDARY_S)
    # After the wait, no boundary is left in the span.
    assert wait_for_clean_window(1_799_999_995.0 + wait, 60, 10.5) == 0.0


def test_a_boundary_exactly_at_the_end_counts() -> None:
    wait = wait_for_clean_window(1_799_999_990.0, 60, 10.0)
    assert wait == pytest.approx(10 + AFTER_BOUNDARY_S)
    assert wait_for_clean_window(1_799_999_989.5, 60, 10.0) == 0.0


@pytest.mark.parametrize("span_s", [60.0, 75.0, 59.9])
def test_a_span_as_long_as_the_window_cannot_avoid_it(span_s: float) -> None:
    with pytest.raises(ValueError, match="cannot avoid"):
        wait_for_clean_window(1_000_000_000.0, 60, span_s)


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        wait_for_clean_window(1_000_000_000.0, 0, 1.0)
