"""Samplers and pruners: the allowlists, the checks of their YAML sections, the factories.

A search-space file names a sampler and a pruner from these allowlists (``tpe``, ``median``,
...), never by import path, so a YAML file cannot make the sweep import arbitrary code. Each
configured one is built once while the file is checked, so Optuna's own checks of the option
values apply before anything trains.
"""

from __future__ import annotations

import importlib.util
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mnist_sweep.config._yaml import Checker, did_you_mean, join_key, kind_of, show
from mnist_sweep.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from mnist_sweep.config._space import ParamDef

MAX_GRID_SIZE = 100_000
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "median"  # as optuna.create_study

# Option name -> (kind, minimum). Only options whose values YAML can express; each one is also
# passed through the real constructor during validation, so Optuna's own checks apply too.
_Option = tuple[str, float | None]
SAMPLERS: dict[str, dict[str, _Option]] = {
    "tpe": {
        "n_startup_trials": ("int", 0),
        "n_ei_candidates": ("int", 1),
        "multivariate": ("bool", None),
        "group": ("bool", None),
        "constant_liar": ("bool", None),
    },
    "random": {},
    "grid": {},
    "cmaes": {
        "sigma0": ("float", None),
        "n_startup_trials": ("int", 0),
        "warn_independent_sampling": ("bool", None),
        "consider_pruned_trials": ("bool", None),
        "popsize": ("int", 1),
        "use_separable_cma": ("bool", None),
        "with_margin": ("bool", None),
        "lr_adapt": ("bool", None),
    },
    "gp": {
        "n_startup_trials": ("int", 0),
        "deterministic_objective": ("bool", None),
        "warn_independent_sampling": ("bool", None),
    },
    "qmc": {
        "qmc_type": ("str", None),
        "scramble": ("bool", None),
        "warn_asynchronous_seeding": ("bool", None),
        "warn_independent_sampling": ("bool", None),
    },
}
_MEDIAN_OPTIONS: dict[str, _Option] = {
    "n_startup_trials": ("int", 0),
    "n_warmup_steps": ("int", 0),
    "interval_steps": ("int", 1),
    "n_min_trials": ("int", 1),
}
PRUNERS: dict[str, dict[str, _Option]] = {
    "none": {},
    "median": _MEDIAN_OPTIONS,
    "percentile": {"percentile": ("float", 0), **_MEDIAN_OPTIONS},
    "successive_halving": {
        "min_resource": ("int_or_auto", 1),
        "reduction_factor": ("int", 2),
        "min_early_stopping_rate": ("int", 0),
        "bootstrap_count": ("int", 0),
    },
    "hyperband": {
        "min_resource": ("int", 1),
        "max_resource": ("int_or_auto", 1),
        "reduction_factor": ("int", 2),
        "bootstrap_count": ("int", 0),
    },
    # Promotion-based ASHA: the sweep pauses and promotes trials itself (mnist_sweep.sweep._asha).
    # bootstrap_count as in Optuna's successive halving: a rung promotes nothing until it holds that many.
    # promotion_quota: a rung reached by n configurations has promoted at most n // reduction_factor.
    # brackets: asynchronous Hyperband, bracket b's first rung at min_resource * reduction_factor**b.
    "asha": {
        "min_resource": ("int", 1),
        "max_resource": ("int", 1),
        "reduction_factor": ("int", 2),
        "bootstrap_count": ("int", 0),
        "promotion_quota": ("bool", None),
        "brackets": ("int", 1),
    },
}
ASHA_DEFAULTS = {"min_resource": 1, "reduction_factor": 3, "bootstrap_count": 0, "promotion_quota": False}
# Samplers whose work happens in an optional package; Optuna imports it only when sampling.
_SAMPLER_NEEDS = {"cmaes": ("cmaes", "pip install cmaes"), "gp": ("torch", "pip install torch")}


@dataclass(frozen=True)
class SamplerConfig:
    """An allowlisted sampler name, its seed (None: unseeded) and its constructor options."""

    name: str
    seed: int | None
    options: Mapping[str, Any]


@dataclass(frozen=True)
class PrunerConfig:
    """An allowlisted pruner name and its constructor options."""

    name: str
    options: Mapping[str, Any]


