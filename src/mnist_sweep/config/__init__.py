"""Search-space and nightly YAML files: loading, checks, Optuna distributions, sampler and pruner factories.

No TensorFlow: ``mnist-sweep validate`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.config._space import STUDY_NAME, SearchSpace, load_space, parse_space

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "STUDY_NAME": "_space",
        "SearchSpace": "_space",
        "load_space": "_space",
        "parse_space": "_space",
    },
)
