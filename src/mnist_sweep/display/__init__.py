"""What people look at: figures (:mod:`mnist_sweep.display.plots`), progress bars, text tables, HTML pieces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.display._html import PAGE_CSS, figure_html
    from mnist_sweep.display._progress import Progress
    from mnist_sweep.display._tables import text_table

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "PAGE_CSS": "_html",
        "Progress": "_progress",
        "figure_html": "_html",
        "text_table": "_tables",
    },
)
