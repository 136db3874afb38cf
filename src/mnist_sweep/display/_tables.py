"""Plain-text tables for the terminal: ``mnist-sweep studies``, ``presets``, ``run`` and ``compare``."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(rows: Sequence[Sequence[object]], *, rule: bool = True) -> str:
    """``rows`` (the header first) in left-aligned columns two spaces apart.

    ``rule`` draws a line of dashes under the header. Trailing spaces are trimmed.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if rule and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
