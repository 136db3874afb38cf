"""What people look at: matplotlib figures (:mod:`mnist_sweep.display.plots`), progress bars, text tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.display._progress import Progress
    from mnist_sweep.display._tables import text_table

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Progress": "_progress",
        "text_table": "_tables",
    },
)
