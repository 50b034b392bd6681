"""Tables and printed sections: a grid of strings (header first), for the terminal and for
the README. The first column is left-aligned, every other one right-aligned."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Grid", "markdown", "number", "plain", "section", "times"]

Grid = list[list[str]]


def number(value: float | None, digits: int = 0) -> str:
    """``value`` with thousands separators and ``digits`` decimals; ``-`` for ``None``."""
    return "-" if value is None else f"{value:,.{digits}f}"


def times(ratio: float | None) -> str:
    """A ratio as ``0.88 x``; ``-`` for ``None``."""
    return "-" if ratio is None else f"{ratio:.2f} x"


def plain(grid: Grid) -> str:
    """Columns aligned with spaces, a dashed line under the header."""
    widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
    lines = [
        "  ".join(
            [line[0].ljust(widths[0])]
            + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        )
        for line in grid
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown(grid: Grid) -> str:
    """A GitHub Markdown table."""
    header, *body = grid
    align = "|" + "|".join([":---", *("---:" for _ in header[1:])]) + "|"
    return "\n".join(
        [
            "| " + " | ".join(header) + " |",
            align,
            *("| " + " | ".join(line) + " |" for line in body),
        ]
    )


def section(
    title: str,
    grids: Sequence[Grid],
    notes: Sequence[str],
    warnings: Sequence[str],
    footnote: str,
) -> str:
    """What one part of the bench prints: ``title``, each grid aligned (``notes`` after
    the first), a ``WARNING:`` line per warning, then the grids again in Markdown and
    ``footnote`` (to paste into the README)."""
    parts = [title, plain(grids[0]), *notes]
    parts += [f"\n{plain(grid)}" for grid in grids[1:]]
    parts += [f"WARNING: {warning}" for warning in warnings]
    parts += ["\nMarkdown:\n", *(markdown(grid) + "\n" for grid in grids), footnote]
    return "\n".join(parts)
