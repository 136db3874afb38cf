"""What people look at: matplotlib figures (:mod:`mnist_sweep.display.plots`), progress bars, text tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.display._progress import Progress

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Progress": "_progress",
    },
)
