"""Search-space and nightly YAML files: loading, checks, Optuna distributions, sampler and pruner factories.

No TensorFlow: ``mnist-sweep validate`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_sweep._lazy import lazy_exports

if TYPE_CHECKING:
    from mnist_sweep.config._nightly import (
        DEFAULT_ALIAS,
        DEFAULT_ALPHA,
        DEFAULT_MIN_IMPROVEMENT,
        DEFAULT_MODEL_NAME,
        NightlyBudget,
        NightlyConfig,
        PromotionPolicy,
        Retention,
        WarmStart,
        describe_config,
        load_nightly,
        night_study_name,
        parse_nightly,
    )
    from mnist_sweep.config._samplers import PRUNERS, SAMPLERS, PrunerConfig, SamplerConfig
    from mnist_sweep.config._space import Budget, Objective, ParamDef, SearchSpace, can_sample, load_space, parse_space
    from mnist_sweep.config._yaml import STUDY_NAME

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Budget": "_space",
        "DEFAULT_ALIAS": "_nightly",
        "DEFAULT_ALPHA": "_nightly",
        "DEFAULT_MIN_IMPROVEMENT": "_nightly",
        "DEFAULT_MODEL_NAME": "_nightly",
        "NightlyBudget": "_nightly",
        "NightlyConfig": "_nightly",
        "Objective": "_space",
        "PRUNERS": "_samplers",
        "ParamDef": "_space",
        "PromotionPolicy": "_nightly",
        "PrunerConfig": "_samplers",
        "Retention": "_nightly",
        "SAMPLERS": "_samplers",
        "STUDY_NAME": "_yaml",
        "SamplerConfig": "_samplers",
        "SearchSpace": "_space",
        "WarmStart": "_nightly",
        "can_sample": "_space",
        "describe_config": "_nightly",
        "load_nightly": "_nightly",
        "load_space": "_space",
        "night_study_name": "_nightly",
        "parse_nightly": "_nightly",
        "parse_space": "_space",
    },
)