class SamplerChecks(Checker):
    """The ``sampler:`` and ``pruner:`` sections of a search-space file."""

    def sampler(self, value: Any, path: str, *, default_seed: int, params: Sequence[ParamDef]) -> SamplerConfig:
        if value is None:
            value = {}
        elif isinstance(value, str):
            value = {"name": value}
        section = self.mapping(value, path, allowed=("name", "seed", "options"))
        name = self.component_name(section.get("name", DEFAULT_SAMPLER), join_key(path, "name"), SAMPLERS, "sampler")
        if "seed" not in section:
            seed: int | None = default_seed
        else:
            seed = None if section["seed"] is None else self.seed(section["seed"], join_key(path, "seed"))
        options = self.options(section.get("options"), join_key(path, "options"), SAMPLERS[name], f"the {name} sampler")
        config = SamplerConfig(name=name, seed=seed, options=types.MappingProxyType(options))
        if name == "grid":
            self.check_grid(params)
        check_sampler_available(name, self.source, key=join_key(path, "name"))
        self.construct(make_sampler, config, params, path=join_key(path, "options") if options else path)
        return config

    def check_grid(self, params: Sequence[ParamDef]) -> None:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        size = 1
        for param in params:
            where = join_key("space", param.name)
            if param.when or param.per_layer:
                self.fail(where, "the grid sampler needs a fixed set of parameters: no `when` or `per_layer`")
            if not isinstance(param.distribution, CategoricalDistribution | IntDistribution):
                self.fail(
                    where, "the grid sampler needs a finite set of values; use `type: categorical` or `type: int`"
                )
            size *= len(grid_values(param.distribution))
            if size > MAX_GRID_SIZE:
                self.fail("space", f"the grid has more than {MAX_GRID_SIZE:,} points; narrow it or use another sampler")

    def pruner(self, value: Any, path: str) -> PrunerConfig:
        if value is None:
            value = {}
        elif isinstance(value, str):
            value = {"name": value}
        section = self.mapping(value, path, allowed=("name", "options"))
        name = self.component_name(section.get("name", DEFAULT_PRUNER), join_key(path, "name"), PRUNERS, "pruner")
        options = self.options(section.get("options"), join_key(path, "options"), PRUNERS[name], f"the {name} pruner")
        if name == "percentile" and "percentile" not in options:
            self.fail(
                join_key(path, "options.percentile"),
                "the percentile pruner needs `percentile` (0-100), e.g. options: {percentile: 25.0}",
            )
        low, high = options.get("min_resource", 1), options.get("max_resource", "auto")
        if name == "asha" and "max_resource" in options and options["max_resource"] <= low:
            self.fail(
                join_key(path, "options.max_resource"),
                f"`min_resource < max_resource` must hold, but got min_resource={low}, max_resource={high}",
            )
        if name == "hyperband" and high != "auto" and high < low:
            self.fail(
                join_key(path, "options.max_resource"),
                f"`min_resource <= max_resource` must hold, but got min_resource={low}, max_resource={high}",
            )
        config = PrunerConfig(name=name, options=types.MappingProxyType(options))
        self.construct(make_pruner, config, path=join_key(path, "options") if options else path)
        return config

    def component_name(self, value: Any, path: str, allowed: Mapping[str, Any], what: str) -> str:
        name = self.string(value, path)
        if name not in allowed:
            hint = " (import paths are not accepted, only these names)" if "." in name else ""
            self.fail(
                path,
                f"unknown {what} {name!r}; {did_you_mean(name.lower(), list(allowed))}"
                f"choose one of {', '.join(allowed)}{hint}",
            )
        return name

    def options(self, value: Any, path: str, spec: Mapping[str, _Option], owner: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of option names to values, got {kind_of(value)}")
        options: dict[str, Any] = {}
        for key, raw in value.items():
            if not isinstance(key, str):
                self.fail(path, f"option names must be strings, got {kind_of(key)}")
            where = join_key(path, key)
            if key not in spec:
                allowed = ", ".join(spec) or "none"
                self.fail(
                    where, f"unknown option {key!r} for {owner}; {did_you_mean(key, list(spec))}allowed: {allowed}"
                )
            kind, minimum = spec[key]
            if kind == "bool":
                options[key] = self.boolean(raw, where)
            elif kind == "str":
                options[key] = self.string(raw, where)
            elif kind == "float":
                number = self.number(raw, where)
                if minimum is not None and number < minimum:
                    self.fail(where, f"must be >= {minimum:g}, got {show(raw)}")
                options[key] = number
            elif kind == "int_or_auto" and raw == "auto":
                options[key] = "auto"
            else:
                options[key] = self.integer(raw, where, minimum=minimum)
        return options

    def construct(self, factory: Any, *args: Any, path: str) -> None:
        """Build the sampler or pruner once, so Optuna rejects bad option values now."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                factory(*args)
            except (TypeError, ValueError) as exc:
                self.fail(path, str(exc).rstrip("."))


def grid_values(distribution: optuna.distributions.BaseDistribution) -> list[Any]:
    """Every value of a categorical or integer distribution, for the grid sampler."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, IntDistribution)
    return list(range(distribution.low, distribution.high + 1, distribution.step))


def check_sampler_available(name: str, source: str | None, *, key: str = "sampler.name") -> None:
    """ConfigError when sampler ``name`` needs a package that is not installed."""
    if name not in _SAMPLER_NEEDS:
        return
    module, install = _SAMPLER_NEEDS[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"the {name} sampler needs the `{module}` package, which is not installed: {install}",
            source=source,
            key=key,
        )


def make_sampler(config: SamplerConfig, params: Sequence[ParamDef]) -> optuna.samplers.BaseSampler:
    """A fresh sampler as ``config`` says; the grid sampler's grid comes from ``params``."""
    import optuna

    samplers = optuna.samplers
    if config.name == "grid":
        search_space = {p.name: grid_values(p.distribution) for p in params}
        return samplers.GridSampler(search_space, seed=config.seed)
    classes: dict[str, Any] = {
        "tpe": samplers.TPESampler,
        "random": samplers.RandomSampler,
        "cmaes": samplers.CmaEsSampler,
        "gp": samplers.GPSampler,
        "qmc": samplers.QMCSampler,
    }
    sampler: optuna.samplers.BaseSampler = classes[config.name](seed=config.seed, **config.options)
    return sampler


def make_pruner(config: PrunerConfig) -> optuna.pruners.BasePruner:
    """A fresh pruner as ``config`` says."""
    import optuna

    pruners = optuna.pruners
    if config.name == "asha":  # Optuna's pruners can only stop a trial; the sweep pauses and promotes
        return pruners.NopPruner()
    classes: dict[str, Any] = {
        "none": pruners.NopPruner,
        "median": pruners.MedianPruner,
        "percentile": pruners.PercentilePruner,
        "successive_halving": pruners.SuccessiveHalvingPruner,
        "hyperband": pruners.HyperbandPruner,
    }
    pruner: optuna.pruners.BasePruner = classes[config.name](**config.options)
    return pruner
